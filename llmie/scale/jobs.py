"""One unit of work per command (project, extract, synth), shared by `--engine local` and `--engine ray` (DESIGN.md §7).

A *job* is a plain dict (picklable, JSON-able: it travels to Ray actors) that says which model to load and
how to call the existing method code; `make_runner(job)` loads the model once and returns a function
records -> Documents. The local engine calls that function chunk by chunk in this process, a Ray actor
calls the very same function on its shards, so both engines run one code path and differ only in where.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmie.schema import Document, LlmieDataError, ProjectionPair

Record = Any  # ProjectionPair | Document | BadRecord


@dataclass
class BadRecord:
    """An input line that could not be read: it still gets a `failed` output record (nothing is dropped)."""

    record: str
    message: str
    tgt_text: str = ""

    def __str__(self) -> str:
        return self.message


def bad_record(e: LlmieDataError) -> BadRecord:
    return BadRecord(str(e.record), str(e), getattr(e, "tgt_text", "") or "")


def bad_document(r: BadRecord) -> Document:
    """The output of an unreadable input line: its id (`line-N`), status failed, the reason naming the field."""
    return Document(id=r.record, text=r.tgt_text, meta={"status": "failed", "reason": f"bad input: {r}"})


def record_id(r: Record) -> str:
    return r.record if isinstance(r, BadRecord) else r.id


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


# ---- inputs: llmie JSONL, EXP JSONL, .txt, Parquet, a Hugging Face `datasets` folder ----

def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a Parquet file / folder of Parquet files, or a `datasets.save_to_disk` folder."""
    if path.is_dir() and any((path / f).exists() for f in ("dataset_info.json", "dataset_dict.json")):
        import datasets

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else next(iter(ds.values()))
        yield from enumerate(ds)
        return
    import pyarrow.parquet as pq

    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"{path}: no .parquet files and not a Hugging Face datasets folder")
    n = 0
    for f in files:
        for batch in pq.ParquetFile(f).iter_batches():
            for row in batch.to_pylist():
                n += 1
                yield n, row


