"""Benchmark: LF1 throughput with rapidfuzz Levenshtein vs a pure-Python Levenshtein, same data, one run.

Data: UNER English-EWT dev gold spans against predictions made by perturbing them (drop/add a
prefix word, change case, drop a span, add a spurious one), so the similarity search does real work.
Usage: python eval/bench_metrics.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import random
import time

import llmie.metrics.lf1 as lf1
from llmie.settings import data_dir
from llmie.io import read_iob2


def pure_python_similarity(a: str, b: str) -> float:
    """Textbook dynamic-programming Levenshtein (the baseline; llmie itself uses rapidfuzz)."""
    if not a and not b:
        return 1.0
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return 1.0 - prev[-1] / max(len(a), len(b))


def make_data(seed: int = 0):
    rnd = random.Random(seed)
    samples = []
    for d in read_iob2(data_dir() / "ner/uner_en_ewt/en_ewt-ud-dev.iob2"):
        gold = [(s.label, (s.text,)) for s in d.spans]
        pred = []
        for lab, (t,) in gold:
            r = rnd.random()
            if r < 0.15:
                continue
            if r < 0.3:
                t = "the " + t
            elif r < 0.4:
                t = t.lower()
            elif r < 0.5:
                t = t.split(" ")[-1]
            pred.append((lab if rnd.random() > 0.1 else "ORG", (t,)))
        if rnd.random() < 0.3:
            words = d.text.split()
            pred.append(("PER", (" ".join(words[:2]),)))
        samples.append((gold, pred))
    return samples


def comparisons(samples) -> int:
    n = 0
    for gold, pred in samples:
        for route in {r for r, _ in gold} | {r for r, _ in pred}:
            g = sum(1 for r, _ in gold if r == route)
            p = sum(1 for r, _ in pred if r == route)
            n += 2 * g * p  # precision and recall passes
    return n


def run(samples, repeat: int) -> tuple[float, float]:
    best = float("inf")
    score = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        score = lf1.corpus_score([lf1.score_items(g, p) for g, p in samples]).lf1
        best = min(best, time.perf_counter() - t0)
    return best, score


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    samples = make_data()
    n = comparisons(samples)
    t_fast, s_fast = run(samples, args.repeat)
    original = lf1.span_similarity
    lf1.span_similarity = pure_python_similarity
    try:
        t_slow, s_slow = run(samples, args.repeat)
    finally:
        lf1.span_similarity = original
    assert abs(s_fast - s_slow) < 1e-9, (s_fast, s_slow)  # same metric, only the speed differs
    out = {"samples": len(samples), "span_comparisons": n, "lf1": round(100 * s_fast, 3),
           "rapidfuzz_comparisons_per_s": round(n / t_fast), "pure_python_comparisons_per_s": round(n / t_slow),
           "speedup": round(t_slow / t_fast, 2)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
