"""The README table of eval/ie_adapter_eval.sh: raw model vs IE adapter vs encoder baseline, UNER English and
MasakhaNER (all 20 languages, the adapter's training languages, the zero-shot ones), plus vLLM/hf agreement.

    .venv/bin/python eval/ie_adapter_table.py runs/ie-adapter-eval
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from llmie.train.config import read_yaml

REPO = Path(__file__).resolve().parents[1]


def load(p: Path) -> dict | None:
    f = p / "results.json"
    return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else None


def mean(xs: list[float]) -> float:
    return round(sum(xs) / len(xs), 2) if xs else float("nan")


def main(out: Path) -> None:
    trained = set(read_yaml(REPO / "recipes/massie_sft.yaml")["data"].get("masakhaner") or [])
    lines = ["| model | UNER eng exact F1 | UNER LF1 | UNER seqeval | MasakhaNER exact F1 (20) | trained 10 | zero-shot 10 "
             "| MasakhaNER seqeval (20) | docs/s (UNER) |", "|---|---|---|---|---|---|---|---|---|"]
    for m in ("embedded-base", "embedded"):
        u, k = load(out / f"uner-{m}"), load(out / f"masakhaner-{m}")
        if not (u and k):
            continue
        e, L = u["langs"]["eng"], k["langs"]
        f1 = lambda langs: mean([L[x]["f1"] for x in langs])  # noqa: E731
        lines.append(f"| {m} | {e['f1']:.2f} | {e['lf1']:.2f} | {e['seqeval_f1']:.2f} | {f1(list(L))} | "
                     f"{f1([x for x in L if x in trained])} | {f1([x for x in L if x not in trained])} | "
                     f"{mean([L[x]['seqeval_f1'] for x in L])} | {e['docs_per_s']} |")
    enc = load(out / "encoder")
    if enc:
        a = enc["masakhaner_avg"]
        lines.append(f"| encoder baseline (e5-small, vanilla; PER/ORG/LOC) | - | - | {enc['uner_eng']['seqeval_f1']} | - | "
                     f"- | - | {a['all']} (trained {a['trained']}, zero-shot {a['zero_shot']}) | - |")
    print("\n".join(lines))
    v, h = (load(p) for p in sorted(out.glob("uner-embedded-vllm-*")) + sorted(out.glob("uner-embedded-hf-*")))
    if v and h:
        pv = {json.loads(x)["id"]: json.loads(x) for x in (next(out.glob("uner-embedded-vllm-*")) / "predictions" /
                                                           "eng.jsonl").read_text().splitlines()}
        ph = {json.loads(x)["id"]: json.loads(x) for x in (next(out.glob("uner-embedded-hf-*")) / "predictions" /
                                                           "eng.jsonl").read_text().splitlines()}
        same = sum(sorted((s["label"], s["text"]) for s in pv[i]["spans"]) ==
                   sorted((s["label"], s["text"]) for s in ph[i]["spans"]) for i in pv if i in ph)
        print(f"\nvLLM vs hf on {len(pv)} UNER sentences: exact F1 {v['langs']['eng']['f1']:.2f} vs "
              f"{h['langs']['eng']['f1']:.2f}; identical span sets on {same}/{len(pv)} sentences")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ie-adapter-eval"))
