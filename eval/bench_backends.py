"""Throughput of the three backends on the same 100 short extraction-style chat requests.

    python eval/bench_backends.py [--n 100] [--max-tokens 32] [--backends vllm,openai,hf] [--out FILE]

Requests: "List the person names in: <sentence>" over the first N sentences of UNER en_ewt dev
(``$LLMIE_DATA_DIR/ner/uner_en_ewt/en_ewt-ud-dev.iob2``), greedy, no response cache. Each backend is
started, warmed up on two other sentences, timed on the N requests, and stopped before the next one
starts (the engines would otherwise compete for the same cores). Start-up time is reported apart.
Prints one JSON object: requests/s per backend, the vllm/hf ratio, and how often the greedy texts
agree between backends.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_sentences(n: int) -> list[str]:
    from itertools import islice

    from llmie.settings import data_dir
    from llmie.io import read_iob2

    path = data_dir() / "ner" / "uner_en_ewt" / "en_ewt-ud-dev.iob2"
    return [d.text for d in islice(read_iob2(path), n)]


def requests_for(sentences: list[str], max_tokens: int):
    from llmie.backends import GenRequest

    return [GenRequest(messages=[{"role": "user", "content": f"List the person names in: {s}"}],
                       max_tokens=max_tokens, temperature=0.0) for s in sentences]


def run_one(name: str, model: str, reqs, warm) -> tuple[dict, list[str]]:
    import time

    from llmie.backends import get_backend

    t0 = time.perf_counter()
    handle = None
    if name == "openai":
        from llmie.backends.serve import start_server

        handle = start_server(model)
        backend = handle.backend(timeout=300)
    else:
        backend = get_backend(name, model, cache=False)
        if name == "vllm":
            backend.start()
    try:
        started = time.perf_counter() - t0
        backend.generate(warm)
        t1 = time.perf_counter()
        res = backend.generate(reqs)
        secs = time.perf_counter() - t1
    finally:
        backend.close()
        if handle is not None:
            handle.stop()
    errors = sum(r.finish_reason == "error" for r in res)
    toks = sum(r.completion_tokens or 0 for r in res)
    return ({"requests_per_s": round(len(reqs) / secs, 2), "seconds": round(secs, 2),
             "output_tokens_per_s": round(toks / secs, 1), "startup_s": round(started, 1), "errors": errors,
             "finish_length": sum(r.finish_reason == "length" for r in res)}, [r.text for r in res])


def main() -> None:
    import argparse
    import json
    import platform
    import time

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--backends", default="vllm,openai,hf")
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()

    sentences = load_sentences(args.n + 2)
    warm, timed = requests_for(sentences[:2], args.max_tokens), requests_for(sentences[2:], args.max_tokens)
    report: dict = {"bench": "backends", "n_requests": len(timed), "max_tokens": args.max_tokens, "greedy": True,
                    "cache": False, "model": args.model, "cpus": os.cpu_count(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(),
                    "backends": {}}
    texts: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        report["backends"][name], texts[name] = run_one(name, args.model, timed, warm)
    b = report["backends"]
    if "vllm" in b and "hf" in b:
        report["vllm_over_hf"] = round(b["vllm"]["requests_per_s"] / b["hf"]["requests_per_s"], 2)
    if "openai" in b and "hf" in b:
        report["openai_over_hf"] = round(b["openai"]["requests_per_s"] / b["hf"]["requests_per_s"], 2)
    names = list(texts)
    report["same_text"] = {f"{x}~{y}": round(sum(a == c for a, c in zip(texts[x], texts[y])) / len(timed), 3)
                           for i, x in enumerate(names) for y in names[i + 1:]}
    report["total_seconds"] = round(time.perf_counter() - t0, 1)
    out = json.dumps(report, indent=2)
    print(out)
    if args.out:
        with open(args.out, "w") as f:
            f.write(out + "\n")


if __name__ == "__main__":
    main()
