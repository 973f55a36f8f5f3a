#!/usr/bin/env bash
# PVP projector ladder: every rung is `llmie train-projector recipes/pvp_encoder.yaml` with overrides, then
# all of EXP with the adversarial rate. Data: the commands in the header of recipes/pvp_encoder.yaml, plus
#   python eval/build_alignment_points.py runs/pvp-gold-all --all-phrases   (the names+gold rung only)
#   llmie synth --out runs/pvp-ud3 --seeds all --langs por,spa,cat,glg,epo,hbs --n-train 2000 --n-dev 60 \
#     --proposer awesome                                      (ud3x-stage2 and consensus-stage2: 3x the UD seeds)
#   python eval/pvp_consensus_filter.py runs/pvp-consensus runs/pvp-data/train.*.jsonl \
#     runs/pvp-data-binary/train.*.jsonl runs/pvp-ud3/train.*.jsonl   (consensus-stage2: points the shipped pvp agrees with)
# Rungs marked @stage2 run recipes/pvp_encoder.stage2.yaml (1000 steps) from the init they name. The recipes train LoRA
# on every linear layer (the shipped alllinear rungs); the earlier rungs name lora_targets=[query,value] as they ran.
# Usage: OMP_NUM_THREADS=1 bash eval/pvp_ladder.sh [RUNG ...]   (default: all; results in $OUT/ladder.tsv)
# Budget: 300 steps x 16 per rung (~9 min on one thread) except `long` / `alllinear-stage1` (1500 steps) and the
# @stage2 rungs (+1000).
# Model selection in every rung: dev EM + abstentions on mismatched dev pairs (the recipe's dev_adversarial).
set -euo pipefail
OUT=${OUT:-runs/pvp-ladder}
LLMIE=${LLMIE:-llmie}
mkdir -p "$OUT"
R300=(max_steps=300 eval_every=150 p_neg=0.2 lora_targets=[query,value])
UD_DEV='dev=[runs/pvp-data/gold_alignment.dev.jsonl, runs/pvp-data-binary/dev.*.jsonl, runs/pvp-ud/dev.*.jsonl]'
declare -A RUNGS=(
  [untrained]="max_steps=1 lr=0 head_lr=0 eval_every=0 lora_targets=[query,value]"
  [names-gold]="${R300[*]} dev_limit=400|train=[runs/pvp-data/train.*.jsonl, runs/pvp-data-binary/train.*.jsonl, runs/pvp-gold-all/gold_alignment.train.jsonl]|dev=[runs/pvp-gold-all/gold_alignment.dev.jsonl, runs/pvp-data-binary/dev.*.jsonl]"
  [ud]="${R300[*]}|$UD_DEV"
  [ud-sim]="${R300[*]} head=sim|$UD_DEV"
  [ud-wgl1]="${R300[*]} wgl_k=1.0|$UD_DEV"
  [ud-layers6]="${R300[*]} layers=6|$UD_DEV"
  [ud-pneg4]="${R300[*]} p_neg=0.4|$UD_DEV"
  [long]="lora_targets=[query,value]"
  [qv-stage2]="@stage2 lora_targets=[query,value] init=$OUT/long"
  [ud3x-stage2]="@stage2 lora_targets=[query,value] init=$OUT/long|train=[runs/pvp-data/train.*.jsonl, runs/pvp-data-binary/train.*.jsonl, runs/pvp-data/gold_alignment.train.jsonl, runs/pvp-ud3/train.*.jsonl]"
  [consensus-stage2]="@stage2 lora_targets=[query,value] init=$OUT/long|train=[runs/pvp-consensus/train.pvp-data.*.jsonl, runs/pvp-consensus/train.pvp-data-binary.*.jsonl, runs/pvp-data/gold_alignment.train.jsonl, runs/pvp-consensus/train.pvp-ud3.*.jsonl]"
  [alllinear-stage1]=""
  [alllinear]="@stage2 init=$OUT/alllinear-stage1"
)
ORDER=(untrained names-gold ud ud-sim ud-wgl1 ud-layers6 ud-pneg4 long qv-stage2 ud3x-stage2 consensus-stage2 alllinear-stage1 alllinear)
for name in "${@:-${ORDER[@]}}"; do
  spec=${RUNGS[$name]}
  recipe=recipes/pvp_encoder.yaml
  if [[ $spec == @stage2* ]]; then recipe=recipes/pvp_encoder.stage2.yaml; spec=${spec#@stage2}; fi
  args=()
  IFS='|' read -r -a parts <<< "$spec"
  for part in "${parts[@]}"; do
    if [[ $part == train=* || $part == dev=* ]]; then args+=("$part"); else read -r -a kv <<< "$part"; args+=("${kv[@]}"); fi
  done
  [ -f "$OUT/$name/aligner.json" ] || $LLMIE train-projector "$recipe" "${args[@]}" out="$OUT/$name"
  $LLMIE eval --bench exp --method pvp --adapter "$OUT/$name" --adversarial --out "$OUT/exp-$name"
  python - "$OUT" "$name" <<'PY' >> "$OUT/ladder.tsv"
import json, sys
out, name = sys.argv[1:]
r = json.load(open(f"{out}/exp-{name}/results.json"))["avg"]
t = json.load(open(f"{out}/{name}/aligner.json"))["training"]
print("\t".join(map(str, [name, t.get("steps"), t.get("best_step"), r["em"], r["sm"], r.get("adversarial_rate")])))
PY
done
