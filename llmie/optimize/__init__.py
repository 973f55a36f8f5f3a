"""`llmie optimize`: DSPy MIPROv2 over MASSIE batched-schema prompts with the LF1 metric."""
import os

# litellm (under DSPy) fetches a model price list from GitHub at import, with retries: no network at run time
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from llmie.optimize.lm import estimate_calls  # noqa: E402
from llmie.optimize.run import OptimizeConfig, run_optimize  # noqa: E402

__all__ = ["OptimizeConfig", "estimate_calls", "run_optimize"]
