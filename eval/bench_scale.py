"""Throughput of the same projection workload: --engine local vs Ray Data with 1 and 2 workers (one run each).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python eval/bench_scale.py --pairs 2000 --out runs/bench_scale

Each engine projects the first N pairs of the EXP files (awesome, embedded encoder, 1 thread per worker).
Optional stages: `--vllm-docs N` extracts N UNER documents with the embedded LLM on vLLM (`--backend vllm`)
locally and inside one Ray actor; `--synth-seeds N` runs `llmie synth` (MT + proposer + verifier, por/spa)
with both engines. Each stage checks that the engines' outputs are identical.
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

from llmie.settings import data_dir
from llmie.io.records import read_docs, read_pairs
from llmie.scale import extract_job, project_job, run_local, run_ray


def _timed(fn) -> tuple[dict, float]:
    t = time.perf_counter()
    st = fn()
    return st, round(time.perf_counter() - t, 1)


def vllm_stage(n: int, out: Path) -> dict:
    """MASSIE NER requests on vLLM: this process vs one Ray actor that starts its own vLLM engine."""
    import itertools
    import os

    from llmie.io import read_jsonl
    from llmie.schema import Schema


    docs = list(itertools.islice(read_docs(data_dir() / "ner/uner_en_ewt/en_ewt-ud-dev.iob2"), n))
    job = extract_job(Schema.from_names("ner", ["PER", "ORG", "LOC"]), backend="vllm", cache=False)
    res: dict = {"docs": len(docs)}
    os.environ["LLMIE_RESPONSE_CACHE"] = str(out / "unused.sqlite")
    _, res["local_s"] = _timed(lambda: run_local(job, docs, out / "vllm-local.jsonl", chunk=4, resume=False))
    shutil.rmtree(out / "vllm-ray.jsonl.shards", ignore_errors=True)
    _, res["ray1_s"] = _timed(lambda: run_ray(job, docs, out / "vllm-ray.jsonl", shard_size=4, workers=1))
    a, b = list(read_jsonl(out / "vllm-local.jsonl")), list(read_jsonl(out / "vllm-ray.jsonl"))
    res["identical_spans"] = [d.spans for d in a] == [d.spans for d in b] and len(a) == len(docs)
    res["ray1_vs_local"] = round(res["local_s"] / res["ray1_s"], 3)
    return res


def synth_stage(n: int, out: Path) -> dict:
    """PVP synthesis (por: Bergamot, spa: apertium; binary proposer + verifier), no MT cache."""
    from llmie.io import read_documents
    from llmie.projection.synth import synthesize

    docs = list(read_documents(data_dir() / "ner/uner_en_ewt/en_ewt-ud-dev.iob2", lang="en"))
    res: dict = {"seeds": 2 * (n + n // 10)}
    kw = {"n_train": n, "n_dev": n // 10, "proposer": "binary", "mt_cache": "none", "chunk": 32}
    for name, extra in (("local", {}), ("ray1", {"engine": "ray", "workers": 1}),
                        ("ray2", {"engine": "ray", "workers": 2})):
        shutil.rmtree(out / f"synth-{name}", ignore_errors=True)
        _, res[f"{name}_s"] = _timed(lambda: synthesize(docs, ["por", "spa"], out / f"synth-{name}", **kw, **extra))
        res[f"{name}_seeds_per_s"] = round(res["seeds"] / res[f"{name}_s"], 2)
        files = sorted((out / f"synth-{name}").glob("*.*.jsonl"))
        text = {f.name: f.read_text(encoding="utf-8") for f in files}
        if name == "local":
            base = text
        else:
            res[f"{name}_identical_to_local"] = text == base
            res[f"{name}_vs_local"] = round(res["local_s"] / res[f"{name}_s"], 3)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--method", default="awesome")
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_scale"))
    ap.add_argument("--vllm-docs", type=int, default=0, help="also: N UNER docs, vLLM local vs in a Ray actor")
    ap.add_argument("--synth-seeds", type=int, default=0, help="also: llmie synth, N train seeds per language")
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
    run_local(job, records, a.out / "local.jsonl", chunk=a.shard_size, resume=False)
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
    if a.vllm_docs:
        res["vllm_extract"] = vllm_stage(a.vllm_docs, a.out)
    if a.synth_seeds:
        res["synth"] = synth_stage(a.synth_seeds, a.out)
    (a.out / "results.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
