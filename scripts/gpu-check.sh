#!/usr/bin/env bash
# The checks only a machine with CUDA GPUs can run, in one go (under 8 minutes), ending with a
# summary: the tests marked `cuda`; 2-epoch runs on a tiny synthetic set with --amp bf16, with
# --deterministic, and with --devices over every GPU; a 2-rank NCCL torchrun when there are 2 or
# more GPUs; and tools/bench_train.py for ResNet50 at 256x128 (K = 4 against the plain loop).
#
#   bash scripts/gpu-check.sh            # uses .venv/bin/python, else python3 (PYTHON=... to choose)
#
# The Python it uses needs reidgraft's dependencies (scripts/setup.sh installs them); where
# there is no internet, carry wheels for the missing ones. Logs go to $GPU_CHECK_LOGS (default
# a temporary folder), whose path is printed.
set -uo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
missing=$("$python" - <<'EOF'
import importlib.util
need = ["torch", "torchvision", "torchreid", "faiss", "yaml", "tqdm", "PIL", "cv2", "scipy", "pytest", "tensorboard"]
print(" ".join(name for name in need if importlib.util.find_spec(name) is None))
EOF
)
if [ -n "$missing" ]; then
    echo "gpu-check: $python lacks: $missing (run scripts/setup.sh, or install them)" >&2
    exit 2
fi
gpus=$("$python" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)')
if [ "${gpus:-0}" -lt 1 ]; then
    echo "gpu-check: torch sees no CUDA GPU; nothing to check here" >&2
    exit 2
fi
logs=${GPU_CHECK_LOGS:-$(mktemp -d -t reidgraft-gpu-check-XXXX)}
mkdir -p "$logs"
summary=()
failed=0

step() {  # step NAME SECONDS COMMAND...: run it, keep its log, note the outcome
    local name=$1 limit=$2 started=$SECONDS
    shift 2
    echo "== $name"
    if timeout "$limit" "$@" >"$logs/$name.log" 2>&1; then
        summary+=("ok      $name ($((SECONDS - started)) s)")
    else
        summary+=("FAILED  $name (exit $?, $((SECONDS - started)) s; $logs/$name.log)")
        failed=1
    fi
    tail -n 12 "$logs/$name.log"
}

"$python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda); [print(f"GPU {i}:", torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())]' | tee "$logs/gpus.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee -a "$logs/gpus.txt"

data="$logs/data"
"$python" -c "from reidgraft.data.datasets import synthetic_splits; synthetic_splits('$data', train_ids=24, test_ids=12, images_per_id=8, distractors=20)" >/dev/null
tiny=(--dataset synthetic --root "$data" --arch mobilenetv2_x1_0 --weights none --models 2 --epochs 2
    --batch-size 32 --eval-batch-size 128 --device cuda)

# Only the files that hold `cuda` tests: the rest need packages (gradio, playwright) a GPU image may lack.
mapfile -t cuda_files < <(grep -rlE "pytest\.mark\.cuda|pytestmark = pytest\.mark\.cuda" tests --include='*.py')
step cuda-tests 180 "$python" -m pytest -q -p no:cacheprovider -m cuda "${cuda_files[@]}"
step run-bf16 90 "$python" tools/train.py "${tiny[@]}" --amp bf16 --channels-last --output "$logs/run-bf16"
step run-deterministic 90 "$python" tools/train.py "${tiny[@]}" --deterministic --output "$logs/run-deterministic"
devices=$(seq -s, 0 $((gpus - 1)))
step run-devices 90 "$python" tools/train.py "${tiny[@]}" --models 4 --devices "$devices" --output "$logs/run-devices"
if [ "$gpus" -ge 2 ]; then
    step nccl-torchrun 120 "$python" -m torch.distributed.run --standalone --nproc_per_node 2 tools/train.py \
        "${tiny[@]}" --distributed --output "$logs/run-nccl"
else
    summary+=("skipped nccl-torchrun (one GPU)")
fi
step bench-resnet50 180 "$python" tools/bench_train.py --device cuda --arch resnet50 --height 256 --width 128 \
    --amp bf16 --channels-last --models 4 --steps 40 --rounds 3
step bench-resnet50-batch64 120 "$python" tools/bench_train.py --device cuda --arch resnet50 --height 256 --width 128 \
    --amp bf16 --channels-last --models 4 --steps 30 --rounds 3 --batch-size 64

echo
echo "gpu-check summary ($gpus GPU(s); logs in $logs):"
printf '  %s\n' "${summary[@]}"
grep -h -e "images/s" -e "batch" "$logs"/bench-resnet50*.log 2>/dev/null | sed 's/^/  /'
exit $failed
