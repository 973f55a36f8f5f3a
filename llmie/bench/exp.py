"""`llmie eval --bench exp`: explicit evaluation of label projection on EXP-style pair files.

For each file: project every pair, score EM/SM/EP against the gold target spans, time it (model
load excluded), optionally measure the adversarial projection rate (each source paired with another
sample's target). Writes results.json (DESIGN.md §5 contract), predictions per file (resumable:
finished ids are skipped on rerun), a Markdown table and a bar plot of EM per file.
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmie.io import read_exp, write_json_atomic, write_jsonl
from llmie.io.atomic import atomic_savefig, atomic_write_text
from llmie.metrics import adversarial_rate, corpus_projection, score_projection
from llmie.schema import Document, ProjectionPair


def discover(data: Path, pairs: list[str] | None = None, pattern: str | None = None) -> list[tuple[str, Path]]:
    """(key, file) for each EXP file under `data`; key = 'dataset/src-tgt' from the file's path.

    Default pattern: `*.test.jsonl` where such files exist, else every `*.jsonl`.
    """
    if data.is_file():
        files = [data]
        root = data.parent
    else:
        root = data
        files = sorted(data.rglob(pattern)) if pattern else sorted(data.rglob("*.test.jsonl")) or sorted(data.rglob("*.jsonl"))
    out = []
    for f in files:
        rel = f.relative_to(root).with_suffix("")
        key = str(rel)[: -len(".test")] if str(rel).endswith(".test") else str(rel)
        lp = rel.name.split(".")[0]
        if pairs and lp not in pairs:
            continue
        out.append((key, f))
    return out


def _lang_pair(p: ProjectionPair) -> str:
    from llmie.lang import iso639_1

    def short(code: str | None) -> str:
        return (iso639_1(code) or code or "xx") if code else "xx"

    return f"{short(p.src.lang)}-{short(p.tgt_lang)}"


def _done_ids(path: Path, wanted: set[str] | None = None) -> dict[str, Document]:
    """Finished predictions of a killed or earlier run (torn tail dropped, file rewritten atomically)."""
    from llmie.io.atomic import resume_jsonl

    return resume_jsonl(path, None if wanted is None else wanted.__contains__)


def mismatched(pairs: list[ProjectionPair]) -> list[ProjectionPair]:
    """Each source with the target of the sample half the file away (never its own translation)."""
    n = len(pairs)
    if n < 2:
        return []
    shift = max(1, n // 2)
    return [ProjectionPair(id=f"{p.id}~adv", src=p.src, tgt_text=pairs[(i + shift) % n].tgt_text,
                           tgt_lang=pairs[(i + shift) % n].tgt_lang) for i, p in enumerate(pairs)]


def run_exp(project_fn: Callable[[list[ProjectionPair]], list[Document]], method: str, data: Path,
            out: Path | None, pairs: list[str] | None = None, limit: int | None = None,
            adversarial: bool = False, pattern: str | None = None,
            progress: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    files = discover(data, pairs, pattern)
    if not files:
        raise FileNotFoundError(f"no EXP JSONL files under {data}" + (f" for pairs {pairs}" if pairs else ""))
    results: dict[str, Any] = {"bench": "exp", "method": method, "data": str(data), "files": {}, "pairs": {}}
    by_lp: dict[str, list] = defaultdict(list)
    total_pairs, total_seconds = 0, 0.0
    for key, f in files:
        gold = list(read_exp(f))[: limit or None]
        pred_path = out / "predictions" / f"{key}.jsonl" if out else None
        done = _done_ids(pred_path, {p.id for p in gold}) if pred_path else {}
        todo = [p for p in gold if p.id not in done]
        t0 = time.perf_counter()
        new = []
        for b in range(0, len(todo), 256):
            chunk = project_fn(todo[b:b + 256])
            if pred_path:
                write_jsonl(chunk, pred_path, append=True)
            new.extend(chunk)
            if progress:
                progress(key, len(chunk))
        seconds = time.perf_counter() - t0
        preds = {**done, **{d.id: d for d in new}}
        samples = []
        for p in gold:
            d = preds[p.id]
            texts = None if d.meta.get("status") == "failed" else [s.text for s in d.spans]
            samples.append(score_projection(texts, [s.text for s in p.gold_tgt_spans or []]))
        sc = corpus_projection(samples).as_percent()
        entry: dict[str, Any] = {**sc, "seconds": round(seconds, 2),
                                 "pairs_per_s": round(len(todo) / seconds, 2) if todo and seconds > 0 else None,
                                 "lang_pair": _lang_pair(gold[0]) if gold else None}
        if adversarial:
            adv = project_fn(mismatched(gold))
            entry["adversarial_rate"] = round(100 * adversarial_rate(
                [d.meta.get("status") == "failed" for d in adv]), 2)
        results["files"][key] = entry
        if entry["lang_pair"]:
            by_lp[entry["lang_pair"]].append((samples, seconds))
        total_pairs += len(todo)
        total_seconds += seconds
    for lp, parts in by_lp.items():
        samples = [s for ss, _ in parts for s in ss]
        results["pairs"][lp] = {**corpus_projection(samples).as_percent(),
                                "seconds": round(sum(t for _, t in parts), 2)}
    entries = list(results["files"].values())
    results["avg"] = {k: round(sum(e[k] for e in entries) / len(entries), 2) for k in ("em", "sm", "ep")}
    datasets: dict[str, list] = defaultdict(list)
    for key, e in results["files"].items():
        datasets[key.split("/")[0] if "/" in key else "-"].append(e)
    results["datasets"] = {d: {k: round(sum(e[k] for e in es) / len(es), 2) for k in ("em", "sm")}
                           for d, es in datasets.items()}
    if adversarial:
        results["avg"]["adversarial_rate"] = round(sum(e["adversarial_rate"] for e in entries) / len(entries), 2)
    results["throughput_pairs_per_s"] = round(total_pairs / total_seconds, 2) if total_seconds > 0 else None
    if out:
        write_json_atomic(results, out / "results.json")
        atomic_write_text(out / "results.md", markdown_table(results))
        bar_plot(results, out / "em.png")
    return results


def markdown_table(results: dict[str, Any]) -> str:
    adv = any("adversarial_rate" in e for e in results["files"].values())
    head = "| file | n | EM | SM | EP | failures | pairs/s |" + (" adversarial % |" if adv else "")
    lines = [f"# EXP: method `{results['method']}`", "", head, "|" + "---|" * (head.count("|") - 1)]
    for key, e in results["files"].items():
        row = f"| {key} | {e['n']} | {e['em']:.2f} | {e['sm']:.2f} | {e['ep']:.2f} | {e['failures']} | " \
              f"{e['pairs_per_s'] if e['pairs_per_s'] is not None else '-'} |"
        lines.append(row + (f" {e['adversarial_rate']:.2f} |" if adv else ""))
    a = results["avg"]
    lines.append(f"| **average** | | **{a['em']:.2f}** | **{a['sm']:.2f}** | {a['ep']:.2f} | | "
                 f"{results['throughput_pairs_per_s']} |" + (f" {a['adversarial_rate']:.2f} |" if adv else ""))
    return "\n".join(lines) + "\n"


def bar_plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(results["files"])
    ems = [results["files"][k]["em"] for k in keys]
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(keys) + 1), 3.2))
    ax.bar(range(len(keys)), ems, color="#4477aa")
    ax.set_xticks(range(len(keys)), keys, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("EM")
    ax.set_title(f"EXP exact match, method {results['method']}")
    fig.tight_layout()
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)


def dump(results: dict[str, Any]) -> str:
    return json.dumps(results, ensure_ascii=False)
