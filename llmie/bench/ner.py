"""`llmie eval --bench masakhaner|uner`: MASSIE-style extraction scored with LF1 and exact F1 per language.

Predictions are appended per batch as they finish and a rerun with the same `--out` continues;
parse failures, unaligned spans and backend errors are counted, never hidden.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from llmie.io import read_conll, read_iob2, read_jsonl, spans_to_bio, write_json_atomic, write_jsonl
from llmie.metrics import corpus_score, items_from_document, score_items, seqeval_scores
from llmie.schema import Document, Schema

MASAKHANER = "bam bbj ewe fon hau ibo kin lug luo mos nya pcm sna swa tsn twi wol xho yor zul".split()


def load_schema(name: str) -> Schema:
    """`masakhaner` -> prompts/schemas/masakhaner.yaml (or a path to such a file)."""
    from llmie.massie.prompt import prompts_dir

    p = Path(name) if name.endswith((".yaml", ".yml")) else prompts_dir() / "schemas" / f"{name}.yaml"
    return Schema.model_validate(yaml.safe_load(p.read_text(encoding="utf-8")))


def bench_files(bench: str, data: Path, langs: list[str] | None, split: str) -> list[tuple[str, Path]]:
    if bench == "masakhaner":
        return [(lang, data / "ner/masakhaner2" / lang / f"{split}.txt") for lang in (langs or MASAKHANER)]
    if bench == "uner":
        return [("eng", data / "ner/uner_en_ewt" / f"en_ewt-ud-{split}.iob2")]
    raise ValueError(f"unknown bench {bench!r}")


def _read(bench: str, path: Path, lang: str) -> list[Document]:
    return list(read_conll(path, lang=lang) if bench == "masakhaner" else read_iob2(path, lang="en"))


def run_ner_bench(bench: str, extract_fn: Callable[[list[Document]], list[Document]], data: Path,
                  out: Path | None, langs: list[str] | None = None, split: str = "test", limit: int | None = None,
                  chunk: int = 32, method: str = "massie", model: str = "embedded",
                  progress: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"bench": bench, "method": method, "model": model, "split": split, "langs": {}}
    for lang, path in bench_files(bench, data, langs, split):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        gold = _read(bench, path, lang)[: limit or None]
        pred_path = out / "predictions" / f"{lang}.jsonl" if out else None
        done: dict[str, Document] = {}
        if pred_path and pred_path.exists():
            try:
                for d in read_jsonl(pred_path):
                    done[d.id] = d
            except Exception:  # torn last line of a killed run: keep what parsed
                pass
            write_jsonl([done[g.id] for g in gold if g.id in done], pred_path)
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
        samples, counts = [], {"invalid": 0, "truncated": 0, "unaligned": 0, "dropped_labels": 0, "errors": 0,
                                "requests": 0}
        gtags, ptags = [], []
        for g in gold:
            p = done[g.id]
            invalid = p.meta.get("parse_status") == "invalid"
            samples.append(score_items(items_from_document(g), None if invalid else items_from_document(p)))
            for k in counts:
                counts[k] += p.meta.get("counts", {}).get(k, 0)
            offs = [tuple(o) for o in g.meta["token_offsets"]]
            gtags.append(spans_to_bio(offs, g.spans))
            ptags.append(spans_to_bio(offs, [s for s in p.spans if s.start is not None]))
        cs = corpus_score(samples).as_percent()
        res["langs"][lang] = {**cs, "seqeval_f1": round(100 * seqeval_scores(gtags, ptags)["seqeval_f1"], 2),
                              **counts, "seconds": round(seconds, 2),
                              "docs_per_s": round(len(todo) / seconds, 3) if todo and seconds > 0 else None}
    langs_res = res["langs"].values()
    total = sum(v["n"] for v in langs_res)
    res["avg"] = {k: round(sum(v[k] * v["n"] for v in langs_res) / total, 2) if total else 0.0
                  for k in ("lf1", "f1", "seqeval_f1")}  # instance-weighted (MASSIE App. I)
    if out:
        write_json_atomic(res, out / "results.json")
        (out / "results.md").write_text(markdown(res), encoding="utf-8")
    return res


def markdown(res: dict[str, Any]) -> str:
    lines = [f"# {res['bench']} ({res['split']}): method `{res['method']}`, model `{res['model']}`", "",
             "| lang | n | LF1 | exact F1 | seqeval F1 | invalid answers | truncated (repaired) | unaligned spans | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for lang, v in res["langs"].items():
        lines.append(f"| {lang} | {v['n']} | {v['lf1']:.2f} | {v['f1']:.2f} | {v['seqeval_f1']:.2f} | "
                     f"{v['invalid']}/{v['requests']} | {v['truncated']} | {v['unaligned']} | {v['errors']} |")
    a = res["avg"]
    lines.append(f"| **avg (weighted)** | | **{a['lf1']:.2f}** | **{a['f1']:.2f}** | {a['seqeval_f1']:.2f} | | | | |")
    return "\n".join(lines) + "\n"
