"""One unit of work per command (project, extract, synth), shared by `--engine local` and `--engine ray` (DESIGN.md §7).

A *job* is a plain dict (picklable, JSON-able: it travels to Ray actors) that says which model to load and
how to call the existing method code; `Runner(job)` loads the model once (the job kind's loader in
`RUNNERS`) and maps records -> Documents. The local engine calls that function chunk by chunk in this process, a Ray actor
calls the very same function on its shards, so both engines run one code path and differ only in where.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from llmie.io.records import BadRecord, Record, bad_document
from llmie.registry import Registry
from llmie.schema import Document, ProjectionPair

# ---- transport: records to/from JSON (Ray rows; pydantic objects never cross process boundaries) ----

def encode(r: Record) -> str:
    if isinstance(r, BadRecord):
        return json.dumps({"bad": [r.record, r.message, r.tgt_text]}, ensure_ascii=False)
    kind = "pair" if isinstance(r, ProjectionPair) else "doc"
    return json.dumps({kind: r.model_dump(mode="json")}, ensure_ascii=False)


def decode(s: str) -> Record:
    obj = json.loads(s)
    if "bad" in obj:
        return BadRecord(*obj["bad"])
    if "pair" in obj:
        return ProjectionPair.model_validate(obj["pair"])
    return Document.model_validate(obj["doc"])


# ---- runners: load the model once, then records -> Documents with the existing method code ----

def project_job(method: str = "awesome", model: str = "embedded", batch_size: int = 32, adapter: str | None = None,
                best_run: bool = True, elision: bool = False, threads: int = 1, backend: str = "hf", device: str | None = None) -> dict[str, Any]:
    """`backend` is for `method=llm` only (the LLM projector's generation backend), as in `llmie project`;
    `device` for the encoder methods (None/"auto": CUDA when the worker has it, llmie.device)."""
    return {"kind": "project", "method": method, "model": model, "batch_size": batch_size, "adapter": adapter,
            "best_run": best_run, "elision": elision, "threads": threads, "backend": backend, "device": device}


def extract_job(schema: Any, backend: str = "vllm", model: str = "embedded", api_base: str | None = None,
                template: str | None = None, constrained: bool = True, cache: bool | str = True,
                keep_unaligned: bool = False, adapter: str | None = None) -> dict[str, Any]:
    """`adapter`: a LoRA folder (None: the model's default, the shipped IE adapter for `embedded`)."""
    return {"kind": "extract", "schema": schema.model_dump(mode="json"), "backend": backend, "model": model,
            "api_base": api_base, "template": template, "constrained": constrained, "cache": cache,
            "keep_unaligned": keep_unaligned, "adapter": adapter}


def synth_job(translator: str = "auto", proposer: str = "binary", *, verify: bool = True,
              dataset: str = "synthetic", mt_cache: str | None = None, threads: int = 1) -> dict[str, Any]:
    """PVP synthesis (llmie.projection.synth): records are seed Documents, outputs the per-seed target side.
    `mt_cache`: sqlite path for translations, `none` for no cache, None for the default cache file."""
    return {"kind": "synth", "translator": translator, "proposer": proposer, "verify": verify, "dataset": dataset,
            "mt_cache": mt_cache, "threads": threads}


# job kind -> loader(job) -> (records -> Documents, close); a new corpus command adds a job maker and a line here
# (the loaders live with their methods, so the engine imports no method package)
RUNNERS = Registry("job kind", {"project": "llmie.projection.project:job_runner",
                                "extract": "llmie.massie.extract:job_runner",
                                "synth": "llmie.projection.synth:job_runner"})


class Runner:
    """records -> Documents for one job; the model is loaded in __init__ (once per process / Ray actor)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self._fn, self.close = RUNNERS.load(job["kind"])(job)

    def __call__(self, records: list[Record]) -> list[Document]:
        """Outputs in input order, one per record; unreadable records get their failed record in place."""
        good = [r for r in records if not isinstance(r, BadRecord)]
        done = iter(self._fn(good) if good else [])
        return [bad_document(r) if isinstance(r, BadRecord) else next(done) for r in records]


def chunks(items: list, size: int) -> Iterable[list]:
    for b in range(0, len(items), size):
        yield items[b:b + size]
