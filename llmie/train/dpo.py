"""`llmie dpo RECIPE.yaml [--key value | key=value ...]`: trl `DPOTrainer` + peft LoRA on prompt/chosen/rejected rows.

Same recipe shape as `llmie sft` (llmie/train/sft.py, fields shared through `llmie.train.LMRecipe`):
- **trl `DPOConfig` keys** (`beta`, `loss_type`, `learning_rate`, `max_steps`, `max_length`,
  `precompute_ref_log_probs`, ...), passed unchanged (unknown keys are an error);
- **model / peft keys** as in sft (`model`, `load_in_4bit`, `lora_*`, ...) plus `sft_adapter`;
- **`data:`**: `train_file` (JSONL rows with `prompt`, `chosen`, `rejected`, plain or conversational, e.g. from
  `llmie data pvp-dpo`) or `builder` (`llmie.<module>:<function>`, e.g. `llmie.projection.llm_data:build_dpo_pairs`),
  plus `limit` (use the first N rows; DPO on a CPU sees only a few hundred).

Reference model, without a second copy of the weights:
- with `sft_adapter` (the usual MASSIE App. H recipe: SFT, then DPO from it), the SFT adapter is loaded
  trainable and trl copies it into a frozen `ref` adapter, so the reference is the SFT model;
- without it, a fresh LoRA is trained and the reference is the base model with adapters disabled.
`precompute_ref_log_probs: true` computes the reference log-probabilities once before training (trl), which
saves one forward pass per step. Only the trained (`default`) adapter is saved to `output_dir`, with
the tokenizer and `llmie_dpo.json` (recipe, losses, reward accuracies, rows per kind).

Multi-GPU: the same command under accelerate, e.g.
`accelerate launch --num_processes 4 -m llmie.train.dpo recipes/pvp_dpo.paper.yaml` (trl/accelerate handle
data parallelism; add a DeepSpeed/FSDP config with `--config_file` for larger models).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from llmie.train import LMRecipe, write_rank_hash
from llmie.train.config import coerce, flat_loader, recipe_main, trainer_kwargs
from llmie.train.sft import builder_rows, load_peft_model, recipe_rows

log = logging.getLogger("llmie.dpo")


@dataclass
class DPORecipe(LMRecipe):
    """An `llmie dpo` recipe: the shared model / peft / data fields plus `sft_adapter`; trl `DPOConfig` fields
    pass through. `data` also takes `limit` (use the first N rows)."""

    trainer_config: ClassVar[str] = "trl:DPOConfig"

    sft_adapter: str | None = None          # an `llmie sft` adapter folder: trained on, frozen copy = reference


load_dpo_recipe = flat_loader(DPORecipe)  # (path, overrides) -> the flat dict the trainer takes


def dpo_args(cfg: DPORecipe | dict[str, Any]) -> dict[str, Any]:
    """The DPOConfig keyword arguments of a recipe (only keys the recipe set), with CPU defaults."""
    return trainer_kwargs(coerce(DPORecipe, cfg), "runs/dpo")


def load_pairs(data: dict[str, Any]) -> list[dict[str, Any]]:
    """prompt/chosen/rejected rows of the data section; every row is checked (record and field named)."""
    from llmie.schema import LlmieDataError

    data = dict(data)
    limit = data.pop("limit", None)
    rows, src = builder_rows(data)
    for i, r in enumerate(rows):
        for k in ("prompt", "chosen", "rejected"):
            if k not in r:
                raise LlmieDataError(f"{src}: row needs {k!r}", record=str(r.get("id", i + 1)), field=k)
        if r["chosen"] == r["rejected"]:
            raise LlmieDataError(f"{src}: chosen equals rejected", record=str(r.get("id", i + 1)), field="rejected")
    return rows[:limit] if limit else rows


def train_dpo(cfg: DPORecipe | dict[str, Any]) -> Path:
    """Run one DPO job from a recipe (dataclass or flat dict); returns the output folder (adapter + llmie_dpo.json)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    t0 = time.perf_counter()
    recipe, cfg, rows, kinds = recipe_rows(DPORecipe, cfg, load_pairs, "preference")
    ds = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    args = DPOConfig(**dpo_args(recipe))
    model, tok, path, peft_config = load_peft_model(cfg, bool(args.gradient_checkpointing))
    trainer = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config)
    result = trainer.train()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    acc = trainer.accelerator
    write_rank_hash(acc, trainer.model, out)  # under accelerate launch: proves the ranks stayed in sync
    m = acc.unwrap_model(trainer.model)
    if hasattr(m, "peft_config"):
        if acc.is_main_process:  # only the trained adapter (not trl's frozen `ref` copy), written once
            m.save_pretrained(str(out), selected_adapters=["default"])
    else:
        trainer.save_model(str(out))  # rank-aware itself
    if acc.is_main_process:
        tok.save_pretrained(str(out))
    hist = trainer.state.log_history
    summary = {
        "base_model": path, "model": cfg["model"], "sft_adapter": cfg["sft_adapter"],
        "reference": "sft adapter (frozen copy)" if cfg["sft_adapter"] else "base model (adapters disabled)",
        "rows": len(rows), "row_kinds": kinds, "global_steps": trainer.state.global_step,
        "train_loss": result.training_loss, "logged_losses": [h["loss"] for h in hist if "loss" in h],
        "reward_accuracies": [h["rewards/accuracies"] for h in hist if "rewards/accuracies" in h],
        "reward_margins": [h["rewards/margins"] for h in hist if "rewards/margins" in h],
        "seconds": round(time.perf_counter() - t0, 1),
        "recipe": cfg,
    }
    if acc.is_main_process:
        (out / "llmie_dpo.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    acc.wait_for_everyone()  # every rank returns only once rank 0's files exist (the CLI reads the summary)
    log.info("DPO done: %d steps, loss %.4f -> %s", trainer.state.global_step, result.training_loss, out)
    del trainer, model
    return out


if __name__ == "__main__":  # pragma: no cover  (accelerate launch -m llmie.train.dpo RECIPE [--key value ...])
    import sys

    raise SystemExit(recipe_main(sys.argv[1:], DPORecipe, train_dpo))
