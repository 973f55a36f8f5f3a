"""Benchmark: the shipped IE adapter on vLLM (CPU) as a LoRA request vs merged into the weights, same sentences.

Usage: OMP_NUM_THREADS=1 python eval/bench_merged_lora.py [--n 64] [--langs hau,swa,yor,zul]
The first N/len(langs) MasakhaNER 2.0 test sentences per language, one extract call per mode (engine start and the
one-time merge excluded). Prints one JSON object: sentences/s per mode, the ratio, and how many answers agree.
Measured (2 cores, one thread each, with one or two other jobs running): merged/LoRA 11.7x (0.48 -> 5.59/s) and
9.5x (0.42 -> 3.96/s), 59/64 sentences with the same spans both times.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time


def run(docs, merge: bool) -> tuple[float, list]:
    from llmie.backends.vllm import VLLMBackend
    from llmie.bench.ner import load_schema
    from llmie.massie import extract
    from llmie.models import IE_ADAPTER, resolve_llm

    be = VLLMBackend(resolve_llm("embedded"), merge_lora=merge)
    try:
        extract(docs[:2], load_schema("masakhaner"), backend=be, adapter=str(IE_ADAPTER))  # engine + merge
        t0 = time.perf_counter()
        preds = extract(docs, load_schema("masakhaner"), backend=be, adapter=str(IE_ADAPTER))
        dt = time.perf_counter() - t0
    finally:
        be.close()
    return len(docs) / dt, [sorted((s.label, s.text) for s in p.spans) for p in preds]


def main() -> None:
    import torch

    from llmie.datasets import masakhaner
    from llmie.io import read_conll

    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--langs", default="hau,swa,yor,zul")
    args = ap.parse_args()
    torch.set_num_threads(1)
    langs = args.langs.split(",")
    docs = [d for lang in langs
            for d in itertools.islice(read_conll(masakhaner(lang, "test"), lang=lang), args.n // len(langs))]
    lora_rate, lora_spans = run(docs, merge=False)
    merged_rate, merged_spans = run(docs, merge=True)
    print(json.dumps({"n": len(docs), "langs": langs, "lora_sents_per_s": round(lora_rate, 2),
                      "merged_sents_per_s": round(merged_rate, 2),
                      "merged_over_lora": round(merged_rate / lora_rate, 2),
                      "same_answers": sum(a == b for a, b in zip(lora_spans, merged_spans))}))


if __name__ == "__main__":
    main()
