#!/usr/bin/env bash
# The floor of pyproject.toml's torch range, tested: ./.venv-oldest-torch with the oldest torch and
# torchvision the ranges admit (everything else as constraints.txt pins it, where that version
# installs beside them), then the test suite. Extra arguments go to pytest. Not part of CI (it
# doubles its time); run it when the ranges change. About 8 GB.
set -euo pipefail
cd "$(dirname "$0")/.."
oldest_torch=2.9.1
oldest_torchvision=0.24.1
python=${PYTHON:-python3}
venv=.venv-oldest-torch
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
grep -v -E '^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z-]+)==' constraints.txt > "$constraints"
echo "torch==$oldest_torch" >> "$constraints"
echo "torchvision==$oldest_torchvision" >> "$constraints"
"$venv/bin/python" -m pip install --quiet -c "$constraints" -e ".[dev,export,tracking]"
"$venv/bin/python" -c 'import torch, torchvision; print("test-oldest-torch: torch", torch.__version__, "torchvision", torchvision.__version__)'
# (the one test that checks the environment against constraints.txt does not apply here)
exec "$venv/bin/python" -m pytest -k "not the_environment_is_the_one_constraints_txt_pins" "$@"
