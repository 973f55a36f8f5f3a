"""Training runners over trl/peft: `sft` (SFTTrainer + LoRA/QLoRA, recipe YAML) and `export` (merge/keep)."""
from __future__ import annotations

from pathlib import Path


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
