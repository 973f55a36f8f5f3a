"""The backend protocol: ``generate(requests) -> results``, batched, one result per request, in order.

A request carries chat messages (the backend applies the model's chat template) or a raw prompt,
sampling settings, an optional JSON schema (constrained decoding where the backend supports it), an
optional list of ``choices`` (the answer is exactly one of these strings: vllm structured outputs,
an OpenAI-compatible vLLM server's ``structured_outputs``, a token trie on hf) and an optional LoRA
adapter folder. A backend never raises for one bad request: that request gets
``GenResult(finish_reason="error", error=...)`` and the rest of the batch goes on.

Importing this module is cheap (no torch, no vLLM); the engines are imported when first used.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

FINISH_REASONS = ("stop", "length", "error")


@dataclass
class GenRequest:
    messages: list[dict[str, str]] | None = None  # chat messages (chat template applied by the backend)
    prompt: str | None = None                     # raw prompt, no template (exactly one of messages/prompt)
    max_tokens: int = 256
    temperature: float = 0.0                      # greedy by default (deterministic)
    json_schema: dict | None = None               # constrained decoding to this JSON schema
    lora: str | None = None                       # path of a peft LoRA adapter folder
    stop: list[str] | None = None
    seed: int | None = None
    logprobs: int | None = None                   # top-k logprobs of generated tokens
    choices: list[str] | None = None              # the answer must be exactly one of these strings

    # fields added after the cache format was fixed: left out of the cache key while unset, so that
    # the keys of existing cache files stay valid
    OPTIONAL_KEY_FIELDS = ("choices",)

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("GenRequest needs exactly one of messages= or prompt=")
        if self.max_tokens < 1:
            raise ValueError(f"GenRequest.max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"GenRequest.temperature must be >= 0, got {self.temperature}")
        if self.choices is not None:
            if not self.choices or not all(isinstance(c, str) and c for c in self.choices):
                raise ValueError("GenRequest.choices must be a non-empty list of non-empty strings")
            if self.json_schema is not None:
                raise ValueError("GenRequest takes json_schema= or choices=, not both")
            self.choices = list(self.choices)

    @property
    def is_chat(self) -> bool:
        return self.messages is not None


@dataclass
class GenResult:
    text: str
    finish_reason: str            # "stop" | "length" | "error"
    error: str | None = None      # message when finish_reason == "error"
    cached: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    logprobs: list[dict[str, float]] | None = None  # per generated token: {token text: logprob} (top-k)

    @property
    def ok(self) -> bool:
        return self.finish_reason != "error"


def error_result(message: str) -> GenResult:
    return GenResult(text="", finish_reason="error", error=message)


@runtime_checkable
class Backend(Protocol):
    name: str
    model_id: str                 # identity for caches/manifests (path or hub id, + hash of config.json if local)

    def generate(self, requests: list[GenRequest], progress: bool = False) -> list[GenResult]: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- identities


def _file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def model_identity(model: str) -> str:
    """``path@<sha256 of config.json>`` for a local folder, the hub id unchanged otherwise."""
    p = Path(model)
    cfg = p / "config.json"
    if p.is_dir() and cfg.is_file():
        return f"{p.resolve()}@{_file_sha(cfg)}"
    return model


_WEIGHT_DIGESTS: dict[tuple[str, int, int], str] = {}


def _weight_digest(f: Path) -> str:
    """sha256 of a weight file, remembered per (path, size, mtime): same-shape retrained weights have the same size,
    so sizes alone let a retrained adapter return the old adapter's cached answers (measured: it did)."""
    st = f.stat()
    key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _WEIGHT_DIGESTS:
        from llmie.manifest import file_sha256

        _WEIGHT_DIGESTS[key] = file_sha256(f)
    return _WEIGHT_DIGESTS[key]


def adapter_identity(path: str) -> str:
    """``path@<fingerprint>`` of a peft adapter folder: adapter_config.json content plus the names and content
    digests of its weight files, so that retraining an adapter into the same folder changes the key."""
    p = Path(path)
    h = hashlib.sha256()
    cfg = p / "adapter_config.json"
    if cfg.is_file():
        h.update(cfg.read_bytes())
    if p.is_dir():
        for f in sorted(p.iterdir()):
            if f.suffix in (".safetensors", ".bin") and f.is_file():
                h.update(f"{f.name}:{_weight_digest(f)}".encode())
    return f"{p.resolve() if p.exists() else path}@{h.hexdigest()[:16]}"


def adapter_rank(path: str) -> int | None:
    """LoRA rank ``r`` from a peft adapter_config.json, or None when unreadable."""
    try:
        return int(json.loads((Path(path) / "adapter_config.json").read_text())["r"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def parse_openai_spec(spec: str) -> tuple[str, str]:
    """``openai:<url>#<name>`` -> (api_base, served model name)."""
    body = spec[len("openai:"):]
    url, sep, name = body.rpartition("#")
    if not sep or not url or not name:
        raise ValueError(f"model spec {spec!r}: expected 'openai:<url>#<served model name>'")
    return url, name
