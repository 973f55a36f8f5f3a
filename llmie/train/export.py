"""`llmie export --adapter DIR [--merge] --out DIR`: merge a LoRA adapter into a full-precision base, or
keep it as an adapter folder for vLLM LoRA serving (`llmie serve --lora NAME=DIR`, `GenRequest(lora=DIR)`).

Merging into a quantised (4-bit / 8-bit) base is refused: the merged weights would be re-quantised and the
adapter's update lost in rounding. A QLoRA adapter is merged into the *full-precision* base it was trained
from (the paper merges GoLLIE-TF into bf16 GoLLIE-7B), which is what `adapter_config.json` names.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any


class ExportError(ValueError):
    """The export cannot be done as asked (message says why and what to do)."""


def _adapter_config(adapter: Path) -> dict[str, Any]:
    from llmie.models import peft_adapter

    try:
        return json.loads((peft_adapter(adapter, "--adapter") / "adapter_config.json").read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ExportError(str(e)) from None


def quantization_of(model_path: str) -> dict[str, Any] | None:
    """The `quantization_config` of a model folder's config.json, or None (full precision)."""
    cfg = Path(model_path) / "config.json"
    if not cfg.is_file():
        return None
    q = json.loads(cfg.read_text(encoding="utf-8")).get("quantization_config")
    return q or None


def export_adapter(adapter: str | Path, out: str | Path, *, merge: bool = False, base: str | None = None,
                   dtype: str = "auto", load_in_4bit: bool = False) -> dict[str, Any]:
    """Merge (`merge=True`) or copy the adapter. `base` defaults to the adapter's base_model_name_or_path."""
    adapter, out = Path(adapter), Path(out)
    acfg = _adapter_config(adapter)
    if not merge:
        if out.resolve() != adapter.resolve():
            shutil.copytree(adapter, out, dirs_exist_ok=True)
        return {"kind": "adapter", "out": str(out), "base_model": acfg.get("base_model_name_or_path"),
                "serve": f"llmie serve --model {acfg.get('base_model_name_or_path')} --lora tf={out}"}
    if load_in_4bit:
        raise ExportError("refusing to merge into a 4-bit base: load the full-precision base (drop --load-in-4bit) "
                          "or keep the adapter (no --merge) and serve it as a LoRA adapter")
    from llmie.models import resolve_llm

    base_path = resolve_llm(base or acfg.get("base_model_name_or_path") or "embedded")
    q = quantization_of(base_path)
    if q and (q.get("load_in_4bit") or q.get("load_in_8bit") or q.get("quant_method") not in (None, "")):
        raise ExportError(f"refusing to merge into the quantised base {base_path} ({q.get('quant_method', q)}): "
                          f"give a full-precision base with --base, or keep the adapter (no --merge)")
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    td = (torch.bfloat16 if torch.cuda.is_available() else torch.float32) if dtype == "auto" else getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=td)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out))
    tok_src = adapter if (adapter / "tokenizer_config.json").exists() else Path(base_path)
    AutoTokenizer.from_pretrained(str(tok_src)).save_pretrained(str(out))
    info = {"kind": "merged", "out": str(out), "base_model": base_path, "adapter": str(adapter), "dtype": str(td)}
    (out / "llmie_export.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    return info


def slim_adapter(adapter: str | Path, out: str | Path, *, base: str = "embedded") -> dict[str, Any]:
    """A small adapter folder to ship inside the package (the IE adapter of the embedded model): adapter_config.json
    with a portable base name, the LoRA weights in bf16 (half the bytes; vLLM and peft cast them on load), and
    `llmie_ie.json`: how to prompt it (from the SFT recipe's data section: `demos` when it trained on demo rows) and
    what trained it. No tokenizer or optimizer state: the base model brings its tokenizer."""
    import torch
    from safetensors.torch import load_file, save_file

    from llmie.models.embedded import sft_prompt

    adapter, out = Path(adapter), Path(out)
    acfg = _adapter_config(adapter)
    weights = adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise ExportError(f"{adapter}: no adapter_model.safetensors")
    acfg["base_model_name_or_path"] = base
    try:
        summary = json.loads((adapter / "llmie_sft.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = {}
    data = (summary.get("recipe") or {}).get("data") or {}
    info = {"prompt": sft_prompt(summary) or {"demos": True, "template": data.get("template")},
            "trained": {k: summary.get(k) for k in ("global_steps", "train_loss", "rows", "row_kinds", "seconds",
                                                    "lora_r", "lora_alpha")},
            "data": data, "source": str(adapter)}
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.to(torch.bfloat16).contiguous() for k, v in load_file(str(weights)).items()}
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    (out / "adapter_config.json").write_text(json.dumps(acfg, indent=1), encoding="utf-8")
    (out / "llmie_ie.json").write_text(json.dumps(info, indent=1, default=str), encoding="utf-8")
    size = sum(f.stat().st_size for f in out.iterdir())
    return {"kind": "slim-adapter", "out": str(out), "bytes": size, "prompt": info["prompt"]}
