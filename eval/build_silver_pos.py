"""Silver non-English UPOS test data by label projection (no non-English UD treebank is installable here).

UD English-EWT test sentences -> machine translation (Bergamot en->pt, apertium en->es; cached) -> word
alignment with llmie's `awesome` aligner on the embedded encoder -> each target word takes the UPOS of
its aligned source word (the most confident one when several align; punctuation -> PUNCT). Only
sentences whose every target word got a tag are kept, so the file is small but has no guessed tags.
Silver labels inherit MT and alignment errors (English word order and tags leak in), so scores on it
are a zero-shot transfer signal, not a treebank result.

    OMP_NUM_THREADS=1 .venv/bin/python eval/build_silver_pos.py --lang por --n 300 --out runs/silver_pos
writes runs/silver_pos/pt_silver-ud-test.conllu and stats.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from llmie.settings import data_dir
from llmie.mt import get_translator
from llmie.projection.project import get_aligner
from llmie.projection.words import Word, segment
from llmie.topro.train import default_file, read_tagged

ISO2 = {"por": "pt", "spa": "es"}


def source_words(words: list[str]) -> tuple[str, list[Word]]:
    """UD tokens joined by single spaces, with their offsets (one word per token)."""
    out, pos = [], 0
    for i, w in enumerate(words):
        out.append(Word(pos, pos + len(w), i, not any(c.isalnum() for c in w)))
        pos += len(w) + 1
    return " ".join(words), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lang", default="por", help="por (Bergamot) or spa (apertium)")
    ap.add_argument("--n", type=int, default=300, help="English test sentences to translate")
    ap.add_argument("--out", type=Path, default=Path("runs/silver_pos"))
    args = ap.parse_args()
    _, sents, tags = read_tagged(default_file("pos", "test", data_dir()), "pos", limit=args.n)
    src = [source_words(s) for s in sents]
    tr = get_translator("bergamot" if args.lang == "por" else "apertium")
    tgt_texts = tr.translate([t for t, _ in src], "eng", args.lang)
    aligner = get_aligner("awesome", "embedded")
    tgt_words = [segment(t) for t in tgt_texts]
    aligns = aligner.word_alignments([(s, t) for (s, _), t in zip(src, tgt_texts)], [w for _, w in src], tgt_words)
    kept, lines, reasons = 0, [], {"empty translation": 0, "alignment error": 0, "unaligned target word": 0}
    for k, ((_, sw), t, tw, a, tg) in enumerate(zip(src, tgt_texts, tgt_words, aligns, tags)):
        if not tw:
            reasons["empty translation"] += 1
            continue
        if isinstance(a, Exception):
            reasons["alignment error"] += 1
            continue
        a = np.asarray(a)
        out_tags = []
        for j, w in enumerate(tw):
            if w.punct:
                out_tags.append("PUNCT")
                continue
            cand = [i for i in np.nonzero(a[:, j])[0] if not sw[i].punct]
            if not cand:
                break
            # several source words: prefer content over function tags (nouns/verbs carry the word)
            order = ["PROPN", "NOUN", "VERB", "ADJ", "NUM", "ADV", "PRON", "AUX", "DET", "ADP", "CCONJ", "SCONJ",
                     "PART", "INTJ", "SYM", "X", "PUNCT"]
            out_tags.append(min((tg[i] for i in cand), key=lambda x: order.index(x) if x in order else len(order)))
        if len(out_tags) < len(tw):
            reasons["unaligned target word"] += 1
            continue
        kept += 1
        lines.append(f"# sent_id = silver-{args.lang}-{k}\n# text = {t}")
        for j, (w, tag) in enumerate(zip(tw, out_tags)):
            form = t[w.start:w.end]
            lines.append(f"{j + 1}\t{form}\t_\t{tag}\t_\t_\t_\t_\t_\t_")
        lines.append("")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{ISO2.get(args.lang, args.lang)}_silver-ud-test.conllu"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stats = {"lang": args.lang, "english_sentences": len(sents), "kept": kept, "dropped": reasons,
             "file": str(path), "translator": type(tr).__name__, "aligner": "awesome (embedded e5-small)"}
    (args.out / "stats.json").write_text(json.dumps(stats, indent=1))
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
