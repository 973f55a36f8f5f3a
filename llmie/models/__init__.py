"""Model resolution for llmie: embedded registry-shipped models built once into a cache, local
folders, GGUF files, or Hugging Face hub ids. Importing this package is cheap (no torch)."""
from llmie.models.embedded import (
    ModelSourceMissing,
    cache_dir,
    prepare_encoder,
    prepare_gguf,
    prepare_llm,
    resolve_encoder,
    resolve_llm,
)

__all__ = [
    "ModelSourceMissing",
    "cache_dir",
    "prepare_encoder",
    "prepare_gguf",
    "prepare_llm",
    "resolve_encoder",
    "resolve_llm",
]
