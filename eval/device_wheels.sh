#!/usr/bin/env bash
# Wheels eval/device_check.sh needs on the lent GPU machine (its image has torch, transformers, peft and
# accelerate, Python 3.12, no registry): llmie's pure-data deps that the image lacks, pinned to the versions
# this venv tested. Run here, once, before the device run; .whl/ is git-ignored and travels with `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 langcodes==3.5.1 \
  typing-extensions==4.16.0
ls -la .whl && du -sh .whl
