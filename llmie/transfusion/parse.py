"""Safe parser for GoLLIE/TransFusion output: `result = [Person(span="..."), ...]` read with `ast`.

Nothing is evaluated. A list element is accepted only when it is a call of a known label class with
string-literal keyword arguments (`span=` only); anything else (`__import__('os')`, attribute calls,
positional arguments, f-strings, names) is rejected and counted. A list that does not parse at all is a
parse failure; a list cut by max_tokens is closed after its last complete element (status `truncated`).
Then the hallucination filter (paper §1.4): spans whose `lower().strip()` is not a substring of the
target sentence's `lower()` are dropped and counted.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

_ASSIGN = re.compile(r"^(final_result|result)[ \t]*=[ \t]*", re.M)
ALLOWED_FIELDS = frozenset({"span"})


@dataclass
class ParsedList:
    """One annotation list: accepted (label, span) items, rejected element count, and a status."""

    status: str = "missing"              # ok | truncated | invalid | missing
    items: list[tuple[str, str]] = field(default_factory=list)
    rejected: int = 0
    error: str | None = None


@dataclass
class ParsedOutput:
    result: ParsedList                   # `result = [...]` (English annotations in the TF prompt)
    final_result: ParsedList             # `final_result = [...]` (target annotations)
    hallucinated: int = 0                # target spans dropped by the hallucination filter
    kept: list[tuple[str, str]] = field(default_factory=list)  # target spans after the filter

    @property
    def status(self) -> str:
        return self.final_result.status


def _scan_list(text: str, start: int) -> tuple[str, str]:
    """The bracketed list starting at `text[start] == '['`, string- and comment-aware.

    Returns (text, state): `closed` (balanced), `open` (text ended inside it: truncated output) or
    `mismatched` (a closer that does not match its opener: malformed)."""
    stack: list[str] = []
    i, quote = start, None
    pairs = {"]": "[", ")": "(", "}": "{"}
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if text.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
        elif ch in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else ch
            i += len(quote)
            continue
        elif ch == "#":  # comment to end of line
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
            continue
        elif ch in "[({":
            stack.append(ch)
        elif ch in "])}":
            if not stack or stack.pop() != pairs[ch]:
                return text[start:i + 1], "mismatched"
            if not stack:
                return text[start:i + 1], "closed"
        i += 1
    return text[start:], "open"


def _close_truncated(body: str) -> str | None:
    """`[A(span="x"), B(span="y` -> `[A(span="x"),]`: keep elements up to the last `),` boundary."""
    cut = body.rfind("),")
    if cut < 0:
        cut = body.rfind(")\n")
    if cut < 0:
        return "[]"
    return body[: cut + 1] + "]"


def _element(node: ast.expr, classes: dict[str, str]) -> tuple[str, str] | None:
    """(label, span) for `Known(span="...")`; None for anything else."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.func.id not in classes:
        return None
    if node.args or not node.keywords:
        return None
    values = {}
    for kw in node.keywords:
        if kw.arg not in ALLOWED_FIELDS or not isinstance(kw.value, ast.Constant) or \
                not isinstance(kw.value.value, str):
            return None
        values[kw.arg] = kw.value.value
    if "span" not in values:
        return None
    return classes[node.func.id], values["span"]


def parse_list(body: str, classes: dict[str, str]) -> ParsedList:
    """Parse `[ ... ]` text. `classes` maps class name -> label name."""
    out = ParsedList()
    body = body.strip()
    if not body.startswith("["):
        out.status, out.error = "invalid", "not a list"
        return out
    text, state = _scan_list(body, 0)
    status = "ok"
    if state == "mismatched":
        out.status, out.error = "invalid", "unbalanced brackets"
        return out
    if state == "open":
        fixed = _close_truncated(text)
        text, status = fixed or "[]", "truncated"
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        out.status, out.error = "invalid", f"{type(e).__name__}: {e}"
        return out
    if not isinstance(tree.body, ast.List):
        out.status, out.error = "invalid", f"expected a list, got {type(tree.body).__name__}"
        return out
    for el in tree.body.elts:
        item = _element(el, classes)
        if item is None:
            out.rejected += 1
        else:
            out.items.append(item)
    out.status = status
    return out


def _find(text: str, name: str) -> str | None:
    """The text after `name =` at a line start (first occurrence), or None."""
    for m in _ASSIGN.finditer(text):
        if m.group(1) == name:
            return text[m.end():]
    return None


def parse_output(completion: str, classes: dict[str, str], method: str, target_text: str) -> ParsedOutput:
    """Dispatch on the prompt kind: plain -> the `result` list is the target's; transfusion -> `final_result`
    (the English `result` is kept for analysis); w/o annotate -> the prompt ended with `final_result =`."""
    if method == "plain":
        res = parse_list(completion, classes) if completion.strip().startswith("[") else \
            ParsedList(status="invalid", error="no list after 'result ='")
        out = ParsedOutput(result=res, final_result=res)
    elif method == "transfusion-wo-annotate":
        fin = parse_list(completion, classes) if completion.strip().startswith("[") else \
            ParsedList(status="invalid", error="no list after 'final_result ='")
        out = ParsedOutput(result=ParsedList(), final_result=fin)
    else:
        full = "result =" + completion
        res_body = _find(full, "result")
        fin_body = _find(full, "final_result")
        res = parse_list(res_body, classes) if res_body is not None else ParsedList()
        fin = parse_list(fin_body, classes) if fin_body is not None else \
            ParsedList(status="invalid", error=f"no final_result list (English result list: {res.status})")
        out = ParsedOutput(result=res, final_result=fin)
    low = target_text.lower()
    for label, span in out.final_result.items:
        if not span.strip() or span.lower().strip() not in low:
            out.hallucinated += 1
            continue
        out.kept.append((label, span))
    return out
