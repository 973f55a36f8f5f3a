"""Benchmark: projection throughput, batched vs an unbatched loop, and awesome vs binary, in one run.

Usage: python eval/bench_projection.py [--n 200] [--file relx/en-de.test.jsonl] [--methods awesome,binary]
Prints one JSON object: pairs/s per (method, batch size) and the ratios. Model loads are excluded.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from llmie.settings import data_dir
from llmie.io import read_exp
from llmie.metrics import corpus_projection, score_projection
from llmie.projection.project import get_aligner, project


def timed(pairs, method: str, batch_size: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    docs = list(project(pairs, method, batch_size=batch_size))
    dt = time.perf_counter() - t0
    em = corpus_projection([score_projection(None if d.meta["status"] == "failed" else [s.text for s in d.spans],
                                             [s.text for s in p.gold_tgt_spans]) for p, d in zip(pairs, docs)]).em
    return len(pairs) / dt, 100 * em


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--file", default="relx/en-de.test.jsonl")
    ap.add_argument("--methods", default="awesome,binary")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pairs = list(read_exp(data_dir() / "exp" / args.file))[: args.n]
    out: dict = {"file": args.file, "n": len(pairs), "threads": args.threads, "runs": {}}
    for m in args.methods.split(","):
        get_aligner(m, "embedded")  # load outside the timed region
        project(pairs[:2], m)       # warm-up
        for bs in (1, 32):
            pps, em = timed(pairs, m, bs)
            out["runs"][f"{m}/bs{bs}"] = {"pairs_per_s": round(pps, 2), "em": round(em, 2)}
        r = out["runs"]
        out[f"{m}_batched_over_unbatched"] = round(r[f"{m}/bs32"]["pairs_per_s"] / r[f"{m}/bs1"]["pairs_per_s"], 2)
    ms = args.methods.split(",")
    if len(ms) > 1:
        a, b = ms[0], ms[1]
        out[f"{a}_over_{b}_batched"] = round(out["runs"][f"{a}/bs32"]["pairs_per_s"] /
                                             out["runs"][f"{b}/bs32"]["pairs_per_s"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
