"""`llmie sft RECIPE.yaml [--key value | key=value ...]`: trl `SFTTrainer` + peft LoRA, QLoRA when `load_in_4bit: true`.

A recipe is one flat YAML mapping (trl's TrlParser idea), three kinds of keys:
- **trl `SFTConfig` keys** (`output_dir`, `learning_rate`, `lr_scheduler_type`, `warmup_ratio`,
  `num_train_epochs`, `max_steps`, `per_device_train_batch_size`, `max_length`, `gradient_checkpointing`, ...)
  go to `SFTConfig` unchanged; unknown keys are an error.
- **model / peft keys** (`model`, `load_in_4bit`, `bnb_4bit_*`, `dtype`, `use_peft`, `lora_*`): `model` accepts
  what `llmie.models.resolve_llm` does (`embedded` = SmolLM2-135M-Instruct, a folder, a hub id); `init_adapter`
  (a peft adapter folder) goes on training that adapter instead of a new LoRA (a later stage of a long run).
- **`data:`**, llmie's section: `train_file` (JSONL of `prompt`/`completion` or `text` rows) or `builder`
  (`module:function` inside `llmie`, called with the remaining data keys, returning such rows).
Overrides (llmie.train.config): `key=value`, `--key value`, `--key=value`, `--flag`, `data.key=value`.

Prompt-completion rows give a completion-only loss (trl masks the prompt); TF rows are split at the first
`result =`. QLoRA = 4-bit NF4 with double quantisation (bitsandbytes; it runs on CPU too, slowly) +
`prepare_model_for_kbit_training` + LoRA on all linear layers. The adapter, the tokenizer and
`llmie_sft.json` (recipe, losses, base model, quantisation) are saved to `output_dir`.
"""
from __future__ import annotations

import importlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from llmie.train import LMRecipe, write_rank_hash
from llmie.train.config import as_dict, coerce, flat_loader, recipe_main, trainer_kwargs

log = logging.getLogger("llmie.sft")


@dataclass
class SFTRecipe(LMRecipe):
    """An `llmie sft` recipe: the shared model / peft / data fields; trl `SFTConfig` fields pass through."""

    trainer_config: ClassVar[str] = "trl:SFTConfig"
    init_adapter: str | None = None  # an adapter folder to go on training (a second stage on fresh rows), not a new LoRA


load_sft_recipe = flat_loader(SFTRecipe)  # (path, overrides) -> the flat dict the trainer takes


def sft_args(cfg: SFTRecipe | dict[str, Any]) -> dict[str, Any]:
    """The SFTConfig keyword arguments of a recipe (only keys the recipe set), with CPU defaults."""
    return trainer_kwargs(coerce(SFTRecipe, cfg), "runs/sft")


