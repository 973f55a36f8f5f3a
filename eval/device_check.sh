#!/usr/bin/env bash
# One prepared device check (the `device` tool, or any CUDA machine): install the carried wheels if any,
# then eval/device_check.py (tiny models, no downloads; see its docstring). DEVICE=cpu runs it here.
#   here:   bash eval/device_wheels.sh
#   device: run(command="bash eval/device_check.sh", carry=[".whl"], timeout_s=420)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} DEVICE=${DEVICE:-auto}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$PY eval/device_check.py
