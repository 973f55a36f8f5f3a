"""Throughput of the same projection workload: --engine local vs Ray Data with 1 and 2 workers (one run each).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python eval/bench_scale.py --pairs 2000 --out runs/bench_scale

Each engine projects the first N pairs of the EXP files (awesome, embedded encoder, 1 thread per worker).
Seconds include model loads and, for Ray, cluster start; pairs/s and the ratio to local are printed and
written to OUT/results.json. On a 2-core machine shared with other work, 2 workers can at best approach 2x
and Ray's own processes take CPU from the workers: the numbers show overhead, not cluster scaling.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from llmie.config import data_dir
from llmie.scale import project_job, read_pairs, run_local, run_ray


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--method", default="awesome")
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_scale"))
    a = ap.parse_args()
    files = sorted((data_dir() / "exp").glob("*/*.test.jsonl"))
    records: list = []
    for f in files:
        records.extend(read_pairs(f))
        if len(records) >= a.pairs:
            break
    records = records[:a.pairs]
    # ids must be unique across files for the shard check: prefix with a running number
    for i, r in enumerate(records):
        r.id = f"{i}:{r.id}"
    a.out.mkdir(parents=True, exist_ok=True)
    job = project_job(a.method)
    res: dict = {"pairs": len(records), "method": a.method, "shard_size": a.shard_size}
    t = time.perf_counter()
    run_local(job, records, a.out / "local.jsonl", chunk=a.shard_size)
    res["local_s"] = round(time.perf_counter() - t, 1)
    base = (a.out / "local.jsonl").read_text(encoding="utf-8")
    for w in (int(x) for x in a.workers.split(",")):
        out = a.out / f"ray{w}.jsonl"
        shutil.rmtree(a.out / f"ray{w}.jsonl.shards", ignore_errors=True)
        t = time.perf_counter()
        run_ray(job, records, out, shard_size=a.shard_size, workers=w)
        res[f"ray{w}_s"] = round(time.perf_counter() - t, 1)
        res[f"ray{w}_identical_to_local"] = out.read_text(encoding="utf-8") == base
    for k in [k for k in res if k.endswith("_s")]:
        res[k.replace("_s", "_pairs_per_s")] = round(len(records) / res[k], 2)
        res[k.replace("_s", "_vs_local")] = round(res["local_s"] / res[k], 3)
    (a.out / "results.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
