"""Benchmark: batched schema (split_num 6) vs one label per prompt vs all 30 labels at once, same data, one run.

Reports model calls, wall time, LF1 on UNER English-EWT (the 3 gold labels are among the 30), and the
ratios. vLLM offline engine with the embedded model, response cache off so every call is real.
Usage: python eval/bench_batching.py [--n 20]
"""
from __future__ import annotations

import argparse
import json
import time

LABELS_30 = ["PER", "ORG", "LOC", "DATE", "TIME", "MONEY", "PERCENT", "QUANTITY", "ORDINAL", "CARDINAL", "EVENT",
             "PRODUCT", "WORK_OF_ART", "LAW", "LANGUAGE", "NORP", "FAC", "GPE", "DISEASE", "CHEMICAL", "ANIMAL",
             "PLANT", "FOOD", "VEHICLE", "SPORT", "AWARD", "RELIGION", "PROFESSION", "WEBSITE", "EMAIL"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    args = ap.parse_args()
    from llmie.backends import get_backend
    from llmie.settings import data_dir
    from llmie.io import read_iob2
    from llmie.massie import extract
    from llmie.metrics import corpus_score, items_from_document, score_items
    from llmie.schema import Schema

    gold = [d for d in read_iob2(data_dir() / "ner/uner_en_ewt/en_ewt-ud-dev.iob2") if d.spans][: args.n]
    schema = Schema.from_names("ner", LABELS_30)
    be = get_backend("vllm", "embedded", cache=False)
    extract([gold[0].text], Schema.from_names("ner", ["PER"]), backend=be)  # warm-up
    out: dict = {"n_docs": len(gold), "n_labels": len(LABELS_30), "runs": {}}
    for name, split in (("split_num_6", 6), ("one_label_per_prompt", 1), ("all_labels_at_once", 30)):
        t0 = time.perf_counter()
        preds = extract([g.text for g in gold], schema, backend=be, split_num=split)
        dt = time.perf_counter() - t0
        calls = sum(p.meta["counts"]["requests"] for p in preds)
        lf1 = corpus_score([score_items(items_from_document(g),
                                        None if p.meta["parse_status"] == "invalid" else items_from_document(p))
                            for g, p in zip(gold, preds)]).lf1
        out["runs"][name] = {"calls": calls, "seconds": round(dt, 2), "lf1": round(100 * lf1, 2),
                             "invalid": sum(p.meta["counts"]["invalid"] for p in preds)}
    r = out["runs"]
    out["calls_ratio_one_label_over_split6"] = round(r["one_label_per_prompt"]["calls"] / r["split_num_6"]["calls"], 2)
    out["time_ratio_one_label_over_split6"] = round(r["one_label_per_prompt"]["seconds"] / r["split_num_6"]["seconds"], 2)
    out["time_ratio_all_at_once_over_split6"] = round(r["all_labels_at_once"]["seconds"] / r["split_num_6"]["seconds"], 2)
    be.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
