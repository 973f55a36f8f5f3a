#!/usr/bin/env bash
# PVP projector ladder: every rung is `llmie train-projector recipes/pvp_encoder.yaml` with overrides, then
# all of EXP with the adversarial rate. Data: the commands in the header of recipes/pvp_encoder.yaml, plus
#   python eval/build_alignment_points.py runs/pvp-gold-all --all-phrases   (the names+gold rung only)
# Usage: OMP_NUM_THREADS=1 bash eval/pvp_ladder.sh [RUNG ...]   (default: all; results in $OUT/ladder.tsv)
# Budget: 300 steps x 16 per rung (~9 min on one thread) except `long` (the shipped recipe, 1500 steps).
# Model selection in every rung: dev EM + abstentions on mismatched dev pairs (the recipe's dev_adversarial).
set -euo pipefail
OUT=${OUT:-runs/pvp-ladder}
LLMIE=${LLMIE:-llmie}
mkdir -p "$OUT"
R300=(max_steps=300 eval_every=150 p_neg=0.2)
UD_DEV='dev=[runs/pvp-data/gold_alignment.dev.jsonl, runs/pvp-data-binary/dev.*.jsonl, runs/pvp-ud/dev.*.jsonl]'
declare -A RUNGS=(
  [untrained]="max_steps=1 lr=0 head_lr=0 eval_every=0"
  [names-gold]="${R300[*]} dev_limit=400|train=[runs/pvp-data/train.*.jsonl, runs/pvp-data-binary/train.*.jsonl, runs/pvp-gold-all/gold_alignment.train.jsonl]|dev=[runs/pvp-gold-all/gold_alignment.dev.jsonl, runs/pvp-data-binary/dev.*.jsonl]"
  [ud]="${R300[*]}|$UD_DEV"
  [ud-sim]="${R300[*]} head=sim|$UD_DEV"
  [ud-wgl1]="${R300[*]} wgl_k=1.0|$UD_DEV"
  [ud-layers6]="${R300[*]} layers=6|$UD_DEV"
  [ud-pneg4]="${R300[*]} p_neg=0.4|$UD_DEV"
  [long]=""
)
ORDER=(untrained names-gold ud ud-sim ud-wgl1 ud-layers6 ud-pneg4 long)
for name in "${@:-${ORDER[@]}}"; do
  spec=${RUNGS[$name]}
  args=()
  IFS='|' read -r -a parts <<< "$spec"
  for part in "${parts[@]}"; do
    if [[ $part == train=* || $part == dev=* ]]; then args+=("$part"); else read -r -a kv <<< "$part"; args+=("${kv[@]}"); fi
  done
  [ -f "$OUT/$name/aligner.json" ] || $LLMIE train-projector recipes/pvp_encoder.yaml "${args[@]}" out="$OUT/$name"
  $LLMIE eval --bench exp --method pvp --adapter "$OUT/$name" --adversarial --out "$OUT/exp-$name"
  python - "$OUT" "$name" <<'PY' >> "$OUT/ladder.tsv"
import json, sys
out, name = sys.argv[1:]
r = json.load(open(f"{out}/exp-{name}/results.json"))["avg"]
t = json.load(open(f"{out}/{name}/aligner.json"))["training"]
print("\t".join(map(str, [name, t.get("steps"), t.get("best_step"), r["em"], r["sm"], r.get("adversarial_rate")])))
PY
done
