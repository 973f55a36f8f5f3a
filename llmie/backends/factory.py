"""``get_backend(name, model)``: the one place that builds a backend (llmie.backends.base holds only the
protocol and request/result types, so implementations import it and it imports none of them)."""
from __future__ import annotations

from pathlib import Path

from llmie.backends.base import Backend, parse_openai_spec
from llmie.registry import Registry

# name -> implementation; vllm and hf take a local model folder, openai a served model name + api_base
BACKENDS = Registry("backend", {
    "vllm": "llmie.backends.vllm:VLLMBackend",
    "openai": "llmie.backends.openai:OpenAIBackend",
    "hf": "llmie.backends.hf:HFBackend",
})


def get_backend(name: str = "vllm", model: str = "embedded", *, cache: str | Path | None | bool = True,
                **kw) -> Backend:
    """Build a backend.

    - ``name``: ``vllm`` (offline engine), ``hf`` (transformers) or ``openai`` (any OpenAI-compatible
      server; give ``api_base=`` and ``model=`` as the served model name).
    - ``model``: for vllm/hf anything :func:`llmie.models.resolve_llm` accepts (``embedded``, a local
      folder, a ``.gguf`` file, a hub id); ``openai:<url>#<name>`` selects the openai backend whatever
      ``name`` says.
    - ``cache``: True/None -> persistent response cache at the default path, a path -> that file,
      False -> no cache.
    - other keyword arguments go to the backend's constructor.
    """
    if model.startswith("openai:"):
        api_base, model = parse_openai_spec(model)
        kw.setdefault("api_base", api_base)
        name = "openai"
    name = name.lower()
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of: {', '.join(BACKENDS)}")
    if name == "openai":
        if "api_base" not in kw:
            raise ValueError("the openai backend needs api_base= (or a model spec 'openai:<url>#<name>')")
        backend: Backend = BACKENDS.create(name, model=model, **kw)
    else:  # engines in this process load a local model folder
        from llmie.models import resolve_llm

        if kw.get("api_base"):
            raise ValueError(f"api_base= is for the openai backend, not {name!r} (use --backend openai)")
        backend = BACKENDS.create(name, resolve_llm(model), **kw)
    if cache is False:
        return backend
    from llmie.backends.cache import CachedBackend

    return CachedBackend(backend, path=None if cache is True or cache is None else cache)