def builder_rows(data: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """(rows, source) of a data section: `train_file` JSONL or a `builder` (`llmie.<module>:<function>`,
    called with the remaining data keys); shared by sft and dpo."""
    data = dict(data)
    if "train_file" in data:
        from llmie.io import iter_json_lines

        src = str(data.pop("train_file"))
        return [obj for _, obj in iter_json_lines(src)], src
    builder = data.pop("builder", None)
    if not builder:
        raise ValueError("recipe data section needs train_file or builder")
    mod, _, fn = str(builder).partition(":")
    if not mod.startswith("llmie.") or not fn:
        raise ValueError(f"data.builder {builder!r}: expected 'llmie.<module>:<function>'")
    return getattr(importlib.import_module(mod), fn)(**data), str(builder)


def load_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Prompt/completion or text rows of the data section (a train_file's rows are checked)."""
    rows, src = builder_rows(data)
    if "train_file" in data:
        for i, r in enumerate(rows):
            if not (("prompt" in r and "completion" in r) or "text" in r):
                raise ValueError(f"{src}: row {i + 1} needs prompt+completion or text")
    return rows


def row_kinds(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Rows per `kind` (tf, plain, ...) for the run summary."""
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[str(r.get("kind", "row"))] = kinds.get(str(r.get("kind", "row")), 0) + 1
    return kinds


def lora_config(cfg: dict[str, Any]):
    """The peft LoraConfig of a recipe's lora_* fields (causal LM)."""
    from peft import LoraConfig

    return LoraConfig(r=cfg["lora_r"], lora_alpha=cfg["lora_alpha"], lora_dropout=cfg["lora_dropout"],
                      bias=cfg["lora_bias"], target_modules=cfg["lora_target_modules"], task_type="CAUSAL_LM")


def _dtype(name: str, cuda: bool):
    import torch

    if name == "auto":
        return torch.bfloat16 if cuda else torch.float32
    return getattr(torch, name)


def load_model(cfg: dict[str, Any], gradient_checkpointing: bool = False):
    """(model, tokenizer, resolved path): full precision, or 4-bit NF4 + prepare_model_for_kbit_training."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmie.models import resolve_llm

    path = resolve_llm(cfg["model"])
    cuda = torch.cuda.is_available()
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg["trust_remote_code"])
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    kw: dict[str, Any] = dict(dtype=_dtype(cfg["dtype"], cuda), trust_remote_code=cfg["trust_remote_code"])
    if cfg["load_in_4bit"]:
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=cfg["bnb_4bit_quant_type"],
            bnb_4bit_use_double_quant=cfg["bnb_4bit_use_double_quant"],
            bnb_4bit_compute_dtype=_dtype(cfg["bnb_4bit_compute_dtype"], cuda))
        kw["device_map"] = {"": 0} if cuda else "cpu"
    model = AutoModelForCausalLM.from_pretrained(path, **kw)
    if cfg["load_in_4bit"]:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    return model, tok, path


def recipe_rows(cls: type, cfg: Any, loader: Any, what: str) -> tuple[Any, dict[str, Any], list[dict], dict[str, int]]:
    """(recipe, its flat view, the data section's rows, rows per kind): how sft and dpo start a run."""
    recipe = coerce(cls, cfg)
    flat = as_dict(recipe)
    rows = loader(flat["data"])
    if not rows:
        raise ValueError(f"the data section produced no {what} rows")
    return recipe, flat, rows, row_kinds(rows)


def load_peft_model(cfg: dict[str, Any], gradient_checkpointing: bool = False):
    """(model, tokenizer, path, peft_config): an existing adapter loaded trainable (dpo's `sft_adapter`, of which trl
    copies a frozen `ref`; sft's `init_adapter`, a later stage of a long run), else a fresh LoRA config for the
    trainer to apply (`use_peft`), else full fine-tuning."""
    model, tok, path = load_model(cfg, gradient_checkpointing)
    key = "sft_adapter" if cfg.get("sft_adapter") else "init_adapter"
    if cfg.get(key):
        from peft import PeftModel

        from llmie.models import peft_adapter

        ad = peft_adapter(cfg[key], key)  # a bf16 shipped adapter is cast to the model's dtype (peft autocast)
        return PeftModel.from_pretrained(model, str(ad), is_trainable=True), tok, path, None
    if cfg["use_peft"]:
        return model, tok, path, lora_config(cfg)
    if cfg["load_in_4bit"]:
        alt = " or an sft_adapter" if "sft_adapter" in cfg else " (4-bit weights cannot be trained directly)"
        raise ValueError(f"load_in_4bit needs use_peft: true{alt}")
    return model, tok, path, None


def count_4bit(model) -> int:
    """Number of bitsandbytes `Linear4bit` layers (proof that QLoRA really ran 4-bit)."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    return sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


def train_sft(cfg: SFTRecipe | dict[str, Any]) -> Path:
    """Run one SFT job from a recipe (dataclass or flat dict); returns the output folder (adapter + llmie_sft.json)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    t0 = time.perf_counter()
    recipe, cfg, rows, kinds = recipe_rows(SFTRecipe, cfg, load_rows, "training")
    cols = ["prompt", "completion"] if "prompt" in rows[0] else ["text"]
    ds = Dataset.from_list([{c: r[c] for c in cols} for r in rows])
    args = SFTConfig(**sft_args(recipe))
    model, tok, path, peft_config = load_peft_model(cfg, bool(args.gradient_checkpointing))
    n4 = count_4bit(model)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config)
    # `--resume_from_checkpoint DIR|true` (a TrainingArguments field) continues a killed long run from its checkpoint
    resume = args.resume_from_checkpoint
    if isinstance(resume, str) and resume.lower() in ("true", "last"):
        resume = True
    result = trainer.train(resume_from_checkpoint=resume or None)
    out = Path(args.output_dir)
    write_rank_hash(trainer.accelerator, trainer.model, out)
    trainer.save_model(str(out))
    tok.save_pretrained(str(out))
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    summary = {
        "base_model": path, "model": cfg["model"], "load_in_4bit": cfg["load_in_4bit"], "linear4bit_layers": n4,
        "peft": bool(peft_config or cfg.get("init_adapter")), "init_adapter": cfg.get("init_adapter"), "lora_r": cfg["lora_r"], "lora_alpha": cfg["lora_alpha"],
        "lora_target_modules": cfg["lora_target_modules"], "rows": len(rows), "row_kinds": kinds,
        "completion_only_loss": cols == ["prompt", "completion"] and args.completion_only_loss is not False,
        "global_steps": trainer.state.global_step, "train_loss": result.training_loss, "logged_losses": losses,
        "seconds": round(time.perf_counter() - t0, 1),
        "recipe": cfg,
    }
    (out / "llmie_sft.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    log.info("SFT done: %d steps, train loss %.4f, %d Linear4bit layers -> %s", trainer.state.global_step,
             result.training_loss, n4, out)
    del trainer, model
    return out


if __name__ == "__main__":  # pragma: no cover  (accelerate launch -m llmie.train.sft RECIPE [--key value ...])
    import sys

    raise SystemExit(recipe_main(sys.argv[1:], SFTRecipe, train_sft))
