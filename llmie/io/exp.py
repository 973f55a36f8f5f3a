"""EXP label-projection pairs (shared/data/README.md): one parallel pair per JSON line.

`tgt_spans[i]` is the gold projection of `src_spans[i]` (aligned by index, possibly reordered).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmie.io.jsonl import check_new_id, iter_json_lines, json_lines, write_jsonl
from llmie.schema import Document, LlmieDataError, ProjectionPair, Span, validation_message

_REQUIRED = ("id", "src_text", "tgt_text", "src_spans")


def parse_pair(obj: dict[str, Any], *, file: str | None = None, line: int | None = None) -> ProjectionPair:
    rid = obj.get("id")
    for k in _REQUIRED:
        if k not in obj:
            raise LlmieDataError(f"missing {k!r}", file=file, line=line, record=None if rid is None else str(rid),
                                 field=k)
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        raise LlmieDataError(f"id must be a string or an integer, got {type(rid).__name__}", file=file, line=line,
                             field="id")
    rid = str(rid)
    for k in ("src_spans", "tgt_spans"):
        v = obj.get(k)
        if (v is not None or k == "src_spans") and not (isinstance(v, list) and all(isinstance(x, dict) for x in v)):
            raise LlmieDataError("expected a list of span objects", file=file, line=line, record=rid, field=k)
    if obj.get("meta") is not None and not isinstance(obj["meta"], dict):
        raise LlmieDataError(f"expected an object, got {type(obj['meta']).__name__}", file=file, line=line,
                             record=rid, field="meta")
    meta = dict(obj.get("meta") or {})
    if "dataset" in obj:
        meta.setdefault("dataset", obj["dataset"])
    try:
        src = Document(id=rid, text=obj["src_text"], lang=obj.get("src_lang"),
                       spans=[Span(**s) for s in obj["src_spans"]])
    except (ValidationError, TypeError, ValueError) as e:
        raise LlmieDataError(validation_message(e), file=file, line=line, record=rid, field="src_spans") from None
    try:
        gold = obj.get("tgt_spans")
        return ProjectionPair(id=rid, src=src, tgt_text=obj["tgt_text"], tgt_lang=obj.get("tgt_lang"),
                              gold_tgt_spans=None if gold is None else [Span(**s) for s in gold], meta=meta)
    except (ValidationError, TypeError, ValueError) as e:
        raise LlmieDataError(validation_message(e), file=file, line=line, record=rid, field="tgt_spans") from None


def read_exp(path: str | Path, *, errors: str = "raise") -> Iterator[ProjectionPair]:
    """Stream pairs. errors='raise' stops at the first bad record; 'skip' logs and yields the rest."""
    import logging

    seen: dict[str, int] = {}
    for n, obj in iter_json_lines(path):
        try:
            pair = parse_pair(obj, file=str(path), line=n)
            check_new_id(seen, pair.id, path, n)
            yield pair
        except LlmieDataError as e:
            if errors == "raise":
                raise
            logging.getLogger("llmie").warning("skipped: %s", e)


def read_exp_records(path: str | Path) -> Iterator[ProjectionPair | LlmieDataError]:
    """Like `read_exp`, but a bad record comes back as its error (with `.record`/`.line`) and reading goes on.

    Used by commands that must give every input line an output status instead of stopping.
    """
    seen: set[str] = set()
    for n, obj in json_lines(path):
        if isinstance(obj, LlmieDataError):
            obj.record = f"line-{n}"
            yield obj
            continue
        try:
            pair = parse_pair(obj, file=str(path), line=n)
            if pair.id in seen:  # the second copy fails under its own line, so output ids stay unique
                raise LlmieDataError(f"duplicate id {pair.id!r}", file=str(path), line=n, record=f"line-{n}",
                                     field="id")
            seen.add(pair.id)
            yield pair
        except LlmieDataError as e:
            if e.record is None:
                e.record = f"line-{n}"
            e.tgt_text = obj.get("tgt_text") if isinstance(obj.get("tgt_text"), str) else ""  # type: ignore[attr-defined]
            yield e


def pair_to_dict(pair: ProjectionPair, tgt_spans: list[Span] | None = None) -> dict[str, Any]:
    spans = pair.gold_tgt_spans if tgt_spans is None else tgt_spans
    d = {"id": pair.id, "dataset": pair.meta.get("dataset"), "src_lang": pair.src.lang, "tgt_lang": pair.tgt_lang,
         "src_text": pair.src.text, "tgt_text": pair.tgt_text,
         "src_spans": [s.model_dump() for s in pair.src.spans],
         "tgt_spans": None if spans is None else [s.model_dump() for s in spans],
         "meta": {k: v for k, v in pair.meta.items() if k != "dataset"}}
    return d


def write_exp(pairs: Iterable[ProjectionPair], path: str | Path, *, append: bool = False) -> int:
    return write_jsonl((pair_to_dict(p) for p in pairs), path, append=append)


def pair_target_document(pair: ProjectionPair) -> Document:
    """The gold target side as a Document (for `llmie score` and reports)."""
    return Document(id=pair.id, text=pair.tgt_text, lang=pair.tgt_lang, spans=list(pair.gold_tgt_spans or []))
