"""Word segmentation for projection: words carry character offsets into the original text.

Spaced scripts: each whitespace token is cut into letter/digit runs and single punctuation marks
(`Michigan'daki` -> `Michigan`, `'`, `daki`; `CRTC-Sitzungen` -> `CRTC`, `-`, `Sitzungen`), so a projected
span can stop at an apostrophe or hyphen, as gold spans do; abbreviations (`U.S.`) and numbers
(`1,000.5`) stay whole. Scripts written without spaces (Han, Kana, Thai, Lao, Khmer, Myanmar,
Tibetan) are cut into single characters. Alignment itself runs on the encoder's subword tokens of
the raw text, so this granularity only decides where projected spans may start and end; a span is
always returned as the original substring from its first to its last word.
"""
from __future__ import annotations

from dataclasses import dataclass

import regex

_NOSPACE = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}\p{Tibetan}ー"
_WORD = regex.compile(
    rf"(?:[^\W\d_{_NOSPACE}]\.){{2,}}"           # abbreviations: U.S., e.g.
    rf"|\d+(?:[.,:]\d+)*"                         # numbers with separators
    rf"|[{_NOSPACE}]"                             # one character of a script without spaces
    rf"|[^\s\p{{P}}\p{{S}}{_NOSPACE}]+"           # letters, digits and combining marks
    rf"|\S",                                      # any other single character (punctuation, symbols)
    regex.V1)


_NOSPACE_CHAR = regex.compile(rf"[{_NOSPACE}]")
_PUNCT = regex.compile(r"[\p{P}\p{S}]+")


@dataclass(frozen=True)
class Word:
    start: int
    end: int
    group: int     # index of the whitespace-delimited token it comes from
    punct: bool    # only punctuation/symbols


def segment(text: str) -> list[Word]:
    words: list[Word] = []
    group, last_end, last_nospace = -1, -1, False
    for m in _WORD.finditer(text):
        s, e = m.span()
        piece = text[s:e]
        nospace = _NOSPACE_CHAR.match(piece) is not None
        if s != last_end or nospace or last_nospace:  # a new whitespace token (each no-space char is its own)
            group += 1
        words.append(Word(s, e, group, _PUNCT.fullmatch(piece) is not None))
        last_end, last_nospace = e, nospace
    return words


def words_in_span(words: list[Word], start: int, end: int) -> list[int]:
    """Indices of words overlapping [start, end)."""
    return [i for i, w in enumerate(words) if w.end > start and w.start < end]
