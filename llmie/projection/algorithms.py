"""PVP paper Algorithms 1-3: from alignment matrices to target spans (whole sample fails on any bad span).

- Algorithm 1: span i -> union of target words aligned to any word of source span i; it must be
  non-empty, contiguous and disjoint from earlier spans, else the whole sample fails.
- Algorithm 2 (verifier): project with `a` and with the transposed swapped-direction matrix; keep the
  sample only if both succeed and give identical spans.
- Algorithm 3: the same rules on a hybrid span x word matrix `b` (one row per source span).

`bridge=True` (llmie's default, documented deviation) fills holes made only of punctuation or
inside one whitespace-delimited token before the contiguity check, and trims punctuation at the
edges; in Algorithm 1 it also fills holes of at most 2 target words that no source word aligns to
(`fill_unaligned_gaps`). With `bridge=False` the rules are exactly the paper's.

`scores` (second deviation, used by the probability-based projectors `binary` and `pvp`): when a span's
aligned words form several contiguous runs, which happens mostly with a repeated name ("Sacramento
Heatwave ... in Sacramento"), keep the run with the highest sum of word scores minus its distance in
relative position to the source span, instead of failing the sample. Without `scores` a split fails.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmie.projection.words import Word


@dataclass(frozen=True)
class Projection:
    """Word index ranges [first, last] per source span, or a failure with its reason."""

    spans: tuple[tuple[int, int], ...] | None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.spans is not None


def _bridge(idx: list[int], words: Sequence[Word] | None, keep_left: bool, keep_right: bool) -> list[int]:
    if words is None or not idx:
        return idx
    out = [idx[0]]
    for j in idx[1:]:
        gap = range(out[-1] + 1, j)
        if all(words[k].punct for k in gap) or words[out[-1]].group == words[j].group:
            out.extend(gap)
        out.append(j)
    while len(out) > 1 and words[out[0]].punct and not keep_left:
        out.pop(0)
    while len(out) > 1 and words[out[-1]].punct and not keep_right:
        out.pop()
    return out


def _runs(idx: list[int]) -> list[list[int]]:
    out = [[idx[0]]]
    for j in idx[1:]:
        (out[-1].append(j) if j == out[-1][-1] + 1 else out.append([j]))
    return out


def best_run(idx: list[int], score: np.ndarray, used: set[int], src_rel: float | None) -> list[int] | None:
    """The contiguous run of `idx` not overlapping `used` with the best sum of scores minus relative distance."""
    u = max(1, len(score))
    best, best_v = None, -np.inf
    for run in _runs(idx):
        if used.intersection(run):
            continue
        v = float(score[run].sum()) - (abs((run[0] + run[-1]) / 2 / u - src_rel) if src_rel is not None else 0.0)
        if v > best_v:
            best, best_v = run, v
    return best


def project_rows(rows: np.ndarray, tgt_words: Sequence[Word] | None = None,
                 src_edge_punct: Sequence[tuple[bool, bool]] | None = None, *, bridge: bool = True,
                 scores: np.ndarray | None = None, src_rel: Sequence[float] | None = None) -> Projection:
    """Algorithm 3 (and the core of Algorithm 1): `rows` is a boolean (m x u) span x target-word matrix.

    `scores` (m x u floats, e.g. the probabilities behind `rows`) and `src_rel` (each source span's
    relative position in [0, 1]) turn on the best-run choice for split spans (module docstring).
    """
    used: set[int] = set()
    spans = []
    for i, row in enumerate(np.asarray(rows, dtype=bool)):
        idx = np.flatnonzero(row).tolist()
        if not idx:
            return Projection(None, f"span {i}: no aligned target word")
        if bridge:
            keep_l, keep_r = src_edge_punct[i] if src_edge_punct is not None else (False, False)
            idx = _bridge(idx, tgt_words, keep_l, keep_r)
        if idx[-1] - idx[0] + 1 != len(idx) and scores is not None:
            run = best_run(idx, np.asarray(scores[i], dtype=float), used,
                           None if src_rel is None else float(src_rel[i]))
            idx = run if run is not None else idx
        if idx[-1] - idx[0] + 1 != len(idx):
            return Projection(None, f"span {i}: aligned target words are not contiguous")
        if used.intersection(idx):
            return Projection(None, f"span {i}: overlaps an earlier span")
        used.update(idx)
        spans.append((idx[0], idx[-1]))
    return Projection(tuple(spans))


def span_rows(a: np.ndarray, src_spans: Sequence[Sequence[int]]) -> np.ndarray:
    """Union of the alignment rows of each span's source words (the inner loop of Algorithm 1)."""
    a = np.asarray(a, dtype=bool)
    return np.stack([a[list(ws)].any(axis=0) if len(ws) else np.zeros(a.shape[1], bool) for ws in src_spans]) \
        if len(src_spans) else np.zeros((0, a.shape[1]), bool)


def fill_unaligned_gaps(rows: np.ndarray, a: np.ndarray, max_gap: int = 2) -> np.ndarray:
    """Fill holes of at most `max_gap` target words that no source word aligns to ("liste [de] vins").

    Function words inside a multi-word name are often left unaligned; a hole made of words aligned
    elsewhere is kept (it still fails the contiguity check). Part of `bridge`.
    """
    free = ~np.asarray(a, dtype=bool).any(axis=0)
    rows = np.array(rows, dtype=bool)
    for row in rows:
        idx = np.flatnonzero(row)
        for x, y in zip(idx[:-1], idx[1:]):
            if 1 < y - x <= max_gap + 1 and free[x + 1:y].all():
                row[x + 1:y] = True
    return rows


def algorithm1(a: np.ndarray, src_spans: Sequence[Sequence[int]], tgt_words: Sequence[Word] | None = None,
               src_edge_punct: Sequence[tuple[bool, bool]] | None = None, *, bridge: bool = True,
               scores: np.ndarray | None = None, src_rel: Sequence[float] | None = None,
               fill_gaps: bool = True) -> Projection:
    """Span projection from an (r x u) word alignment; `src_spans[i]` lists the source word indices of span i.

    `fill_gaps` (with `bridge`) needs every row of `a` (a word is free when no source word aligns to it).
    """
    if any(len(ws) == 0 for ws in src_spans):
        return Projection(None, "a source span covers no word")
    rows = span_rows(a, src_spans)
    if bridge and fill_gaps:
        rows = fill_unaligned_gaps(rows, a)
    return project_rows(rows, tgt_words, src_edge_punct, bridge=bridge, scores=scores, src_rel=src_rel)


def algorithm2(a: np.ndarray, a_swap: np.ndarray, src_spans: Sequence[Sequence[int]],
               tgt_words: Sequence[Word] | None = None, src_edge_punct: Sequence[tuple[bool, bool]] | None = None,
               *, bridge: bool = True) -> Projection:
    """Back-projection verifier: `a_swap` is the (u x r) alignment computed with roles swapped."""
    p = algorithm1(a, src_spans, tgt_words, src_edge_punct, bridge=bridge)
    if not p.ok:
        return p
    q = algorithm1(np.asarray(a_swap).T, src_spans, tgt_words, src_edge_punct, bridge=bridge)
    if not q.ok:
        return Projection(None, f"verifier: {q.reason}")
    if p.spans != q.spans:
        return Projection(None, "verifier: swapped-direction projection differs")
    return p
