"""Plain GoLLIE prompt vs TransFusion prompt vs TF-fine-tuned adapter, per language, with one vLLM engine.

    python eval/transfusion_compare.py --mt-data runs/tf/uner-mt-test --mt-langs por,spa \
        --masakhaner-langs hau,swa --adapter runs/tf/adapter-lora --limit 100 --out runs/tf/compare

- `--mt-data`: a MasakhaNER-format folder (`<lang>/test.txt`) whose languages have offline MT into English;
  built when missing by `llmie.transfusion.data.build_translated_test` (UNER English-EWT test, shuffled with
  seed 13 -> Bergamot en->pt / apertium en->es -> labels projected with the PVP projector: silver labels).
- `--masakhaner-langs`: real MasakhaNER languages; no offline MT exists for them here, so only the plain
  prompt (with and without the adapter) runs on them unless `--translations FILE` is given.
Writes `<out>/<bench>.<method>[.adapter]/results.json` per run and `<out>/summary.md`.
"""
from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mt-data", type=Path)
    ap.add_argument("--mt-langs", default="por,spa")
    ap.add_argument("--masakhaner-langs", default="")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--methods", default="plain,transfusion")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--adapter-only", action="store_true", help="only the adapter runs (base runs done elsewhere)")
    ap.add_argument("--adapter-name", default="TF adapter", help="the adapter's name in summary.md (e.g. plain SFT)")
    a = ap.parse_args()

    from llmie.backends import get_backend
    from llmie.settings import data_dir
    from llmie.transfusion.bench import run_tf_bench

    if a.mt_data and not a.mt_data.exists():  # build it: UNER English test -> MT -> projected (silver) labels
        from llmie.transfusion.data import build_translated_test

        print(build_translated_test("ner/uner_en_ewt/en_ewt-ud-test.iob2", a.mt_langs.split(","), a.mt_data,
                                    limit=a.limit), flush=True)
    # one engine for everything; built with LoRA from the start when an adapter is compared (no rebuild)
    be = get_backend("vllm", a.model, **({"max_lora_rank": 16} if a.adapter else {}))

    def stop(signum, frame):  # a killed run must not leave the engine-core process behind
        be.close()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    methods = a.methods.split(",")
    runs = []  # priority order: the TF adapter first, so the main comparison lands first
    variants = [a.adapter] if a.adapter_only else ([a.adapter, None] if a.adapter else [None])
    for adapter in variants:
        for method in sorted(methods, key=lambda m: m != "transfusion"):
            if a.mt_data:
                runs.append(("mt", a.mt_data, a.mt_langs.split(","), method, adapter))
            if a.masakhaner_langs and method == "plain":  # no offline MT for MasakhaNER languages
                runs.append(("masakhaner", data_dir(), a.masakhaner_langs.split(","), "plain", adapter))
    rows = []
    try:
        for tag, data, langs, method, adapter in runs:
            name = f"{tag}.{method}" + (".adapter" if adapter else "")
            t0 = time.perf_counter()
            res = run_tf_bench("masakhaner", method, be, Path(data), a.out / name, langs, "test", a.limit,
                               model=a.model, adapter=adapter, max_tokens=a.max_tokens)
            print(f"{name}: {json.dumps(res['avg'])} ({time.perf_counter() - t0:.0f} s)", flush=True)
            for lang, v in res["langs"].items():
                rows.append((tag, lang, method, a.adapter_name if adapter else "base", v))
            write_summary(a.out, rows)
    finally:
        be.close()
    print((a.out / "summary.md").read_text())


def write_summary(out: Path, rows: list) -> None:
    lines = ["| data | lang | prompt | model | n | GoLLIE F1 | LF1 | parse failures | rejected | hallucinated | "
             "unaligned | truncated |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for tag, lang, method, model, v in rows:
        lines.append(f"| {tag} | {lang} | {method} | {model} | {v['n']} | {v['gollie_f1']:.2f} | {v['lf1']:.2f} | "
                     f"{v['invalid']} | {v.get('rejected', 0)} | {v.get('hallucinated', 0)} | {v['unaligned']} | "
                     f"{v['truncated']} |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
