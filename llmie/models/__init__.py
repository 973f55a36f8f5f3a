"""Model resolution for llmie: embedded registry-shipped models built once into a cache, local
folders, GGUF files, or Hugging Face hub ids. Importing this package is cheap (no torch)."""
from llmie.models.embedded import (
    IE_ADAPTER,
    ModelSourceMissing,
    adapter_prompt,
    cache_dir,
    ie_adapter,
    peft_adapter,
    prepare_encoder,
    prepare_gguf,
    prepare_llm,
    prepare_merged,
    resolve_encoder,
    resolve_llm,
)

__all__ = [
    "IE_ADAPTER",
    "ModelSourceMissing",
    "adapter_prompt",
    "cache_dir",
    "ie_adapter",
    "peft_adapter",
    "prepare_encoder",
    "prepare_gguf",
    "prepare_llm",
    "prepare_merged",
    "resolve_encoder",
    "resolve_llm",
]
