"""`llmie eval --bench align`: alignment error rate (AER) of a word aligner on gold word alignments.

AER = 1 - (|A & S| + |A & P|) / (|A| + |S|), with S the sure links and P the possible (incl. sure) links.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from llmie.io import AlignedSentence, read_alignment
from llmie.projection.words import Word

PAIRS = ("enfr", "roen", "jaen", "zhen")


def gold_words(tokens: list[str]) -> tuple[str, list[Word]]:
    """Text = tokens joined by single spaces; one word per gold token (their segmentation, not ours)."""
    words, pos = [], 0
    for i, t in enumerate(tokens):
        words.append(Word(pos, pos + len(t), i, False))
        pos += len(t) + 1
    return " ".join(tokens), words


def aer(sents: list[AlignedSentence], links: list[set[tuple[int, int]]]) -> float:
    a = s = a_s = a_p = 0
    for sent, pred in zip(sents, links):
        a += len(pred)
        s += len(sent.sure)
        a_s += len(pred & sent.sure)
        a_p += len(pred & sent.possible)
    return 1.0 - (a_s + a_p) / (a + s) if a + s else 0.0


def predict_links(aligner, sents: list[AlignedSentence], batch_size: int = 32) -> list[set[tuple[int, int]]]:
    out: list[set[tuple[int, int]]] = []
    for b in range(0, len(sents), batch_size):
        chunk = sents[b:b + batch_size]
        src = [gold_words(s.src_tokens) for s in chunk]
        tgt = [gold_words(s.tgt_tokens) for s in chunk]
        mats = aligner.word_alignments([(x[0], y[0]) for x, y in zip(src, tgt)], [x[1] for x in src],
                                       [y[1] for y in tgt])
        for m in mats:
            out.append(set() if isinstance(m, Exception) else {(int(i), int(j)) for i, j in np.argwhere(m)})
    return out


def run_align_bench(aligner, data: Path, pairs: tuple[str, ...] = PAIRS, limit: int | None = None,
                    split: str = "all") -> dict:
    """AER per language pair; `split` picks 'train' (first 80%), 'heldout' (last 20%) or 'all' sentences."""
    res = {}
    for name in pairs:
        sents = list(read_alignment(data / f"{name}.src-tgt", data / f"{name}.gold"))
        cut = int(0.8 * len(sents))
        sents = sents[:cut] if split == "train" else sents[cut:] if split == "heldout" else sents
        sents = sents[:limit] if limit else sents
        t0 = time.perf_counter()
        links = predict_links(aligner, sents)
        res[name] = {"n": len(sents), "aer": round(100 * aer(sents, links), 2),
                     "seconds": round(time.perf_counter() - t0, 2)}
    return res
