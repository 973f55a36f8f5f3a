"""`llmie eval --bench masakhaner|uner`: MASSIE-style extraction scored with LF1 and exact F1 per language.

Predictions are appended per batch as they finish and a rerun with the same `--out` continues;
parse failures, unaligned spans (found, and dropped unless kept) and backend errors are counted, never hidden.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from llmie.io import read_conll, read_iob2, spans_to_bio, write_json_atomic, write_jsonl
from llmie.metrics import corpus_score, items_from_document, score_items, seqeval_scores
from llmie.schema import Document, Schema

MASAKHANER = "bam bbj ewe fon hau ibo kin lug luo mos nya pcm sna swa tsn twi wol xho yor zul".split()


def request_ok(d: Document) -> bool:
    """False for a prediction whose model request failed (server down, timeout): a resumed run retries it
    instead of keeping an empty answer as finished work."""
    return not d.meta.get("error") and not (d.meta.get("counts") or {}).get("errors")


def load_schema(name: str) -> Schema:
    """`masakhaner` -> prompts/schemas/masakhaner.yaml (or a path to such a file)."""
    from llmie.prompts import schema

    p = schema(name)
    return Schema.model_validate(yaml.safe_load(p.read_text(encoding="utf-8")))


def bench_files(bench: str, data: Path, langs: list[str] | None, split: str) -> list[tuple[str, Path]]:
    if bench == "masakhaner":
        from llmie.datasets import masakhaner_dir

        root, wanted = masakhaner_dir(data), langs or MASAKHANER
        if not root.is_dir() and any((data / lang / f"{split}.txt").exists() for lang in wanted):
            root = data  # --data names a MasakhaNER-format folder itself (<lang>/<split>.txt)
        return [(lang, root / lang / f"{split}.txt") for lang in wanted]
    if bench == "uner":
        from llmie.datasets import uner_en

        return [("eng", uner_en(split, data))]
    raise ValueError(f"unknown bench {bench!r}")


def _read(bench: str, path: Path, lang: str) -> list[Document]:
    return list(read_conll(path, lang=lang) if bench == "masakhaner" else read_iob2(path, lang="en"))


def run_ner_bench(bench: str, extract_fn: Callable[[list[Document]], list[Document]], data: Path,
                  out: Path | None, langs: list[str] | None = None, split: str = "test", limit: int | None = None,
                  chunk: int = 32, method: str = "massie", model: str = "embedded",
                  progress: Callable[[str, int], None] | None = None, labels: list[str] | None = None,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """`labels`: score only these labels (gold spans of other labels are dropped, e.g. DATE for the
    TransFusion setting). Per language: LF1, exact F1, GoLLIE F1 (case-insensitive exact span per class,
    micro), seqeval F1 and every count the predictions carry in `meta.counts`."""
    res: dict[str, Any] = {"bench": bench, "method": method, "model": model, "split": split, "data": str(data),
                           **(extra or {}), "langs": {}}
    for lang, path in bench_files(bench, data, langs, split):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        gold = _read(bench, path, lang)[: limit or None]
        if labels is not None:
            gold = [g.model_copy(update={"spans": [sp for sp in g.spans if sp.label in labels]}) for g in gold]
        pred_path = out / "predictions" / f"{lang}.jsonl" if out else None
        done: dict[str, Document] = {}
        if pred_path and pred_path.exists():  # torn tail of a killed run dropped, file rewritten atomically
            from llmie.io.atomic import resume_jsonl, write_jsonl_atomic

            wanted = {g.id for g in gold}
            done = {i: d for i, d in resume_jsonl(pred_path, wanted.__contains__).items() if request_ok(d)}
            if len(done) < sum(1 for _ in open(pred_path, encoding="utf-8")):  # failed requests are redone
                write_jsonl_atomic([done[g.id] for g in gold if g.id in done], pred_path)
        todo = [g for g in gold if g.id not in done]
        t0 = time.perf_counter()
        for b in range(0, len(todo), chunk):
            preds = extract_fn([Document(id=g.id, text=g.text, lang=g.lang) for g in todo[b:b + chunk]])
            if pred_path:
                write_jsonl(preds, pred_path, append=True)
            done.update({p.id: p for p in preds})
            if progress:
                progress(lang, len(preds))
        seconds = time.perf_counter() - t0
        samples, lower, counts = [], [], {"invalid": 0, "truncated": 0, "unaligned": 0, "dropped_labels": 0,
                                          "errors": 0, "requests": 0, "dropped_unaligned": 0}
        gtags, ptags = [], []
        for g in gold:
            p = done[g.id]
            invalid = p.meta.get("parse_status") == "invalid"
            samples.append(score_items(items_from_document(g), None if invalid else items_from_document(p)))
            lower.append(score_items(_lowered(g, labels), None if invalid else _lowered(p, labels)))
            for k, v in p.meta.get("counts", {}).items():
                counts[k] = counts.get(k, 0) + v
            counts["dropped_unaligned"] += len(p.meta.get("dropped_unaligned") or [])  # found - dropped = kept
            offs = [tuple(o) for o in g.meta["token_offsets"]]
            gtags.append(spans_to_bio(offs, g.spans))
            ptags.append(spans_to_bio(offs, [s for s in p.spans if s.start is not None]))
        cs = corpus_score(samples).as_percent()
        cs["gollie_f1"] = round(corpus_score(lower).as_percent()["f1"], 4)
        res["langs"][lang] = {**cs, "seqeval_f1": round(100 * seqeval_scores(gtags, ptags)["seqeval_f1"], 2),
                              **counts, "seconds": round(seconds, 2),
                              "docs_per_s": round(len(todo) / seconds, 3) if todo and seconds > 0 else None}
    langs_res = res["langs"].values()
    total = sum(v["n"] for v in langs_res)
    res["avg"] = {k: round(sum(v[k] * v["n"] for v in langs_res) / total, 2) if total else 0.0
                  for k in ("lf1", "f1", "gollie_f1", "seqeval_f1")}  # instance-weighted (MASSIE App. I)
    if out:
        write_json_atomic(res, out / "results.json")
        from llmie.io.atomic import atomic_write_text

        atomic_write_text(out / "results.md", markdown(res))
    return res


def _lowered(doc: Document, labels: list[str] | None) -> list:
    """GoLLIE scorer items: (label, span.lower().strip()), multiset-matched per sentence."""
    return [(s.label, (s.text.lower().strip(),)) for s in doc.spans if labels is None or s.label in labels]


def markdown(res: dict[str, Any]) -> str:
    extra = [k for k in ("rejected", "hallucinated") if any(k in v for v in res["langs"].values())]
    lines = [f"# {res['bench']} ({res['split']}): method `{res['method']}`, model `{res['model']}`", "",
             "| lang | n | LF1 | exact F1 | GoLLIE F1 | seqeval F1 | invalid answers | truncated (repaired) | "
             "unaligned spans (dropped) | errors |" + "".join(f" {k} |" for k in extra),
             "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(extra)]
    for lang, v in res["langs"].items():
        lines.append(f"| {lang} | {v['n']} | {v['lf1']:.2f} | {v['f1']:.2f} | {v.get('gollie_f1', 0):.2f} | "
                     f"{v['seqeval_f1']:.2f} | {v['invalid']}/{v['requests']} | {v['truncated']} | {v['unaligned']} "
                     f"({v.get('dropped_unaligned', 0)}) | "
                     f"{v['errors']} |" + "".join(f" {v.get(k, 0)} |" for k in extra))
    a = res["avg"]
    lines.append(f"| **avg (weighted)** | | **{a['lf1']:.2f}** | **{a['f1']:.2f}** | **{a.get('gollie_f1', 0):.2f}** | "
                 f"{a['seqeval_f1']:.2f} | | | | |" + " |" * len(extra))
    return "\n".join(lines) + "\n"
