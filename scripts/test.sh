#!/usr/bin/env bash
# Set up ./.venv, lint, then run the whole test suite (slow tests included). Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
bash scripts/install-browser.sh || echo "test: could not install chromium; the demo's browser test will be skipped" >&2
.venv/bin/ruff check --quiet . || { echo "test: ruff found lint errors (see above)" >&2; exit 1; }
.venv/bin/python -m pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
    echo "test: pytest collected no tests; that is a failure here" >&2
    exit 1
fi
exit "$status"
