"""Atomic writes and resumable prediction files: the one place every long command gets them from.

Why: a run killed at any moment (SIGKILL, OOM, a full disk) must leave either the old or the new
version of a results file, never half of one, and a rerun with the same ``--out`` must keep every
finished prediction and duplicate none. Predictions are appended one flushed line at a time
(:func:`llmie.io.write_jsonl`); a killed run can leave one torn last line, which :func:`resume_jsonl`
drops while rewriting the file atomically.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from llmie.schema import Document, LlmieDataError

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _tmp_for(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)  # mkstemp makes 0600; results files get the usual permissions
    return Path(name)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write through a temp file in the same folder, fsync, then rename over ``path``."""
    p = Path(path)
    tmp = _tmp_for(p)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as e:
        if e.filename is None and e.errno is not None:  # write()/fsync() errors (a full disk) name no file
            raise OSError(e.errno, e.strerror, str(p)) from e
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(obj: Any, path: str | Path) -> None:
    """Write JSON through a temp file and rename, so readers never see half a results file."""
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


write_json_atomic = atomic_write_json  # the name llmie.io exports


def write_jsonl_atomic(records: Iterable[Document | dict[str, Any]], path: str | Path) -> int:
    """Replace a JSONL file in one step (used when a resumed file is rewritten without its torn tail)."""
    lines = []
    for r in records:
        d = r.model_dump(mode="json") if hasattr(r, "model_dump") else r
        lines.append(json.dumps(d, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))
    return len(lines)


def atomic_savefig(fig: Any, path: str | Path, **kw: Any) -> None:
    """``fig.savefig`` through a temp file (matplotlib writes in several steps)."""
    p = Path(path)
    tmp = _tmp_for(p)
    try:
        fig.savefig(tmp, format=p.suffix.lstrip(".") or "png", **kw)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()


def resume_jsonl(path: str | Path, keep: Callable[[str], bool] | None = None) -> dict[str, Document]:
    """Finished predictions of an earlier run, by id, from an appended llmie JSONL file.

    Lines that do not parse (the torn last line of a killed run) and repeated ids (kept: the first)
    are dropped; ``keep(id)`` can drop records that are no longer wanted. When anything was dropped the
    file is rewritten atomically, so appending afterwards cannot glue a new record to a torn line.
    """
    from llmie.io.jsonl import json_lines, parse_document

    p = Path(path)
    if not p.exists():
        return {}
    done: dict[str, Document] = {}
    dropped = 0
    for n, obj in json_lines(p):
        if isinstance(obj, LlmieDataError):
            dropped += 1
            continue
        try:
            d = parse_document(obj, file=str(p), line=n)
        except LlmieDataError:
            dropped += 1
            continue
        if d.id in done or (keep is not None and not keep(d.id)):
            dropped += 1
            continue
        done[d.id] = d
    raw = p.read_bytes()
    if dropped or (raw and not raw.endswith(b"\n")):
        write_jsonl_atomic(done.values(), p)
    return done
