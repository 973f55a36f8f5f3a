"""Grounding: map predicted span strings to character offsets in the input text, with a status.

Order: exact (leftmost occurrence not used yet) -> normalised (NFKD + casefold + whitespace runs
collapsed, so tone marks in another normal form, case and spacing differences still match; then the
same without combining marks, for outputs that drop Yoruba tone marks or accents) ->
fuzzy (rapidfuzz `partial_ratio_alignment` on the normalised strings, score >= threshold) ->
`unaligned` (null offsets, counted). Works on text without spaces.

What happens to an unaligned span is decided in one place, `admit()`: a string the model did not take from
the text is not an answer, so it is dropped by default (counted, the string kept in `meta.dropped_unaligned`);
`keep_unaligned=True` keeps it with null offsets. MASSIE extraction and TransFusion both call it.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz

from llmie.schema import Span


@dataclass(frozen=True)
class Grounded:
    span: Span
    status: str  # exact | normalised | fuzzy | unaligned


def _normalise(text: str, strip_marks: bool = False) -> tuple[str, list[int]]:
    """Normalised text and, for each of its characters, the index of the original character."""
    out: list[str] = []
    idx: list[int] = []
    prev_space = False
    for i, ch in enumerate(text):
        if ch.isspace():
            if not prev_space:
                out.append(" ")
                idx.append(i)
            prev_space = True
            continue
        prev_space = False
        for c in unicodedata.normalize("NFKD", ch).casefold():
            if strip_marks and unicodedata.combining(c):
                continue
            out.append(c)
            idx.append(i)
    return "".join(out), idx


def _occurrences(hay: str, needle: str):
    i = hay.find(needle)
    while i >= 0 and needle:
        yield i
        i = hay.find(needle, i + 1)


class Grounder:
    """Grounds many predictions against one text; remembers used occurrences (leftmost unused wins)."""

    def __init__(self, text: str, fuzzy_threshold: float = 85.0, reuse: bool = False):
        self.text = text
        self.reuse = reuse  # relation/event arguments may name the same mention several times
        self.threshold = fuzzy_threshold
        self._norm, self._map = _normalise(text)
        self._bare, self._bare_map = _normalise(text, strip_marks=True)
        self._used: set[tuple[int, int]] = set()

    def _take(self, s: int, e: int) -> bool:
        if (s, e) in self._used and not self.reuse:
            return False
        self._used.add((s, e))
        return True

    def ground(self, label: str, value: str) -> Grounded:
        value = value if isinstance(value, str) else str(value)
        stripped = value.strip()
        if stripped:
            for s in _occurrences(self.text, stripped):
                if self._take(s, s + len(stripped)):
                    return Grounded(Span(start=s, end=s + len(stripped), label=label, text=stripped), "exact")
            for hay, mp, strip in ((self._norm, self._map, False), (self._bare, self._bare_map, True)):
                nv = _normalise(stripped, strip_marks=strip)[0].strip()
                for s in _occurrences(hay, nv):
                    a, b = self._orig(s, s + len(nv), mp)
                    if self._take(a, b):
                        return Grounded(Span(start=a, end=b, label=label, text=self.text[a:b]), "normalised")
            nv = _normalise(stripped)[0].strip()
            if len(nv) >= 2 and self._norm:
                al = fuzz.partial_ratio_alignment(nv, self._norm)
                if al is not None and al.score >= self.threshold and al.dest_end > al.dest_start:
                    a, b = self._snap(*self._orig(al.dest_start, al.dest_end, self._map))
                    if b > a and self._take(a, b):
                        return Grounded(Span(start=a, end=b, label=label, text=self.text[a:b]), "fuzzy")
        return Grounded(Span(label=label, text=value), "unaligned")

    def _orig(self, s: int, e: int, mp: list[int]) -> tuple[int, int]:
        """Original [start, end) covering normalised [s, e), extended over trailing combining marks."""
        a, b = mp[s], mp[e - 1] + 1
        while b < len(self.text) and unicodedata.combining(self.text[b]):
            b += 1
        return a, b

    def _snap(self, a: int, b: int) -> tuple[int, int]:
        """Fuzzy matches: trim whitespace, then widen a cut inside a spaced-script word to the word's edges."""
        t = self.text
        while a < b and t[a].isspace():
            a += 1
        while b > a and t[b - 1].isspace():
            b -= 1
        if b <= a:
            return a, b
        while a > 0 and _wordish(t[a - 1]) and _wordish(t[a]):
            a -= 1
        while b < len(t) and _wordish(t[b - 1]) and _wordish(t[b]):
            b += 1
        return a, b


def _wordish(ch: str) -> bool:
    """Letters of scripts written with spaces (no snapping inside Han/Kana/Thai text)."""
    if not (ch.isalnum() or unicodedata.combining(ch)):
        return False
    name = unicodedata.name(ch, "")
    return not any(k in name for k in ("CJK", "HIRAGANA", "KATAKANA", "THAI", "LAO", "KHMER", "MYANMAR"))


def admit(g: Grounded, keep_unaligned: bool, dropped: list[dict[str, str]]) -> bool:
    """The one unaligned rule: True when `g` goes into the predictions; a dropped span is logged in `dropped`."""
    if g.status != "unaligned" or keep_unaligned:
        return True
    dropped.append({"label": g.span.label, "text": g.span.text})
    return False


def ground_all(text: str, predictions: Sequence[tuple[str, str]], fuzzy_threshold: float = 85.0) -> list[Grounded]:
    g = Grounder(text, fuzzy_threshold)
    return [g.ground(label, value) for label, value in predictions]
