#!/usr/bin/env bash
# The larger `llmie optimize` runs recorded in README (not CI): DSPy light budget, 50 train / 50 dev, and a
# held-out 50-sentence test slice the optimiser never sees; English UNER dev, embedded SmolLM2-135M.
# A: natural mix (half the sentences without entities); B: only sentences with entities.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
OUT="${1:-runs/optimize}"
.venv/bin/llmie optimize --auto light --n-train 50 --n-dev 50 --n-test 50 --nonempty 0.5 --seed 13 --out "$OUT/light_mixed"
.venv/bin/llmie optimize --auto light --n-train 50 --n-dev 50 --n-test 50 --nonempty 1.0 --seed 13 --out "$OUT/light_entities"
