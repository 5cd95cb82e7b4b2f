#!/usr/bin/env bash
# The converged study's main runs (docs/study-converged.md): block B (same rate, the primary)
# then block A (the papers' spread), each brought to replicates 0..N-1. compare resumes: a
# finished run is reused, a stopped one resumed, so each session runs
#   bash studies/converged/study.sh N [DATA_ROOT]
# with N one more than the seeds already done (every arm of a seed is trained before the next).
# The rivals, kd and graftplus stop at 3 seeds (--seeds-of); the free rows follow nograft.
# The recipes (block_b.yaml, block_a.yaml) hold the pilot's E and rate: they are written with
# the plan's "Decisions from the pilot", before seed 0.
set -euo pipefail
[ -n "${1:-}" ] || { echo "usage: study.sh SEEDS [DATA_ROOT]" >&2; exit 2; }
seeds="$1"
root="$(realpath "${2:-/tmp/data}")"
cd "$(dirname "$0")/../.."
for recipe in studies/converged/block_b.yaml studies/converged/block_a.yaml; do
  [ -f "$recipe" ] || { echo "study.sh: $recipe is missing: the pilot's decisions come first" >&2; exit 2; }
done
compare=".venv/bin/reidgraft-compare"

"$compare" --config studies/converged/block_b.yaml --root "$root" --models 2 --seeds "$seeds" \
  --methods nograft graft average nograft_ensemble nograft_average nograft_model_stock nograft_ema \
            papa dml teacher kd graftplus \
  --seeds-of papa=3 dml=3 teacher=3 kd=3 graftplus=3 \
  --primary graft:mean-nograft:mean \
  --secondary graft:mean-average:mean graft:best_of_k-nograft:best_of_k \
              graft:mean-nograft_average:mean graft:mean-nograft_model_stock:mean \
              graft:mean-nograft_ensemble:mean \
              graftplus:mean-kd:mean graftplus:mean-graft:mean kd:mean-nograft:mean \
              nograft_ema:mean-nograft:mean papa:mean-nograft:mean dml:mean-nograft:mean \
  --output runs/converged/block-b

"$compare" --config studies/converged/block_a.yaml --root "$root" --models 2 --seeds "$seeds" \
  --methods nograft graft \
  --primary graft:mean-nograft:mean \
  --secondary graft:best_of_k-nograft:best_of_k \
  --output runs/converged/block-a
