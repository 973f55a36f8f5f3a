"""`llmie optimize`: DSPy MIPROv2 over MASSIE batched-schema prompts with the LF1 metric."""
from llmie.optimize.run import OptimizeConfig, estimate_calls, run_optimize

__all__ = ["OptimizeConfig", "estimate_calls", "run_optimize"]
