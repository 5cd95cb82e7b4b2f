#!/usr/bin/env bash
# Make ./.venv with reidgraft and its dev tools installed. Safe to run again: it reinstalls
# only when pyproject.toml has changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "setup: reidgraft needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

# REIDGRAFT_EXTRAS=gpu adds faiss-gpu (GPU gallery search) in place of faiss-cpu.
extras=${REIDGRAFT_EXTRAS:-}
case ",$extras," in ,,|,gpu,) ;; *) echo "setup: REIDGRAFT_EXTRAS may be empty or gpu, not '$extras'" >&2; exit 1 ;; esac
stamp=".venv/.installed-$(cat pyproject.toml constraints.txt <(echo "$extras") | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
    exit 0
fi
# torch's wheel brings its CUDA libraries: the venv takes about 7 GB, a test run about 1 GB more.
free_gb=$(df -Pk . | awk 'NR==2 {print int($4 / 1048576)}')
if [ "${free_gb:-0}" -lt 8 ]; then
    echo "setup: warning: only ${free_gb} GB free in $(pwd); installing and testing need about 8 GB" >&2
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "$extras" != gpu ]; then  # back from a GPU install: faiss-cpu's files must not mix with faiss-gpu's
    .venv/bin/python -m pip uninstall --quiet -y faiss-gpu >/dev/null 2>&1 || true
fi
# constraints.txt: the exact versions CI tests (pyproject.toml holds the ranges users get)
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev,export,tracking${extras:+,$extras}]"
if [ "$extras" = gpu ]; then
    # Both wheels install the module `faiss`; keep the GPU build's files alone.
    .venv/bin/python -m pip uninstall --quiet -y faiss-cpu
    .venv/bin/python -m pip install --quiet --force-reinstall --no-deps "faiss-gpu>=1.9"
fi
rm -f .venv/.installed-*
touch "$stamp"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
