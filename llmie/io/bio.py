"""BIO (IOB2) tags <-> character spans over tokens with offsets.

Sequence-labelling readers keep tokens and offsets in `Document.meta` so span-level methods (LLM
prompting, projection) and token-level metrics (seqeval) work on the same record.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from llmie.schema import Document, LlmieDataError, Span

Repair = Literal["lenient", "strict"]


def repair_iob2(tags: Sequence[str], mode: Repair = "lenient", *, where: str = "") -> tuple[list[str], int]:
    """Fix `I-X` that does not continue an `X` entity (after `O`, at the start, or after another type).

    lenient: turn it into `B-X` (the conlleval reading) and count it; strict: raise.
    """
    out, fixed, prev = [], 0, "O"
    for i, t in enumerate(tags):
        if t.startswith("I-"):
            typ = t[2:]
            if prev == "O" or prev[2:] != typ:
                if mode == "strict":
                    raise LlmieDataError(f"tag {t!r} at token {i} does not continue an entity of type {typ!r} "
                                         f"(previous tag {prev!r}); use repair='lenient' to read it as B-{typ}",
                                         file=where or None, field="tag")
                t = "B-" + typ
                fixed += 1
        elif not (t == "O" or t.startswith("B-")):
            raise LlmieDataError(f"tag {t!r} at token {i} is not IOB2 (expected O, B-X or I-X)",
                                 file=where or None, field="tag")
        out.append(t)
        prev = t
    return out, fixed


def bio_to_spans(text: str, offsets: Sequence[tuple[int, int]], tags: Sequence[str]) -> list[Span]:
    """Spans from valid IOB2 tags; a span covers text from its first token's start to its last token's end."""
    spans: list[Span] = []
    cur: list[int] | None = None  # [start, end]
    label = ""
    for (s, e), t in zip(offsets, tags):
        if t.startswith("B-") or t == "O":
            if cur is not None:
                spans.append(Span(start=cur[0], end=cur[1], label=label, text=text[cur[0]:cur[1]]))
                cur = None
            if t.startswith("B-"):
                cur, label = [s, e], t[2:]
        else:  # I-X continuing cur (tags were repaired)
            assert cur is not None
            cur[1] = e
    if cur is not None:
        spans.append(Span(start=cur[0], end=cur[1], label=label, text=text[cur[0]:cur[1]]))
    return spans


def spans_to_bio(offsets: Sequence[tuple[int, int]], spans: Sequence[Span]) -> list[str]:
    """IOB2 tags over tokens: a span tags every token it overlaps; a span overlapping an earlier one is skipped."""
    tags = ["O"] * len(offsets)
    for sp in spans:
        if sp.start is None:
            continue
        idx = [i for i, (s, e) in enumerate(offsets) if e > sp.start and s < sp.end]  # type: ignore[operator]
        if not idx or any(tags[i] != "O" for i in idx):
            continue
        for k, i in enumerate(idx):
            tags[i] = ("B-" if k == 0 else "I-") + sp.label
    return tags


def doc_tags(doc: Document) -> list[str]:
    """IOB2 tags of a document that carries token offsets in meta (from the CoNLL/IOB2/CoNLL-U readers)."""
    offs = doc.meta.get("token_offsets")
    if offs is None:
        raise LlmieDataError("document has no token offsets (meta.token_offsets); token-level metrics need "
                             "CoNLL/IOB2 gold", record=doc.id, field="meta.token_offsets")
    return spans_to_bio([tuple(o) for o in offs], doc.spans)


def locate_tokens(text: str, tokens: Sequence[str], *, where: str = "", record: str | None = None
                  ) -> list[tuple[int, int]]:
    """Character offsets of tokens found left to right in `text` (works for text without spaces)."""
    offs, pos = [], 0
    for i, tok in enumerate(tokens):
        j = text.find(tok, pos)
        if j < 0 or text[pos:j].strip():
            raise LlmieDataError(f"token {i} {tok!r} not found in the sentence text after offset {pos}",
                                 file=where or None, record=record, field="text")
        offs.append((j, j + len(tok)))
        pos = j + len(tok)
    return offs
