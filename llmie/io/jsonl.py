"""llmie JSONL (DESIGN.md §2): one Document per line. Streaming read, appendable write."""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmie.schema import Document, LlmieDataError, validation_message


def text_lines(path: str | Path) -> Iterator[tuple[int, str | LlmieDataError]]:
    """(line number, line without its end) for each line; invalid UTF-8 comes back as an error naming the line.

    Why bytes: a text-mode read raises UnicodeDecodeError for the whole file at the first bad byte, so
    one bad record would stop the batch. A BOM at the start and CRLF/CR line ends are accepted.
    """
    p = Path(path)
    n = 0
    with open(p, "rb") as f:
        for chunk in f:
            if n == 0 and chunk.startswith(b"\xef\xbb\xbf"):
                chunk = chunk[3:]
            body = chunk.rstrip(b"\r\n")
            for raw in body.split(b"\r") if b"\r" in body else (body,):  # old Mac CR-only line ends
                n += 1
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield n, LlmieDataError(f"invalid UTF-8 (byte {raw[e.start:e.start + 1]!r} at column "
                                            f"{e.start + 1})", file=str(p), line=n)
                    continue
                yield n, line


def json_lines(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | LlmieDataError]]:
    """(line number, object or the error naming file and line) for each non-empty line; reading goes on."""
    p = Path(path)
    for n, line in text_lines(p):
        if isinstance(line, LlmieDataError):
            yield n, line
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield n, LlmieDataError(f"invalid JSON ({e.msg} at column {e.colno})", file=str(p), line=n)
            continue
        except RecursionError:
            yield n, LlmieDataError("JSON nested too deeply", file=str(p), line=n)
            continue
        if not isinstance(obj, dict):
            yield n, LlmieDataError(f"expected a JSON object, got {type(obj).__name__}", file=str(p), line=n)
            continue
        yield n, obj


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-empty line; a bad line raises an error naming file and line."""
    for n, obj in json_lines(path):
        if isinstance(obj, LlmieDataError):
            raise obj
        yield n, obj


def parse_document(obj: dict[str, Any], *, file: str | None = None, line: int | None = None) -> Document:
    rid = obj.get("id")
    if rid is None:
        raise LlmieDataError("missing 'id'", file=file, line=line, field="id")
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        raise LlmieDataError(f"id must be a string or an integer, got {type(rid).__name__}", file=file, line=line,
                             field="id")
    obj = {"spans": [], "relations": [], "events": [], "meta": {}, **obj}
    obj["id"] = str(rid)
    try:
        return Document.model_validate(obj)
    except ValidationError as e:
        raise LlmieDataError(validation_message(e), file=file, line=line, record=str(rid)) from None


def check_new_id(seen: dict[str, int], rid: str, path: str | Path, line: int) -> None:
    """Record `rid` as read on `line`; a repeated id is an error naming both lines (results are matched by id)."""
    if rid in seen:
        raise LlmieDataError(f"duplicate id (first on line {seen[rid]})", file=str(path), line=line,
                             record=rid, field="id")
    seen[rid] = line


def read_jsonl(path: str | Path) -> Iterator[Document]:
    """Stream Documents from an llmie JSONL file; a repeated id is an error (results are matched by id)."""
    seen: dict[str, int] = {}
    for n, obj in iter_json_lines(path):
        doc = parse_document(obj, file=str(path), line=n)
        check_new_id(seen, doc.id, path, n)
        yield doc


def write_jsonl(records: Iterable[Document | dict[str, Any]], path: str | Path, *, append: bool = False) -> int:
    """Write records one per line (flushed per line, so an interrupted run keeps what it finished)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    try:
        with open(p, "a" if append else "w", encoding="utf-8") as f:
            for r in records:
                d = r.model_dump(mode="json") if hasattr(r, "model_dump") else r
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
                f.flush()
                n += 1
    except OSError as e:
        if e.filename is None and e.errno is not None:  # write()/flush() errors (a full disk) name no file
            raise OSError(e.errno, e.strerror, str(p)) from e
        raise
    return n
