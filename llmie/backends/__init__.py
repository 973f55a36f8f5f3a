"""Generation backends behind one protocol (DESIGN.md §4): ``generate(requests) -> results``.

- ``vllm``: offline ``vllm.LLM`` (structured outputs, prefix caching, LoRA); CPU or GPU.
- ``openai``: any OpenAI-compatible server (``llmie.backends.serve.start_server`` starts a vLLM one).
- ``hf``: transformers ``generate`` plus forward-pass log-probabilities (``choices`` through a token
  trie, ``llmie.backends.constraints``; no JSON-schema decoding).
- ``CachedBackend``: persistent sqlite response cache around any of them (``get_backend`` adds it).

Importing this package is cheap: engines are imported when a backend is built.

    from llmie.backends import GenRequest, get_backend
    be = get_backend("vllm", "embedded")
    [res] = be.generate([GenRequest(messages=[{"role": "user", "content": "Hi"}], max_tokens=16)])
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmie.backends.base import Backend, GenRequest, GenResult, model_identity, parse_openai_spec
from llmie.backends.factory import BACKENDS, get_backend

if TYPE_CHECKING:
    from llmie.backends.cache import CachedBackend
    from llmie.backends.hf import HFBackend
    from llmie.backends.openai import OpenAIBackend
    from llmie.backends.serve import ServerHandle, serve_forever, start_server
    from llmie.backends.vllm import VLLMBackend

_LAZY = {
    "CachedBackend": "llmie.backends.cache",
    "HFBackend": "llmie.backends.hf",
    "OpenAIBackend": "llmie.backends.openai",
    "VLLMBackend": "llmie.backends.vllm",
    "ServerHandle": "llmie.backends.serve",
    "start_server": "llmie.backends.serve",
    "serve_forever": "llmie.backends.serve",
}

__all__ = ["BACKENDS", "Backend", "CachedBackend", "GenRequest", "GenResult", "HFBackend", "OpenAIBackend", "ServerHandle",
           "VLLMBackend", "get_backend", "model_identity", "parse_openai_spec", "serve_forever", "start_server"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'llmie.backends' has no attribute {name!r}")
