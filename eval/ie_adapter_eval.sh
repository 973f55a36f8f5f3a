#!/usr/bin/env bash
# The IE adapter of the embedded LLM against the raw model and the encoder baseline (README "IE adapter").
#   bash eval/ie_adapter_eval.sh [OUT]        (env: N_UNER=300 N_MK=50 MODELS="embedded embedded-base" HF_N=40)
# - UNER English-EWT test (first N_UNER sentences) and all 20 MasakhaNER 2.0 test sets (first N_MK each), vLLM backend,
#   for each model spec: `embedded` = SmolLM2-135M + the shipped adapter (asked zero-shot), `embedded-base` = raw model
#   (asked with the template's 3 demos, as before the adapter).
# - vLLM vs hf agreement: the adapter on the first HF_N UNER sentences through both backends.
# - The encoder baseline: eval/ie_encoder_baseline.py (vanilla e5-small token classification, same sentences).
# Every step skips itself when its results.json exists (rerun = resume).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/ie-adapter-eval}"
N_UNER="${N_UNER:-300}"; N_MK="${N_MK:-50}"; HF_N="${HF_N:-40}"
MODELS="${MODELS:-embedded embedded-base}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
LLMIE="${LLMIE:-.venv/bin/llmie}"
run() { local out="$1"; shift; [ -f "$out/results.json" ] || "$LLMIE" eval "$@" --out "$out"; }
for m in $MODELS; do
  run "$OUT/uner-$m" --bench uner --model "$m" --limit "$N_UNER"
  run "$OUT/masakhaner-$m" --bench masakhaner --model "$m" --limit "$N_MK"
done
run "$OUT/uner-embedded-vllm-$HF_N" --bench uner --model embedded --limit "$HF_N"
run "$OUT/uner-embedded-hf-$HF_N" --bench uner --model embedded --limit "$HF_N" --backend hf
[ -f "$OUT/encoder/results.json" ] || .venv/bin/python eval/ie_encoder_baseline.py --out "$OUT/encoder" \
  --n-test "$N_UNER" --n-mk "$N_MK"
.venv/bin/python eval/ie_adapter_table.py "$OUT"
