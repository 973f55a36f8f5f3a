"""EXP explicit-evaluation metrics (PVP paper §4): EM, SM, EP, adversarial projection rate.

Per sample the score is a product over its spans (all must match for EM); a failed projection
(None) scores 0. SM uses 1 - Levenshtein/max len per span. EP = EM over non-failed samples.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from llmie.metrics.lf1 import span_similarity


@dataclass(frozen=True)
class ProjectionSample:
    em: float
    sm: float
    failed: bool


def score_projection(pred: Sequence[str] | None, gold: Sequence[str]) -> ProjectionSample:
    """`pred[i]` is the projected text of source span i (None or a length mismatch = failed sample)."""
    if pred is None or len(pred) != len(gold) or any(p is None for p in pred):
        return ProjectionSample(0.0, 0.0, True)
    em = float(all(p == g for p, g in zip(pred, gold)))
    sm = math.prod(span_similarity(p, g) for p, g in zip(pred, gold))
    return ProjectionSample(em, sm, False)


@dataclass
class ProjectionScore:
    n: int
    em: float
    sm: float
    ep: float
    failures: int

    def as_percent(self) -> dict[str, float | int]:
        return {"n": self.n, "em": round(100 * self.em, 4), "sm": round(100 * self.sm, 4),
                "ep": round(100 * self.ep, 4), "failures": self.failures}


def corpus_projection(samples: Sequence[ProjectionSample]) -> ProjectionScore:
    n = len(samples)
    ok = [s for s in samples if not s.failed]
    return ProjectionScore(n, sum(s.em for s in samples) / n if n else 0.0,
                           sum(s.sm for s in samples) / n if n else 0.0,
                           sum(s.em for s in ok) / len(ok) if ok else 0.0, n - len(ok))


def adversarial_rate(failed_flags: Sequence[bool]) -> float:
    """Share of mismatched pairs (a source with another sample's target) on which a projection was made."""
    return sum(1 for f in failed_flags if not f) / len(failed_flags) if failed_flags else 0.0