def _tabular(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() == ".parquet"


def read_pairs(path: str | Path) -> Iterator[ProjectionPair | BadRecord]:
    """Projection inputs (EXP pairs) in file order; a bad record becomes a BadRecord and reading goes on."""
    from llmie.io.exp import parse_pair, read_exp_records

    p = Path(path)
    if not _tabular(p):
        for r in read_exp_records(p):
            yield bad_record(r) if isinstance(r, LlmieDataError) else r
        return
    seen: set[str] = set()
    for n, row in _rows(p):
        row = {k: v for k, v in row.items() if v is not None}  # Parquet fills absent optional columns with null
        try:
            pair = parse_pair(row, file=str(p), line=n)
            if pair.id in seen:
                raise LlmieDataError(f"duplicate id {pair.id!r}", file=str(p), line=n, field="id")
            seen.add(pair.id)
            yield pair
        except LlmieDataError as e:
            yield BadRecord(f"line-{n}", str(e), row.get("tgt_text") if isinstance(row.get("tgt_text"), str) else "")


def read_docs(path: str | Path) -> Iterator[Document]:
    """Extraction inputs: llmie JSONL / EXP JSONL / .iob2 / CoNLL (llmie.io), .txt, Parquet or a datasets folder."""
    from llmie.io import read_documents
    from llmie.io.jsonl import parse_document

    p = Path(path)
    if p.suffix == ".txt":
        for i, t in enumerate(p.read_text(encoding="utf-8-sig").splitlines()):
            yield Document(id=str(i), text=t)
    elif _tabular(p):
        for n, row in _rows(p):
            row = {k: v for k, v in row.items() if v is not None}
            if isinstance(row.get("meta"), str):
                row["meta"] = json.loads(row["meta"]) if row["meta"] else {}
            row.setdefault("id", str(n - 1))
            row["id"] = str(row["id"])
            yield parse_document(row, file=str(p), line=n)
    else:
        yield from read_documents(p)


# ---- runners: load the model once, then records -> Documents with the existing method code ----

def project_job(method: str = "awesome", model: str = "embedded", batch_size: int = 32, adapter: str | None = None,
                best_run: bool = True, elision: bool = False, threads: int = 1, backend: str = "hf") -> dict[str, Any]:
    """`backend` is for `method=llm` only (the LLM projector's generation backend), as in `llmie project`."""
    return {"kind": "project", "method": method, "model": model, "batch_size": batch_size, "adapter": adapter,
            "best_run": best_run, "elision": elision, "threads": threads, "backend": backend}


def extract_job(schema: Any, backend: str = "vllm", model: str = "embedded", api_base: str | None = None,
                template: str | None = None, constrained: bool = True, cache: bool | str = True) -> dict[str, Any]:
    return {"kind": "extract", "schema": schema.model_dump(mode="json"), "backend": backend, "model": model,
            "api_base": api_base, "template": template, "constrained": constrained, "cache": cache}


def synth_job(translator: str = "auto", proposer: str = "binary", *, verify: bool = True,
              dataset: str = "synthetic", mt_cache: str | None = None, threads: int = 1) -> dict[str, Any]:
    """PVP synthesis (llmie.projection.synth): records are seed Documents, outputs the per-seed target side.
    `mt_cache`: sqlite path for translations, `none` for no cache, None for the default cache file."""
    return {"kind": "synth", "translator": translator, "proposer": proposer, "verify": verify, "dataset": dataset,
            "mt_cache": mt_cache, "threads": threads}


class Runner:
    """records -> Documents for one job; the model is loaded in __init__ (once per process / Ray actor)."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.close: Callable[[], None] = lambda: None
        if job["kind"] == "project":
            import torch

            from llmie.projection.project import get_aligner, project

            torch.set_num_threads(max(1, int(job.get("threads", 1))))
            kw: dict[str, Any] = {"adapter": job["adapter"]} if job.get("adapter") and job["method"] in (
                "binary", "binary-w", "pvp", "llm") else {}
            if job["method"] == "llm":  # same keyword rule as llmie.cli._projector
                kw["backend"] = job.get("backend", "hf")
            get_aligner(job["method"], job["model"], **kw)  # load now: fail before any record, time the work only
            self._fn = lambda pairs: list(project(pairs, job["method"], job["model"], batch_size=job["batch_size"],
                                                  best_run=job["best_run"], elision=job["elision"], **kw))
        elif job["kind"] == "extract":
            from llmie.backends import get_backend
            from llmie.massie import extract
            from llmie.schema import Schema

            schema = Schema.model_validate(job["schema"])
            kw = {"api_base": job["api_base"]} if job.get("api_base") else {}
            be = get_backend(job["backend"], job["model"], cache=job.get("cache", True), **kw)
            self.close = be.close
            self._fn = lambda docs: extract(docs, schema, backend=be, template=job["template"],
                                            constrained=job["constrained"])
        elif job["kind"] == "synth":
            import torch

            from llmie.mt import get_translator
            from llmie.projection.project import get_aligner
            from llmie.projection.synth import synth_batch

            torch.set_num_threads(max(1, int(job.get("threads", 1))))
            cache = job.get("mt_cache")
            off = isinstance(cache, str) and cache.lower() == "none"
            tr = get_translator(job["translator"], cache=not off, cache_path=None if off else cache)
            aligner = get_aligner(job["proposer"], "embedded")
            self.close = getattr(tr, "close", lambda: None)
            self._fn = lambda seeds: synth_batch(seeds, tr, aligner, verify=job["verify"], dataset=job["dataset"])
        else:
            raise ValueError(f"unknown job kind {job['kind']!r}")

    def __call__(self, records: list[Record]) -> list[Document]:
        """Outputs in input order, one per record; unreadable records get their failed record in place."""
        good = [r for r in records if not isinstance(r, BadRecord)]
        done = iter(self._fn(good) if good else [])
        return [bad_document(r) if isinstance(r, BadRecord) else next(done) for r in records]


def chunks(items: list, size: int) -> Iterable[list]:
    for b in range(0, len(items), size):
        yield items[b:b + size]
