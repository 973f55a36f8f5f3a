"""The one reader of corpus commands (project, extract, synth; local and Ray engines).

Inputs: llmie JSONL, EXP JSONL, .iob2/.conllu/CoNLL, .txt (one text per line), a Parquet file or
folder of Parquet files, a Hugging Face ``datasets.save_to_disk`` folder. One bad-input policy: a line
that cannot be read (bad JSON, bad field, duplicate id) comes back as a :class:`BadRecord` in its place
and reading goes on, so every input line gets an output record (status ``failed`` + the reason naming
file, line and field) and the run is not lost to one line.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
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
    return BadRecord(str(e.record if e.record is not None else f"line-{e.line}"), str(e),
                     getattr(e, "tgt_text", "") or "")


def bad_document(r: BadRecord) -> Document:
    """The output of an unreadable input line: its id (`line-N`), status failed, the reason naming the field."""
    return Document(id=r.record, text=r.tgt_text, meta={"status": "failed", "reason": f"bad input: {r}"})


def record_id(r: Record) -> str:
    return r.record if isinstance(r, BadRecord) else r.id


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based row number, row) of a Parquet file / folder of Parquet files, or a `datasets` folder."""
    if path.is_dir() and any((path / f).exists() for f in ("dataset_info.json", "dataset_dict.json")):
        import datasets

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else next(iter(ds.values()))
        for n, row in enumerate(ds, 1):
            yield n, row
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


def is_tabular(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() == ".parquet"


def read_pairs(path: str | Path) -> Iterator[ProjectionPair | BadRecord]:
    """Projection inputs (EXP pairs) in file order; a bad record becomes a BadRecord and reading goes on."""
    from llmie.io.exp import parse_pair, read_exp_records

    p = Path(path)
    if not is_tabular(p):
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


def _doc_rows(p: Path) -> Iterator[tuple[int, dict[str, Any] | LlmieDataError]]:
    if is_tabular(p):
        for n, row in _rows(p):
            row = {k: v for k, v in row.items() if v is not None}
            if isinstance(row.get("meta"), str):
                try:
                    row["meta"] = json.loads(row["meta"]) if row["meta"] else {}
                except json.JSONDecodeError as e:
                    yield n, LlmieDataError(f"meta is not JSON ({e.msg})", file=str(p), line=n, field="meta")
                    continue
            row.setdefault("id", str(n - 1))
            yield n, row
    else:
        from llmie.io.jsonl import json_lines

        yield from json_lines(p)


def read_docs(path: str | Path) -> Iterator[Document | BadRecord]:
    """Extraction inputs in file order. llmie JSONL, Parquet and `datasets` folders follow the bad-input
    policy (a BadRecord per unreadable row, a repeated id included); EXP JSONL gives its target sides;
    .txt gives one document per line (ids 0, 1, ...); .iob2/.conllu/CoNLL go through llmie.io's readers."""
    from llmie.io import is_exp_file, read_documents
    from llmie.io.exp import pair_target_document, read_exp_records
    from llmie.io.jsonl import parse_document

    p = Path(path)
    if p.suffix == ".txt":
        for i, t in enumerate(p.read_text(encoding="utf-8-sig").splitlines()):
            yield Document(id=str(i), text=t)
        return
    if not is_tabular(p) and p.suffix.lower() in (".jsonl", ".json") and is_exp_file(p):
        for r in read_exp_records(p):
            yield bad_record(r) if isinstance(r, LlmieDataError) else pair_target_document(r)
        return
    if not is_tabular(p) and p.suffix.lower() not in (".jsonl", ".json"):
        yield from read_documents(p)
        return
    seen: dict[str, int] = {}
    for n, row in _doc_rows(p):
        if isinstance(row, LlmieDataError):
            yield BadRecord(f"line-{n}", str(row))
            continue
        text = row.get("text") if isinstance(row.get("text"), str) else ""
        try:
            doc = parse_document(row, file=str(p), line=n)
        except LlmieDataError as e:  # named by its id when it has a new one, else by its line
            rid = e.record if e.record is not None and e.record not in seen else f"line-{n}"
            seen.setdefault(rid, n)
            yield BadRecord(str(rid), str(e), text)
            continue
        if doc.id in seen:  # the second copy fails under its own line, so output ids stay unique
            yield BadRecord(f"line-{n}", str(LlmieDataError(f"duplicate id {doc.id!r} (first on line "
                                                            f"{seen[doc.id]})", file=str(p), line=n,
                                                            field="id")), text)
            continue
        seen[doc.id] = n
        yield doc
