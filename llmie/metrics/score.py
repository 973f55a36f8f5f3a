"""`llmie score`: match predictions to gold by id and compute the requested metrics.

Missing predictions are scored as empty (a failed projection for EM/SM) and listed; extra
predictions are listed and ignored. Nothing is dropped silently.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from llmie.io import is_exp_file, read_documents, read_exp
from llmie.io.bio import doc_tags, spans_to_bio
from llmie.metrics.lf1 import corpus_score, items_from_document, score_items
from llmie.metrics.projection import corpus_projection, score_projection
from llmie.metrics.seqlabel import seqeval_scores, token_weighted_f1
from llmie.schema import Document, LlmieDataError

METRICS = ("lf1", "f1", "em", "sm", "seqeval")


def _by_id(docs, path: Path) -> dict[str, Document]:
    out: dict[str, Document] = {}
    for d in docs:
        if d.id in out:
            raise LlmieDataError("duplicate id", file=str(path), record=d.id, field="id")
        out[d.id] = d
    return out


def _load(path: Path) -> tuple[dict[str, Document], dict[str, list[str] | None] | None]:
    """Documents by id, and (for EXP files) the span texts in source-span order (None = failed/absent)."""
    if path.suffix == ".jsonl" and is_exp_file(path):
        docs, texts = {}, {}
        for p in read_exp(path):
            if p.id in docs:
                raise LlmieDataError("duplicate id", file=str(path), record=p.id, field="id")
            spans = p.gold_tgt_spans
            docs[p.id] = Document(id=p.id, text=p.tgt_text, lang=p.tgt_lang, spans=list(spans or []),
                                  meta={"status": "failed" if spans is None else "ok"})
            texts[p.id] = None if spans is None else [s.text for s in spans]
        return docs, texts
    return _by_id(read_documents(path), path), None


def _pred_items(doc: Document | None, task: str):
    """Items of a prediction; None (scores 0) when the model output was an invalid structure."""
    if doc is None:
        return []
    if doc.meta.get("parse_status") == "invalid":
        return None
    return items_from_document(doc, task)


def _projection_texts(doc: Document | None) -> list[str] | None:
    if doc is None or doc.meta.get("status") == "failed":
        return None
    return [s.text for s in doc.spans]


def score_files(pred_path: str | Path, gold_path: str | Path, metric: str | None = None,
                task: str = "ner") -> dict[str, Any]:
    pred_path, gold_path = Path(pred_path), Path(gold_path)
    if metric is not None and metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    gold, gold_texts = _load(gold_path)
    pred, _ = _load(pred_path)
    missing = [i for i in gold if i not in pred]
    extra = [i for i in pred if i not in gold]
    out: dict[str, Any] = {"n": len(gold), "n_pred": len(pred) - len(extra), "missing": len(missing),
                           "missing_ids": missing[:50], "extra": len(extra), "extra_ids": extra[:50]}
    want = {metric} if metric else None

    if want is None or want & {"lf1", "f1"}:
        samples = [score_items(items_from_document(g, task), _pred_items(pred.get(i), task))
                   for i, g in gold.items()]
        cs = corpus_score(samples).as_percent()
        keys = {"lf1": ("lf1", "lf1_macro"), "f1": ("precision", "recall", "f1")}
        for m in ("lf1", "f1"):
            if want is None or m in want:
                out.update({k: cs[k] for k in keys[m]})

    projection = (want is None and gold_texts is not None) or (want is not None and want & {"em", "sm"})
    if projection:
        gt = gold_texts or {i: [s.text for s in g.spans] for i, g in gold.items()}
        ps = corpus_projection([score_projection(_projection_texts(pred.get(i)), gt[i]) for i in gold])
        out.update({k: v for k, v in ps.as_percent().items() if k != "n"})

    has_tokens = all("token_offsets" in g.meta for g in gold.values()) and gold
    if (want is None and has_tokens) or (want is not None and "seqeval" in want):
        gtags, ptags, ungrounded = [], [], 0
        for i, g in gold.items():
            gtags.append(doc_tags(g))
            spans = pred[i].spans if i in pred else []
            ungrounded += sum(1 for s in spans if s.start is None)
            ptags.append(spans_to_bio([tuple(o) for o in g.meta["token_offsets"]], spans))
        out.update({k: round(100 * v, 4) for k, v in seqeval_scores(gtags, ptags).items()})
        out["token_weighted_f1"] = round(100 * token_weighted_f1(gtags, ptags), 4)
        out["ungrounded_spans"] = ungrounded
    return out
