"""Benchmarks behind `llmie eval --bench NAME`, one contract each: ``run(cfg: EvalConfig) -> results``.

Each bench is a :class:`Bench` (its ``run``, its ``markdown`` summary, the path of its primary metric in
the results) registered by name in :data:`BENCHES`. The CLI only parses options into an EvalConfig,
looks the bench up and prints ``markdown(results)``; adding a bench is one module and one line here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmie.registry import Registry


@dataclass
class EvalConfig:
    """Options of one `llmie eval` run; each bench reads the ones it documents (``method=None``: its default)."""

    bench: str
    method: str | None = None
    data: Path | None = None          # default: $LLMIE_DATA_DIR (+ the bench's folder)
    out: Path | None = None           # results.json, results.md, predictions
    model: str = "embedded"
    limit: int | None = None          # at most N records per file
    pairs: list[str] | None = None    # exp/align: language pairs
    files: str | None = None          # exp: glob under data
    adversarial: bool = False         # exp
    batch_size: int = 32
    langs: list[str] | None = None    # masakhaner/udpos languages
    split: str = "test"
    backend: str | None = None        # LLM backend (default: vllm for NER benches, hf for exp --method llm)
    api_base: str | None = None
    adapter: str | None = None        # binary/pvp trained folder, or a LoRA adapter for LLM methods
    translator: str = "auto"          # transfusion
    translations: Path | None = None  # transfusion: pre-translated JSONL
    max_tokens: int = 256
    device: str = "auto"              # encoders: auto (CUDA when present) | cpu | cuda | cuda:N (llmie.device)
    best_run: bool = True
    elision: bool = False
    keep_unaligned: bool = False      # masakhaner/uner massie: keep spans not grounded in the text
    progress: Callable[[str, int], None] | None = None


@dataclass(frozen=True)
class Bench:
    run: Callable[[EvalConfig], dict[str, Any]]
    markdown: Callable[[dict[str, Any]], str]
    primary: str                      # dotted path of the headline number in the results, e.g. "average.em"
    methods: tuple[str, ...] = ()
    default_method: str = ""


def primary_value(bench: Bench, results: dict[str, Any]) -> Any:
    """The bench's headline number in ``results`` (None when that run did not produce it)."""
    v: Any = results
    for k in bench.primary.split("."):
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v


BENCHES = Registry("bench", {
    "exp": "llmie.bench.runners:EXP",
    "align": "llmie.bench.runners:ALIGN",
    "masakhaner": "llmie.bench.runners:MASAKHANER",
    "uner": "llmie.bench.runners:UNER",
    "udpos": "llmie.bench.runners:UDPOS",
})
