"""The generic optimiser API shared by every DSPy MIPROv2 program in llmie (MASSIE prompts, the
projection program): LM construction, the MIPROv2 settings an OptimizeConfig implies, call budgets."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmie.optimize.run import OptimizeConfig


def mipro_settings(cfg: OptimizeConfig, n_dev: int) -> dict[str, Any]:
    """The MIPROv2 settings these options imply (auto modes resolved as DSPy 3.4 does)."""
    from dspy.teleprompt.mipro_optimizer_v2 import AUTO_RUN_SETTINGS, MIN_MINIBATCH_SIZE

    boot = cfg.demos if cfg.bootstrapped is None else cfg.bootstrapped
    zeroshot = cfg.demos == 0 and boot == 0
    if cfg.auto:
        a = AUTO_RUN_SETTINGS[cfg.auto]
        n = a["n"]
        val = min(n_dev, a["val_size"])
        num_vars = 1 if zeroshot else 2
        return dict(num_trials=int(max(2 * num_vars * math.log2(n), 1.5 * n)), num_fewshot=n,
                    num_instruct=n if zeroshot else int(n * 0.5), valset=val, minibatch=val > MIN_MINIBATCH_SIZE,
                    minibatch_size=min(25 if cfg.minibatch_size is None else cfg.minibatch_size, val),
                    bootstrapped=boot, labeled=cfg.demos)
    mb = cfg.minibatch_size is not None and cfg.minibatch_size < n_dev
    return dict(num_trials=cfg.trials, num_fewshot=cfg.candidates, num_instruct=cfg.candidates, valset=n_dev,
                minibatch=mb, minibatch_size=cfg.minibatch_size if mb else n_dev, bootstrapped=boot,
                labeled=cfg.demos)


def estimate_calls(cfg: OptimizeConfig, n_train: int, n_dev: int, n_test: int, n_batches: int) -> dict[str, Any]:
    """Upper bound on LM calls before spending them (DSPy's cache makes repeated combinations free)."""
    s = mipro_settings(cfg, n_dev)
    b = n_batches
    boot_sets = max(0, s["num_fewshot"] - 2) if s["bootstrapped"] > 0 else 0   # seed -1 + shuffled sets
    bootstrap = boot_sets * n_train * b                                         # worst case: every example tried
    if s["minibatch"]:
        full = s["num_trials"] // cfg.full_eval_steps + 1 + (1 if s["num_trials"] % cfg.full_eval_steps else 0)
        trials = s["num_trials"] * s["minibatch_size"] * b + full * s["valset"] * b
    else:
        trials = s["num_trials"] * s["valset"] * b
    default_eval = s["valset"] * b
    ours = (2 * n_dev + 2 * n_test) * b                                          # dev before/after, test
    prompt = s["num_instruct"] + (math.ceil(n_train / 10) + 1 if cfg.data_aware else 0) + (2 if cfg.program_aware else 0)
    return {"settings": s, "batches_per_doc": b,
            "task": {"bootstrap_max": bootstrap, "default_program": default_eval, "trials": trials,
                     "dev_before_after_and_test": ours, "total_max": bootstrap + default_eval + trials + ours},
            "prompt": {"proposals": s["num_instruct"], "total_max": prompt}}


# ------------------------------------------------------------------------------------------ running

def make_lm(spec: str, api_base: str, default_name: str, **kw: Any):
    """A DSPy LM for a served model name or ``openai:<url>#<name>`` (litellm's openai route, no key)."""
    import dspy

    if spec.startswith("openai:"):
        url, _, name = spec[len("openai:"):].partition("#")
        api_base, spec = url, name or default_name
    return dspy.LM(f"openai/{spec}", api_base=api_base, api_key="none", engine="litellm", num_retries=2, **kw)


def task_and_prompt_lms(cfg: OptimizeConfig, api_base: str, name: str) -> tuple[Any, Any]:
    """(task LM at temperature 0, prompt-proposal LM at cfg.init_temperature), with DSPy's cache fresh for this
    run (memory only: call counts stay honest)."""
    import dspy

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    task_lm = make_lm(cfg.task_model or name, api_base, name, temperature=0.0, max_tokens=cfg.max_tokens)
    prompt_lm = make_lm(cfg.prompt_model or name, api_base, name, temperature=cfg.init_temperature, max_tokens=512)
    return task_lm, prompt_lm
