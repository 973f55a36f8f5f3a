"""Write gold-aligned parallel phrases of shared/data/word_alignment as EXP-style points.

Usage: python eval/build_alignment_points.py OUT_DIR [--all-phrases]
  ->  OUT_DIR/gold_alignment.train.jsonl (sentences [0, 70%) of every file)
      OUT_DIR/gold_alignment.dev.jsonl   (sentences [70%, 80%): model selection on human alignments)
Phrases whose English side starts or ends with a function word are skipped unless --all-phrases.
The held-out 20% of every file (used for AER) is never read.
"""
from __future__ import annotations

import sys
from pathlib import Path

from llmie.io import read_alignment, write_exp
from llmie.projection.synth import phrases_from_alignment
from llmie.settings import data_dir

SPLITS = {"train": (0.0, 0.7), "dev": (0.7, 0.8)}   # 0.8-1.0: the AER test part, never read here


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    content = "--all-phrases" not in sys.argv   # default: English side content-edged (phrases_from_alignment)
    out = Path(args[0])
    wa = data_dir() / "word_alignment"
    parts: dict[str, list] = {k: [] for k in SPLITS}
    for name in ("enfr", "roen", "jaen", "zhen"):
        sents = list(read_alignment(wa / f"{name}.src-tgt", wa / f"{name}.gold"))
        english = "src" if name.startswith("en") else "tgt"
        for split, (a, b) in SPLITS.items():
            parts[split] += phrases_from_alignment(sents[int(a * len(sents)): int(b * len(sents))],
                                                   english=english if content else None)
    for split, pairs in parts.items():
        n = write_exp(pairs, out / f"gold_alignment.{split}.jsonl")
        print(f"{n} pairs -> {out / f'gold_alignment.{split}.jsonl'}")


if __name__ == "__main__":
    main()
