"""TOPRO NER vs vanilla at equal data and epochs, with the O-imbalance handling (issue: TOPRO NER answered O).

    OMP_NUM_THREADS=1 .venv/bin/python eval/topro_ner_ladder.py --out runs/topro_ner_ladder

Every rung trains the embedded encoder (multilingual-e5-small) on the same English sentences (UNER English-EWT
dev, llmie.datasets; the test split only scores) for the same number of epochs; TOPRO rungs differ in how the
~90% `O` word prompts are handled (`o_keep`: share of O prompts drawn per epoch; `class_weight`). Two control rungs
spend TOPRO's optimizer steps: vanilla with as many steps, and TOPRO without subsampling with as many steps.
Scored on UNER English test (first --n-test sentences) and zero-shot MasakhaNER hau/swa/yor (test, first --n-mk,
DATE read as O): seqeval F1 and token weighted F1, plus the cost. Rungs already in OUT/results.json are skipped
(rerun = resume); results.md is rewritten after every rung.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from llmie.settings import data_dir
from llmie.topro.train import ToproTrainConfig, default_file, evaluate, train

RUNGS = [  # (key, overrides); "steps" = the optimizer steps of the first TOPRO rung
    ("vanilla", {"method": "vanilla"}),
    ("topro o_keep=0.1 sqrt", {"o_keep": 0.1, "class_weight": "sqrt"}),
    ("topro o_keep=0.1", {"o_keep": 0.1}),
    ("vanilla same steps", {"method": "vanilla", "steps": True}),
    ("topro all-O sqrt same steps", {"class_weight": "sqrt", "steps": True}),
    ("topro o_keep=0.1 sqrt mark", {"o_keep": 0.1, "class_weight": "sqrt", "mark": True}),
]


def markdown(res: dict) -> str:
    lines = ["# TOPRO NER ladder (CPU, 1 thread; UNER English-EWT dev for training)", "",
             "| rung | steps | prompts/epoch | train s | en F1 | hau F1 | swa F1 | yor F1 | MasakhaNER avg F1 | en token wF1 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in res["rungs"].items():
        L = r["eval"]["langs"]
        f = lambda lang: L.get(lang, {}).get("seqeval_f1", "-")  # noqa: E731
        lines.append(f"| {key} | {r['train']['steps']} | {r['train']['examples_per_epoch']} | {r['train']['seconds']} | "
                     f"{f('en')} | {f('hau')} | {f('swa')} | {f('yor')} | {r['eval'].get('masakhaner_avg', {}).get('seqeval_f1', '-')} | "
                     f"{L['en']['token_weighted_f1']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/topro_ner_ladder")
    ap.add_argument("--n-train", type=int, default=0, help="training sentences (0: all of UNER English-EWT dev)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--n-mk", type=int, default=100)
    ap.add_argument("--rungs", default="", help="comma-separated rung keys (default: all)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    data, out = data_dir(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    f = out / "results.json"
    res = json.loads(f.read_text()) if f.is_file() else {"args": vars(args), "rungs": {}}
    en = {"en": default_file("ner", "test", data)}
    mk = {lang: data / "ner/masakhaner2" / lang / "test.txt" for lang in ("hau", "swa", "yor")}
    want = set(args.rungs.split(",")) if args.rungs else None
    for key, kw in RUNGS:
        if key in res["rungs"] or (want and key not in want):
            continue
        kw = dict(kw)
        cfg = ToproTrainConfig(task="ner", n_train=args.n_train or None, epochs=args.epochs, log_every=20)
        if kw.pop("steps", False):
            first = next((r for k, r in res["rungs"].items() if k.startswith("topro o_keep")), None)
            if first is None:
                continue
            cfg.epochs, cfg.max_steps = 10_000, first["train"]["steps"]
        for k, v in kw.items():
            setattr(cfg, k, v)
        t = train(cfg, data)
        ev = evaluate(t, en, limit=args.n_test)
        ev_mk = evaluate(t, mk, limit=args.n_mk, keep_types=("PER", "ORG", "LOC"))
        ev["langs"].update(ev_mk["langs"])
        ev["masakhaner_avg"] = ev_mk["avg"]
        tr = {k: t.log[k] for k in ("sentences", "examples", "examples_per_epoch", "steps", "seconds",
                                    "loss_first10", "loss_last10", "imbalance")}
        res["rungs"][key] = {"config": t.log["config"], "train": tr, "eval": ev}
        f.write_text(json.dumps(res, indent=1))
        (out / "results.md").write_text(markdown(res))
        del t
    print(markdown(res))


if __name__ == "__main__":
    main()
