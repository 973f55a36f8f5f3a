"""Parse model answers into label-routed items, safely: JSON first, then a lenient repair; nothing is executed.

Repairs: code fences, text before/after the first JSON object, single-quoted Python-style dicts (via
`ast.literal_eval`, which only builds literals), and answers cut by `max_tokens` (closed after their
last complete value; status `truncated`, counted). A wrong structure (e.g. a set inside a list, the
paper's Fig. 2 "invalid structure") is `invalid` and scores 0. Labels outside the batch are dropped and counted.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
MAX_CHARS = 200_000


@dataclass
class Parsed:
    status: str                        # ok | repaired | truncated | invalid
    items: list[tuple[Any, tuple[str, ...]]] = field(default_factory=list)
    dropped_labels: int = 0
    error: str | None = None


def _load(raw: str) -> tuple[Any, str]:
    raw = raw.strip()
    try:
        return json.loads(raw), "ok"
    except (json.JSONDecodeError, RecursionError):
        pass
    m = _FENCE.search(raw)
    cand = m.group(1).strip() if m else raw
    start = cand.find("{")
    if start < 0:
        raise ValueError("no JSON object in the answer")
    try:
        obj, _ = json.JSONDecoder().raw_decode(cand[start:])
        return obj, "repaired"
    except (json.JSONDecodeError, RecursionError):
        pass
    end = cand.rfind("}")
    snippet = cand[start:end + 1] if end > start else cand[start:]
    try:
        return ast.literal_eval(snippet), "repaired"  # literals only: no names, calls or attributes
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError) as e:
        closed = close_truncated(cand[start:])
        if closed is not None:
            try:
                return json.loads(closed), "truncated"
            except (json.JSONDecodeError, RecursionError):
                pass
        raise ValueError(f"not JSON: {type(e).__name__}") from None


def close_truncated(s: str) -> str | None:
    """A JSON prefix cut mid-way, closed after its last complete value (None if nothing is complete)."""
    stack: list[str] = []
    safe: tuple[int, list[str]] | None = None
    in_str = esc = False
    for i, ch in enumerate(s):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
                if stack and stack[-1] == "[":
                    safe = (i + 1, list(stack))
            continue
        if ch == '"':
            in_str = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}":
            if not stack:
                return None
            stack.pop()
            safe = (i + 1, list(stack))
            if not stack:
                return s[: i + 1]
    if safe is None:
        return None
    pos, st = safe
    return s[:pos] + "".join("]" if c == "[" else "}" for c in reversed(st))


def _strs(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def parse_answer(raw: str | None, task: str, labels: list[str]) -> Parsed:
    if raw is None or not raw.strip():
        return Parsed("invalid", error="empty answer")
    if len(raw) > MAX_CHARS:
        return Parsed("invalid", error=f"answer longer than {MAX_CHARS} characters")
    try:
        obj, status = _load(raw)
    except ValueError as e:
        return Parsed("invalid", error=str(e))
    if not isinstance(obj, dict):
        return Parsed("invalid", error=f"expected a JSON object, got {type(obj).__name__}")
    allowed = set(labels)
    items: list[tuple[Any, tuple[str, ...]]] = []
    dropped = 0
    for label, val in obj.items():
        if label not in allowed:
            dropped += 1
            continue
        if task in ("ner", "sf", "ed"):
            if not _strs(val):
                return Parsed("invalid", error=f"value of {label!r} is not a list of strings")
            items.extend((label, (s,)) for s in val)
        elif task == "re":
            if not isinstance(val, list) or not all(isinstance(x, dict) and isinstance(x.get("head"), str)
                                                    and isinstance(x.get("tail"), str) for x in val):
                return Parsed("invalid", error=f"value of {label!r} is not a list of {{head, tail}}")
            items.extend((label, (x["head"], x["tail"])) for x in val)
        elif task == "ee":
            if not isinstance(val, list):
                return Parsed("invalid", error=f"value of {label!r} is not a list")
            for ev in val:
                if not isinstance(ev, dict) or not isinstance(ev.get("trigger"), str):
                    return Parsed("invalid", error=f"event of {label!r} has no trigger string")
                items.append((("trigger", label), (ev["trigger"],)))
                for a in ev.get("arguments") or []:
                    if not isinstance(a, dict) or not isinstance(a.get("role"), str) \
                            or not isinstance(a.get("argument"), str):
                        return Parsed("invalid", error=f"bad argument in event {label!r}")
                    items.append((("arg", label, a["role"]), (a["argument"],)))
        else:
            raise ValueError(f"unknown task {task!r}")
    return Parsed(status, items, dropped)
