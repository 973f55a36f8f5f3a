#!/usr/bin/env bash
# Reproduce the shipped PVP projector (llmie/data/projectors/pvp-e5-small) end to end on one CPU thread:
# synthetic data (names + UD seeds, six languages, both proposers), gold-aligned phrases, the two training
# stages of recipes/pvp_encoder*.yaml, then all of EXP with the adversarial rate.
#   OMP_NUM_THREADS=1 bash eval/pvp_reproduce.sh [OUT]     (default OUT: runs/pvp-projector; ~1 h here)
# The trained folder is OUT/stage2; copy it over llmie/data/projectors/pvp-e5-small to ship it.
set -euo pipefail
OUT=${1:-runs/pvp-projector}
LLMIE=${LLMIE:-llmie}
$LLMIE synth --out runs/pvp-data --langs por,spa --n-train 800 --n-dev 80 --proposer awesome
$LLMIE synth --out runs/pvp-data-binary --langs por,spa --n-train 800 --n-dev 80 --proposer binary
$LLMIE synth --out runs/pvp-ud --seeds all --langs por,spa,cat,glg,epo,hbs --n-train 700 --n-dev 60 --proposer awesome
python eval/build_alignment_points.py runs/pvp-data
$LLMIE train-projector recipes/pvp_encoder.yaml out="$OUT/stage1"
$LLMIE train-projector recipes/pvp_encoder.stage2.yaml init="$OUT/stage1" out="$OUT/stage2"
$LLMIE eval --bench exp --method pvp --adapter "$OUT/stage2" --adversarial --out "$OUT/exp"
