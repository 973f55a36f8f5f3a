"""Write gold-aligned parallel phrases (train 80% of shared/data/word_alignment) as EXP-style points.

Usage: python eval/build_alignment_points.py OUT_DIR  ->  OUT_DIR/gold_alignment.train.jsonl
The held-out 20% of every file (used for AER) is never read.
"""
from __future__ import annotations

import sys
from pathlib import Path

from llmie.settings import data_dir
from llmie.io import read_alignment, write_exp
from llmie.projection.synth import phrases_from_alignment


def main() -> None:
    out = Path(sys.argv[1])
    wa = data_dir() / "word_alignment"
    pairs = []
    for name in ("enfr", "roen", "jaen", "zhen"):
        sents = list(read_alignment(wa / f"{name}.src-tgt", wa / f"{name}.gold"))
        pairs += phrases_from_alignment(sents[: int(0.8 * len(sents))])
    n = write_exp(pairs, out / "gold_alignment.train.jsonl")
    print(f"{n} pairs -> {out / 'gold_alignment.train.jsonl'}")


if __name__ == "__main__":
    main()
