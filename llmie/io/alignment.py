"""Gold word alignments (`src ||| tgt` lines + `i-j` / `ipj` links, 1-indexed), for aligner AER."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from llmie.schema import LlmieDataError


@dataclass
class AlignedSentence:
    id: str
    src_tokens: list[str]
    tgt_tokens: list[str]
    sure: set[tuple[int, int]] = field(default_factory=set)      # 0-indexed (src, tgt)
    possible: set[tuple[int, int]] = field(default_factory=set)  # includes sure links


def read_alignment(text_path: str | Path, gold_path: str | Path) -> Iterator[AlignedSentence]:
    """Tokens are split on ASCII spaces only (U+3000 is a token in jaen)."""
    tp, gp = Path(text_path), Path(gold_path)
    from itertools import zip_longest

    from llmie.io.jsonl import text_lines

    for (n, tline), (_, gline) in zip_longest(text_lines(tp), text_lines(gp), fillvalue=(0, None)):
        if tline is None or gline is None:
            short, other = (tp, gp) if tline is None else (gp, tp)
            raise LlmieDataError(f"has fewer lines than {other}", file=str(short), line=n or None)
        for err in (tline, gline):
            if isinstance(err, LlmieDataError):
                raise err
        if " ||| " not in tline:
            raise LlmieDataError("expected 'source ||| target'", file=str(tp), line=n)
        s, t = tline.split(" ||| ", 1)
        src, tgt = [w for w in s.split(" ") if w], [w for w in t.split(" ") if w]
        sent = AlignedSentence(f"{tp.stem}-{n}", src, tgt)
        for link in gline.split():
            sure = "-" in link
            a, _, b = link.partition("-" if sure else "p")
            try:
                i, j = int(a) - 1, int(b) - 1
            except ValueError:
                raise LlmieDataError(f"bad link {link!r}", file=str(gp), line=n, field="link") from None
            if not (0 <= i < len(src) and 0 <= j < len(tgt)):
                raise LlmieDataError(f"link {link!r} outside the sentence ({len(src)}x{len(tgt)} tokens)",
                                     file=str(gp), line=n, field="link")
            sent.possible.add((i, j))
            if sure:
                sent.sure.add((i, j))
        yield sent
