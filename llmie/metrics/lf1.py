"""LF1 (MASSIE §2.4) and exact micro F1, on label-routed items.

An *item* is (route, parts): NER/SF/ED route by label with one part (the span text); RE routes by
relation label with two parts (head, tail); EE routes triggers by event type and arguments by
(event type, role). Similarity of two items = mean over parts of `1 - Levenshtein/max(len)`
(character level, case-sensitive, rapidfuzz). Precision = mean over predictions of the best
similarity to a gold item of the same route; recall = mean over gold of the best similarity to a
prediction of the same route; LF1 = harmonic mean. **Pooled** over routes within a sample (this is
what reproduces the paper's Fig. 2: 63.9); the per-route macro variant is `lf1_macro`.
Both empty = 1; an invalid prediction (None) = 0. Scores are fractions in [0, 1] here; reports x100.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

from llmie.schema import Document

Item = tuple[Hashable, tuple[str, ...]]


def span_similarity(a: str, b: str) -> float:
    """1 - Levenshtein(a, b) / max(|a|, |b|); two empty strings are identical (1.0)."""
    return Levenshtein.normalized_similarity(a, b)


def _item_sim(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    if len(a) != len(b):
        return 0.0
    return sum(span_similarity(x, y) for x, y in zip(a, b)) / len(a)


def _best(items: Sequence[tuple[str, ...]], others: Sequence[tuple[str, ...]]) -> list[float]:
    return [max((_item_sim(x, y) for y in others), default=0.0) for x in items]


def _group(items: Iterable[Item]) -> dict[Hashable, list[tuple[str, ...]]]:
    g: dict[Hashable, list[tuple[str, ...]]] = defaultdict(list)
    for route, parts in items:
        g[route].append(tuple(parts))
    return g


def _f(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@dataclass(frozen=True)
class SampleScore:
    lf1: float
    lf1_p: float
    lf1_r: float
    lf1_macro: float
    tp: int          # exact matches (multiset of (route, parts))
    n_pred: int
    n_gold: int


def score_items(gold: Iterable[Item], pred: Iterable[Item] | None,
                routes: Iterable[Hashable] | None = None) -> SampleScore:
    """Score one sample. `pred=None` means the output was invalid (scores 0, its items count as 0 predictions).

    `routes` (the queried labels) only matters for the macro variant: a queried label with neither gold
    nor predictions scores 1 there; by default the routes seen in gold or predictions are used.
    """
    gold = list(gold)
    g = _group(gold)
    n_gold = len(gold)
    if pred is None:
        return SampleScore(0.0, 0.0, 0.0, 0.0, 0, 0, n_gold)
    pred = list(pred)
    p = _group(pred)
    n_pred = len(pred)
    if n_pred == 0 and n_gold == 0:
        return SampleScore(1.0, 1.0, 1.0, 1.0, 0, 0, 0)
    psims = [s for r, items in p.items() for s in _best(items, g.get(r, []))]
    gsims = [s for r, items in g.items() for s in _best(items, p.get(r, []))]
    P = sum(psims) / n_pred if n_pred else 0.0
    R = sum(gsims) / n_gold if n_gold else 0.0
    macro = []
    for r in (set(routes) if routes is not None else set(g) | set(p)):
        gi, pi = g.get(r, []), p.get(r, [])
        if not gi and not pi:
            macro.append(1.0)
        elif not gi or not pi:
            macro.append(0.0)
        else:
            macro.append(_f(sum(_best(pi, gi)) / len(pi), sum(_best(gi, pi)) / len(gi)))
    tp = sum((Counter((r, t) for r, t in gold) & Counter((r, t) for r, t in pred)).values())
    return SampleScore(_f(P, R), P, R, sum(macro) / len(macro) if macro else 1.0, tp, n_pred, n_gold)


def items_from_dict(d: Mapping[str, Sequence[str]] | None) -> list[Item] | None:
    """`{"PERSON": ["Bure", ...]}` (the label-keyed form of Fig. 2) -> items; anything else is invalid (None)."""
    if not isinstance(d, Mapping):
        return None
    items: list[Item] = []
    for label, spans in d.items():
        if not isinstance(spans, (list, tuple)) or not all(isinstance(s, str) for s in spans):
            return None
        items.extend((label, (s,)) for s in spans)
    return items


def items_from_document(doc: Document, task: str = "ner") -> list[Item]:
    """Items of a Document for a task: spans (ner/sf/ed), relations (re), events (ee)."""
    spans = doc.spans
    if task == "re":
        return [(r.label, (spans[r.head].text, spans[r.tail].text)) for r in doc.relations]
    if task == "ee":
        items: list[Item] = []
        for e in doc.events:
            items.append((("trigger", e.type), (spans[e.trigger].text,)))
            items.extend((("arg", e.type, role), (spans[a].text,)) for role, a in e.arguments)
        return items
    return [(s.label, (s.text,)) for s in spans]


@dataclass
class CorpusScore:
    n: int
    lf1: float
    lf1_macro: float
    precision: float
    recall: float
    f1: float

    def as_percent(self) -> dict[str, float | int]:
        return {"n": self.n, **{k: round(100 * getattr(self, k), 4) for k in
                                ("lf1", "lf1_macro", "precision", "recall", "f1")}}


def corpus_score(samples: Sequence[SampleScore]) -> CorpusScore:
    """LF1 = mean over samples; exact F1 = micro over all (route, span) pairs of the corpus."""
    n = len(samples)
    tp = sum(s.tp for s in samples)
    npred = sum(s.n_pred for s in samples)
    ngold = sum(s.n_gold for s in samples)
    p = tp / npred if npred else (1.0 if ngold == 0 else 0.0)
    r = tp / ngold if ngold else (1.0 if npred == 0 else 0.0)
    return CorpusScore(n, sum(s.lf1 for s in samples) / n if n else 0.0,
                       sum(s.lf1_macro for s in samples) / n if n else 0.0, p, r, _f(p, r))


def weighted_average(groups: Mapping[Hashable, tuple[float, int]]) -> float:
    """Average of per-(dataset, language) scores weighted by instance count (MASSIE App. I)."""
    total = sum(n for _, n in groups.values())
    return sum(s * n for s, n in groups.values()) / total if total else 0.0
