"""CoNLL-style token files: two-column CoNLL/IOB2 (MasakhaNER), UNER `.iob2`, CoNLL-U (UPOS).

Each reader streams one Document per sentence with `meta.tokens`, `meta.token_offsets` and the tags,
so spans and token-level gold are the same record. Offsets are code points into `Document.text`.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from llmie.io.bio import Repair, bio_to_spans, locate_tokens, repair_iob2
from llmie.schema import Document, LlmieDataError


def _blocks(path: Path) -> Iterator[tuple[int, list[tuple[int, str]]]]:
    """(first line number, [(line number, line)]) per blank-line separated block."""
    from llmie.io.jsonl import text_lines

    block: list[tuple[int, str]] = []
    for n, line in text_lines(path):
        if isinstance(line, LlmieDataError):
            raise line
        if line.strip():
            block.append((n, line))
        elif block:
            yield block[0][0], block
            block = []
    if block:
        yield block[0][0], block


def _join(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    offs, pos = [], 0
    for t in tokens:
        offs.append((pos, pos + len(t)))
        pos += len(t) + 1
    return " ".join(tokens), offs


def _doc(id_: str, text: str, offs: list[tuple[int, int]], tokens: list[str], tags: list[str],
         lang: str | None, meta: dict, *, path: Path, line: int, repair: Repair) -> Document:
    fixed_tags, fixed = repair_iob2(tags, repair, where=f"{path}:{line}")
    meta = {**meta, "tokens": tokens, "token_offsets": [list(o) for o in offs], "tags": fixed_tags}
    if fixed:
        meta["repaired_tags"] = fixed
    try:
        return Document(id=id_, text=text, lang=lang, spans=bio_to_spans(text, offs, fixed_tags), meta=meta)
    except ValueError as e:
        raise LlmieDataError(str(e), file=str(path), line=line, record=id_) from None


def read_conll(path: str | Path, *, lang: str | None = None, repair: Repair = "lenient",
               sep: str | None = None) -> Iterator[Document]:
    """Two-column `token TAG` files (MasakhaNER); `-DOCSTART-` blocks are skipped; text = tokens joined by spaces."""
    p = Path(path)
    k = 0
    for first, block in _blocks(p):
        tokens, tags, dropped = [], [], 0
        for n, line in block:
            if line.startswith("-DOCSTART-"):
                continue
            cols = line.split(sep) if sep else line.split()
            if len(cols) == 1 and line[:1].isspace() and repair == "lenient":
                dropped += 1  # a token that is only whitespace cannot be placed in the text
                continue
            if len(cols) < 2:
                raise LlmieDataError(f"expected 'token TAG', got {line!r}", file=str(p), line=n, field="token")
            tokens.append(cols[0])
            tags.append(cols[-1])
        if not tokens:
            continue
        text, offs = _join(tokens)
        yield _doc(f"{p.parent.name}-{p.stem}-{k}", text, offs, tokens, tags, lang,
                   {"dropped_tokens": dropped} if dropped else {}, path=p, line=first, repair=repair)
        k += 1


def read_iob2(path: str | Path, *, lang: str | None = None, repair: Repair = "lenient") -> Iterator[Document]:
    """UNER `.iob2`: tab-separated `idx token tag ...` with `# sent_id` / `# text` comments.

    Offsets are computed against `# text` (so text without spaces, e.g. Chinese, keeps its exact form).
    """
    p = Path(path)
    for first, block in _blocks(p):
        sent_id, text, tokens, tags = None, None, [], []
        for n, line in block:
            if line.startswith("#"):
                key, _, val = line[1:].partition("=")
                key = key.strip()
                if key == "sent_id":
                    sent_id = val.strip()
                elif key == "text":
                    text = val[1:] if val.startswith(" ") else val
                continue
            cols = line.split("\t")
            if len(cols) < 3:
                raise LlmieDataError(f"expected 'idx<TAB>token<TAB>tag', got {line!r}", file=str(p), line=n,
                                     field="tag")
            tokens.append(cols[1])
            tags.append(cols[2])
        if not tokens:
            continue
        rid = sent_id or f"{p.stem}-{first}"
        if text is None:
            text, offs = _join(tokens)
        else:
            offs = locate_tokens(text, tokens, where=f"{p}:{first}", record=rid)
        yield _doc(rid, text, offs, tokens, tags, lang, {"sent_id": sent_id}, path=p, line=first, repair=repair)


def read_conllu(path: str | Path, *, lang: str | None = None) -> Iterator[Document]:
    """CoNLL-U with UPOS: one Document per sentence; multiword tokens give their surface span to each word.

    `meta.tokens`/`meta.token_offsets`/`meta.upos` are over syntactic words (what UPOS tags),
    `meta.surface` lists multiword ranges.
    """
    p = Path(path)
    for first, block in _blocks(p):
        sent_id, text = None, None
        words, upos, mwt = [], [], {}   # mwt: first word id -> (last word id, surface form)
        order: list[tuple[str, object]] = []
        for n, line in block:
            if line.startswith("#"):
                key, _, val = line[1:].partition("=")
                if key.strip() == "sent_id":
                    sent_id = val.strip()
                elif key.strip() == "text":
                    text = val.strip()
                continue
            cols = line.split("\t")
            if len(cols) != 10:
                raise LlmieDataError(f"expected 10 tab-separated columns, got {len(cols)}", file=str(p), line=n)
            wid = cols[0]
            try:
                if "-" in wid:
                    a, b = (int(x) for x in wid.split("-"))
                    if not 1 <= a <= b:
                        raise ValueError
                    mwt[a] = (b, cols[1])
                    order.append(("mwt", (a, b, cols[1], cols[9])))
                elif "." in wid:
                    continue  # empty nodes carry no surface text
                else:
                    words.append(cols[1])
                    upos.append(cols[3])
                    order.append(("word", (int(wid), cols[1], cols[9])))
                    if int(wid) != len(words):
                        raise ValueError
            except ValueError:
                raise LlmieDataError(f"bad word id {wid!r} (expected N, N-M or N.M in order)", file=str(p), line=n,
                                     record=sent_id, field="ID") from None
        if not words:
            continue
        if any(b > len(words) for b, _ in mwt.values()):
            raise LlmieDataError("a multiword token range goes past the last word", file=str(p), line=first,
                                 record=sent_id, field="ID")
        rid = sent_id or f"{p.stem}-{first}"
        # surface tokens in order: MWT forms replace the words they cover
        surface: list[tuple[str, list[int], bool]] = []  # (form, word indices, space_after)
        covered: set[int] = set()
        for kind, val in order:
            if kind == "mwt":
                a, b, form, misc = val  # type: ignore[misc]
                surface.append((form, list(range(a - 1, b)), "SpaceAfter=No" not in misc))
                covered.update(range(a, b + 1))
            else:
                wid, form, misc = val  # type: ignore[misc]
                if wid not in covered:
                    surface.append((form, [wid - 1], "SpaceAfter=No" not in misc))
        if text is None:
            text = "".join(f + (" " if sp else "") for f, _, sp in surface).rstrip()
        soffs = locate_tokens(text, [f for f, _, _ in surface], where=f"{p}:{first}", record=rid)
        offs: list[tuple[int, int]] = [(0, 0)] * len(words)
        for (form, idx, _), o in zip(surface, soffs):
            for i in idx:
                offs[i] = o
        yield Document(id=rid, text=text, lang=lang, meta={
            "sent_id": sent_id, "tokens": words, "token_offsets": [list(o) for o in offs], "upos": upos,
            "surface": [[f, idx] for f, idx, _ in surface if len(idx) > 1]})
