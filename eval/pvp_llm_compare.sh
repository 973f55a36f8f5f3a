#!/usr/bin/env bash
# The LLM projector on EXP: base model, + SFT adapter, + SFT + DPO adapter, next to pvp and awesome on the
# same subset (the numbers in README "LLM projector"). CPU-sized: the embedded SmolLM2-135M-Instruct,
# LIMIT pairs per EXP file. One heavy process at a time; nice'd for a shared machine.
#   bash eval/pvp_llm_compare.sh [LIMIT] [SFT_STEPS] [DPO_STEPS]
set -euo pipefail
LIMIT=${1:-30}; SFT_STEPS=${2:-30}; DPO_STEPS=${3:-6}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
L="nice -n 10 .venv/bin/llmie"
R=runs/pvp-llm
mkdir -p $R
$L data pvp-sft --out $R/sft.jsonl                                   # runs/pvp-data + runs/pvp-data-binary
$L sft recipes/pvp_sft.yaml max_steps=$SFT_STEPS learning_rate=5.0e-4 bf16=auto output_dir=$R/sft
# the SFT model's own answers on 100 training pairs -> negatives of kind `sft`
(tail -n 50 runs/pvp-data/train.por.jsonl; tail -n 50 runs/pvp-data/train.spa.jsonl) > $R/mine.jsonl
$L project --method llm --adapter $R/sft --in $R/mine.jsonl --out $R/sft-pred.jsonl
$L data pvp-dpo --sft-predictions $R/sft-pred.jsonl --out $R/dpo.jsonl
$L dpo recipes/pvp_dpo.yaml max_steps=$DPO_STEPS sft_adapter=$R/sft output_dir=$R/dpo bf16=auto \
   data.train_file=$R/dpo.jsonl data.limit=$((DPO_STEPS * 4))
for m in awesome pvp; do $L eval --bench exp --method $m --limit $LIMIT --out $R/exp-$m-$LIMIT; done
$L eval --bench exp --method llm --limit $LIMIT --out $R/exp-llm-base-$LIMIT
$L eval --bench exp --method llm --adapter $R/sft --limit $LIMIT --out $R/exp-llm-sft-$LIMIT
$L eval --bench exp --method llm --adapter $R/dpo --limit $LIMIT --out $R/exp-llm-dpo-$LIMIT
