#!/usr/bin/env bash
# The pilot's runs in their fixed order (docs/study-converged.md, "Pilot"): nograft at 3e-4 for
# E = 20, 40, 60 on seeds 100000, 101000, 102000 (step 1), then, once E is chosen, the two other
# rates at that E (step 2: `pilot.sh rates E`). A finished run is skipped, a stopped one resumed,
# so the script can be run again in each session until every run is done.
#   bash studies/converged/pilot.sh [DATA_ROOT]          # step 1
#   bash studies/converged/pilot.sh rates E [DATA_ROOT]  # step 2
set -euo pipefail
mode=epochs
if [ "${1:-}" = rates ]; then
  [ -n "${2:-}" ] || { echo "usage: pilot.sh rates E [DATA_ROOT] (E: the epochs chosen in step 1)" >&2; exit 2; }
  mode=rates; chosen="$2"; shift 2
fi
root="$(realpath "${1:-/tmp/data}")"  # (before the cd: a relative root is the caller's)
cd "$(dirname "$0")/../.."
train=".venv/bin/reidgraft-train"
out="runs/converged/pilot"

finished() {  # metrics.json holds final metrics for the run's last epoch
  .venv/bin/python - "$1" <<'PY'
import json, sys
from pathlib import Path
path = Path(sys.argv[1]) / "metrics.json"
metrics = json.loads(path.read_text()) if path.is_file() else {}
sys.exit(0 if metrics.get("final") else 1)
PY
}

one() {  # one run: epochs, rate, seed
  local folder="$out/e$1-lr$2-s$3"
  if [ -d "$folder" ] && finished "$folder"; then echo "done: $folder"; return; fi
  if [ -f "$folder/checkpoint.pt" ]; then
    echo "resuming: $folder"  # (with the data root it recorded)
    "$train" --resume "$folder"
  else
    echo "training: $folder"
    "$train" --config studies/converged/pilot.yaml --root "$root" --epochs "$1" --lr "$2" --seed "$3" \
      --output "$folder"
  fi
}

for seed in 100000 101000 102000; do
  if [ "$mode" = epochs ]; then
    for epochs in 20 40 60; do one "$epochs" 3e-4 "$seed"; done
  else
    for rate in 1.5e-4 6e-4; do one "$chosen" "$rate" "$seed"; done
  fi
done
