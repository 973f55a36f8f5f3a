"""Training runners over trl/peft: `sft` (SFTTrainer + LoRA/QLoRA), `dpo` (DPOTrainer) and `export` (merge/keep).

Recipes are dataclasses read by llmie.train.config (YAML < key=value < --key value); `LMRecipe` holds the
model / peft / data fields sft and dpo share, so the two trainers cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class LMRecipe:
    """The causal-LM fields of an `llmie sft` / `llmie dpo` recipe; every field of the trainer's trl config
    (`trainer_config` of the subclass) that the recipe sets, at top level as trl writes them, lands in
    `trainer` and reaches the trl config unchanged (trl's own defaults apply to the rest)."""

    model: str = "embedded"                 # what llmie.models.resolve_llm accepts: embedded, a folder, a hub id
    dtype: str = "auto"                     # torch dtype name; auto = bfloat16 on CUDA, float32 on CPU
    trust_remote_code: bool = False         # passed to from_pretrained (tokenizer and model)
    load_in_4bit: bool = False              # QLoRA: 4-bit weights (bitsandbytes) + prepare_model_for_kbit_training
    bnb_4bit_quant_type: str = "nf4"        # nf4 | fp4
    bnb_4bit_use_double_quant: bool = True  # quantise the quantisation constants too
    bnb_4bit_compute_dtype: str = "auto"    # dtype of the 4-bit matmuls; auto as `dtype`
    use_peft: bool = True                   # train a LoRA adapter (False: full fine-tuning)
    lora_r: int = 16                        # LoRA rank
    lora_alpha: int = 16                    # LoRA scaling numerator
    lora_dropout: float = 0.05              # dropout on the LoRA input
    lora_target_modules: str | list[str] = "all-linear"  # peft target_modules
    lora_bias: str = "none"                 # peft bias: none | all | lora_only
    data: dict[str, Any] = field(default_factory=dict)      # train_file or builder (+ its keyword arguments)
    trainer: dict[str, Any] = field(default_factory=dict)   # the trl config fields the recipe set


def write_rank_hash(accelerator, model, out: str | Path) -> Path | None:
    """Under `accelerate launch` (>1 process) each rank writes `OUT/rank{N}.sha256` of its trainable weights,
    so a run can prove the ranks stayed in sync (DDP/FSDP all-reduce) before rank 0's saved weights are
    trusted. Shared by `llmie sft` and `llmie train-projector`; a no-op in a single process."""
    if accelerator.num_processes <= 1 or _sharded(accelerator):
        return None
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(accelerator.unwrap_model(model).named_parameters(), key=lambda kv: kv[0]):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"rank{accelerator.process_index}.sha256"
    path.write_text(h.hexdigest(), encoding="utf-8")
    return path


def _sharded(accelerator) -> bool:
    """FSDP and DeepSpeed ZeRO-3 shard the parameters: each rank holds a different piece, so per-rank hashes
    say nothing about sync (their all-gather is the library's job); DDP and ZeRO-1/2 keep full replicas."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    ds = getattr(accelerator.state, "deepspeed_plugin", None)
    return accelerator.distributed_type == DistributedType.DEEPSPEED and getattr(ds, "zero_stage", 0) == 3
