"""Random MasakhaNER test samples, and a paired comparison of two prediction sets on them.

The full 20 test sets take 1.5 h+ per model on one core, so adapter stages are compared on a seeded random sample
(the first N sentences of a file are not random: they overstate the score). Stage A may be scored from a full run's
predictions (ids ``<lang>-test-<k>``), stage B from ``llmie eval --data SAMPLE_DIR`` (ids ``<lang>-test-<j>``, j-th
sampled sentence); both are re-keyed to the original index.

    python eval/mk_sample.py sample --per-lang 300 --seed 20261208 --out runs/mk-s300
    llmie eval --bench masakhaner --model embedded --adapter B --data runs/mk-s300 --out runs/mk-s300-B
    python eval/mk_sample.py compare --sample runs/mk-s300 --a runs/mk-full/predictions --b runs/mk-s300-B/predictions
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from llmie.datasets import masakhaner, masakhaner_dir
from llmie.io import read_documents
from llmie.io.conll import _blocks, read_conll
from llmie.metrics.lf1 import corpus_score, items_from_document, score_items
from llmie.schema import Document


def _langs(data: Path | None) -> list[str]:
    return sorted(p.name for p in masakhaner_dir(data).iterdir() if (p / "test.txt").exists())


def sample(per_lang: int, seed: int, out: Path, data: Path | None = None) -> None:
    """Writes ``out/<lang>/test.txt`` (sampled blocks in file order) and ``out/index.json`` (original indices)."""
    index: dict[str, list[int]] = {}
    for lang in _langs(data):
        path = masakhaner(lang, "test", data)
        # the same non-empty blocks read_conll numbers (a block of only -DOCSTART- gets no index)
        blocks = [b for _, b in _blocks(path) if any(not ln.startswith("-DOCSTART-") for _, ln in b)]
        rng = random.Random(f"{seed}-{lang}")
        keep = sorted(rng.sample(range(len(blocks)), min(per_lang, len(blocks))))
        index[lang] = keep
        (out / lang).mkdir(parents=True, exist_ok=True)
        (out / lang / "test.txt").write_text("".join("\n".join(ln for _, ln in blocks[k]) + "\n\n" for k in keep),
                                             encoding="utf-8")
    (out / "index.json").write_text(json.dumps({"seed": seed, "per_lang": per_lang, "index": index}))


def _preds(pred_dir: Path, lang: str, keep: list[int], sampled: bool) -> dict[int, Document]:
    """Predictions keyed by original test index; ``sampled``: ids count sampled sentences."""
    out: dict[int, Document] = {}
    for d in read_documents(pred_dir / f"{lang}.jsonl"):
        j = int(d.id.rsplit("-", 1)[1])
        out[keep[j] if sampled else j] = d
    return out


def _f1(samples) -> float:
    return corpus_score(samples).as_percent()["f1"]


def compare(sample_dir: Path, a: Path, b: Path, a_sampled: bool = False, b_sampled: bool = True,
            n_boot: int = 2000, data: Path | None = None) -> dict:
    """Exact F1 per language for A and B on the sampled sentences, macro mean, and a paired bootstrap of B - A
    (sentences resampled within each language)."""
    index = json.loads((sample_dir / "index.json").read_text())["index"]
    per: dict[str, dict] = {}
    pairs: dict[str, list] = {}
    for lang, keep in index.items():
        gold = list(read_conll(masakhaner(lang, "test", data), lang=lang))
        pa, pb = _preds(a, lang, keep, a_sampled), _preds(b, lang, keep, b_sampled)
        rows = []
        for k in keep:
            g = items_from_document(gold[k], "ner")
            rows.append((score_items(g, items_from_document(pa[k], "ner") if k in pa else []),
                         score_items(g, items_from_document(pb[k], "ner") if k in pb else [])))
        pairs[lang] = rows
        per[lang] = {"n": len(rows), "a": _f1([r[0] for r in rows]), "b": _f1([r[1] for r in rows])}
    mean = lambda key: sum(v[key] for v in per.values()) / len(per)  # noqa: E731
    rng = random.Random(0)
    diffs = []
    for _ in range(n_boot):
        da = db = 0.0
        for rows in pairs.values():
            s = [rows[rng.randrange(len(rows))] for _ in rows]
            da += _f1([r[0] for r in s])
            db += _f1([r[1] for r in s])
        diffs.append((db - da) / len(pairs))
    diffs.sort()
    return {"per_lang": per, "a_macro": round(mean("a"), 2), "b_macro": round(mean("b"), 2),
            "diff": round(mean("b") - mean("a"), 2),
            "ci95": [round(diffs[int(0.025 * n_boot)], 2), round(diffs[int(0.975 * n_boot) - 1], 2)]}


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--per-lang", type=int, default=300)
    s.add_argument("--seed", type=int, default=20261208)
    s.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare")
    c.add_argument("--sample", type=Path, required=True)
    c.add_argument("--a", type=Path, required=True, help="predictions folder of A (default: a full run)")
    c.add_argument("--b", type=Path, required=True, help="predictions folder of B (default: a run on the sample)")
    c.add_argument("--a-sampled", action="store_true")
    c.add_argument("--b-full", action="store_true")
    c.add_argument("--boot", type=int, default=2000)
    args = ap.parse_args()
    if args.cmd == "sample":
        sample(args.per_lang, args.seed, args.out)
    else:
        print(json.dumps(compare(args.sample, args.a, args.b, args.a_sampled, not args.b_full, args.boot), indent=1))


if __name__ == "__main__":
    main()
