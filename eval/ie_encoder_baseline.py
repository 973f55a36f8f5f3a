"""The encoder baseline next to the IE adapter: vanilla token classification on the embedded encoder
(multilingual-e5-small) trained on the same sentences as the adapter (recipes/massie_sft.yaml's data section:
UNER English-EWT dev + MasakhaNER train of the adapter's languages), scored like the LLM rows.

    OMP_NUM_THREADS=1 .venv/bin/python eval/ie_encoder_baseline.py --out runs/ie-encoder-baseline [--n-test 300 --n-mk 50]

The encoder's labels are PER/ORG/LOC (topro.ner.v1): MasakhaNER DATE is read as O in training and scoring, so its
MasakhaNER numbers are seqeval F1 over PER/ORG/LOC (the LLM bench also scores DATE). One epoch, batch 16, lr 1e-4 /
head 1e-3 (the TOPRO ladder's vanilla settings).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from llmie.datasets import masakhaner, uner_en
from llmie.massie.sft_data import sample_docs
from llmie.topro.train import ToproTrainConfig, evaluate, train
from llmie.train.config import read_yaml

REPO = Path(__file__).resolve().parents[1]
MK_ALL = ("bam bbj ewe fon hau ibo kin lug luo mos nya pcm sna swa tsn twi wol xho yor zul").split()
KEEP = ("PER", "ORG", "LOC")


def write_conll(groups, path: Path) -> int:
    """Two-column CoNLL (token TAG) of the sampled documents, entity types outside PER/ORG/LOC read as O."""
    from llmie.io.bio import repair_iob2

    n = 0
    with path.open("w", encoding="utf-8") as f:
        for _, docs in groups:
            for d in docs:
                tags = ["O" if t != "O" and t[2:] not in KEEP else t for t in d.meta["tags"]]
                tags, _ = repair_iob2(tags, "lenient", where=d.id)
                f.write("".join(f"{w} {t}\n" for w, t in zip(d.meta["tokens"], tags)) + "\n")
                n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default=str(REPO / "recipes/massie_sft.yaml"))
    ap.add_argument("--out", default="runs/ie-encoder-baseline")
    ap.add_argument("--n-test", type=int, default=300, help="UNER English test sentences")
    ap.add_argument("--n-mk", type=int, default=50, help="MasakhaNER test sentences per language")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = dict(read_yaml(args.recipe)["data"])
    trained_langs = list(data.get("masakhaner") or [])
    groups = sample_docs(data.get("english", True), trained_langs, n_english=data.get("n_english"),
                         n_per_lang=data.get("n_per_lang"), empty_share=data.get("empty_share", 0.3),
                         seed=data.get("seed", 13))
    train_file = out / "train.txt"
    n = write_conll(groups, train_file)
    cfg = ToproTrainConfig(task="ner", method="vanilla", train=str(train_file), n_train=None, epochs=1.0,
                           log_every=20)
    t = train(cfg)
    ev = evaluate(t, {"eng": uner_en("test")}, limit=args.n_test)
    mk = evaluate(t, {lang: masakhaner(lang, "test") for lang in MK_ALL}, limit=args.n_mk, keep_types=KEEP)
    seen = [lang for lang in MK_ALL if lang in trained_langs]
    zero = [lang for lang in MK_ALL if lang not in trained_langs]

    def avg(langs: list[str]) -> float:
        return round(sum(mk["langs"][x]["seqeval_f1"] for x in langs) / max(1, len(langs)), 2)

    res = {"train": {"sentences": n, "steps": t.log["steps"], "seconds": t.log["seconds"], "recipe": args.recipe},
           "uner_eng": ev["langs"]["eng"], "masakhaner": mk["langs"],
           "masakhaner_avg": {"all": avg(MK_ALL), "trained": avg(seen), "zero_shot": avg(zero)},
           "n_test": args.n_test, "n_mk": args.n_mk}
    (out / "results.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    print(json.dumps({"uner_eng_seqeval_f1": ev["langs"]["eng"]["seqeval_f1"], **res["masakhaner_avg"],
                      "steps": t.log["steps"], "seconds": t.log["seconds"]}))


if __name__ == "__main__":
    main()
