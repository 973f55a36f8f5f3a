"""Bodies of `llmie project|extract --engine ray` (llmie/cli.py keeps only the option parsing)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from llmie.scale.engine import run_ray
from llmie.scale.jobs import extract_job, project_job, read_docs, read_pairs


def project_ray(inp: Path, out: Path, *, method: str, model: str, batch_size: int, adapter: str | None,
                best_run: bool, elision: bool, backend: str, chunk: int, workers: int,
                address: str | None, num_gpus: float = 0.0) -> dict[str, Any]:
    """Same records and same `project()` as the local engine; shards of `chunk` pairs (keep it a multiple of
    --batch-size so both engines form the same encoder batches)."""
    records = list(read_pairs(inp))
    job = project_job(method, model, batch_size, adapter, best_run, elision, 1, backend)
    st = run_ray(job, records, out, shard_size=max(1, chunk), workers=workers, address=address, num_gpus=num_gpus)
    st["failed"] = st["n"] - st.get("ok", 0)
    return st


def extract_ray(inp: Path, out: Path, *, schema: Any, backend: str, model: str, api_base: str | None,
                template: str | None, constrained: bool, chunk: int, workers: int,
                address: str | None, num_gpus: float = 0.0) -> dict[str, Any]:
    docs = list(read_docs(inp))
    job = extract_job(schema, backend, model, api_base, template, constrained)
    return run_ray(job, docs, out, shard_size=max(1, chunk), workers=workers, address=address, num_gpus=num_gpus)
