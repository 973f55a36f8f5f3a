"""Sequence-labelling scores: seqeval entity F1 (strict IOB2) and TOPRO's token-level weighted F1.

Both are reported under their own names: `seqeval_f1` counts entities (strict: type and both
boundaries), `token_weighted_f1` is scikit-learn's support-weighted F1 over flat token tags, which is
what the TOPRO paper reports and is much more lenient.
"""
from __future__ import annotations

from collections.abc import Sequence


def seqeval_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    _check(gold, pred)
    kw = dict(mode="strict", scheme=IOB2, zero_division=0)
    return {"seqeval_precision": precision_score(gold, pred, **kw),
            "seqeval_recall": recall_score(gold, pred, **kw),
            "seqeval_f1": f1_score(gold, pred, **kw)}


def token_weighted_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    from sklearn.metrics import f1_score

    _check(gold, pred)
    flat_g = [t for s in gold for t in s]
    flat_p = [t for s in pred for t in s]
    return float(f1_score(flat_g, flat_p, average="weighted", zero_division=0)) if flat_g else 0.0


def token_accuracy(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    _check(gold, pred)
    pairs = [(g, p) for gs, ps in zip(gold, pred) for g, p in zip(gs, ps)]
    return sum(g == p for g, p in pairs) / len(pairs) if pairs else 0.0


def _check(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> None:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
