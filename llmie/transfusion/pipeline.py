"""Translate-test + TransFusion: target text -> English (MT) -> one generation that writes the English
annotations and then the fused target annotations -> safe parse of `final_result` -> hallucination
filter -> grounding into the target text.

    from llmie.transfusion import extract_tf
    preds = extract_tf(docs, schema, backend=be, method="transfusion", translator=get_translator())

Methods: `plain` (GoLLIE prompt on the target text, no MT), `transfusion`, `transfusion-wo-annotate`.
The English translation comes from `doc.meta["eng_text"]` when present (a pre-translated column),
otherwise from `translator.translate(texts, doc.lang, "en")` (llmie.mt; sqlite-cached by default).
Greedy decoding, raw prompts (no chat template), as in the paper.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmie.grounding import Grounder, admit
from llmie.schema import Document, LlmieDataError, Schema, Span
from llmie.transfusion.parse import parse_output
from llmie.transfusion.prompt import TEMPLATES, class_map, prompt_for, template_info

METHODS = tuple(TEMPLATES)
_CLOSE = "\n]"


def english_texts(docs: Sequence[Document], translator: Any | None, src_lang: str | None = None) -> list[str]:
    """English translations: `meta["eng_text"]` first, then MT grouped by language (one batch per language)."""
    out: list[str | None] = [d.meta.get("eng_text") if isinstance(d.meta.get("eng_text"), str) else None
                             for d in docs]
    todo: dict[str, list[int]] = {}
    for i, d in enumerate(docs):
        if out[i] is None:
            lang = d.lang or src_lang
            if not lang:
                raise LlmieDataError("no language to translate from (set Document.lang or src_lang)", record=d.id,
                                     field="lang")
            todo.setdefault(lang, []).append(i)
    if todo and translator is None:
        first = docs[next(iter(todo.values()))[0]]
        raise LlmieDataError("no English translation: give a translator or a meta.eng_text column", record=first.id,
                             field="meta.eng_text")
    for lang, idx in todo.items():
        res = translator.translate([docs[i].text for i in idx], lang, "en")
        for i, t in zip(idx, res):
            out[i] = t
    return [t or "" for t in out]


def extract_tf(docs: Sequence[Document], schema: Schema, *, backend: Any, method: str = "transfusion",
               translator: Any | None = None, src_lang: str | None = None, adapter: str | None = None,
               max_tokens: int = 256, progress: bool = False, keep_unaligned: bool = False) -> list[Document]:
    """Predictions as Documents with grounded spans; `meta` holds the English side, statuses and counts.
    Unaligned spans: counted, dropped unless `keep_unaligned` (llmie.grounding.admit, as in MASSIE extraction)."""
    from llmie.backends.base import GenRequest

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    docs = list(docs)
    eng = english_texts(docs, translator, src_lang) if method != "plain" else [None] * len(docs)
    prompts = [prompt_for(schema, d.text, method=method, eng_text=e) for d, e in zip(docs, eng)]
    # one list to write (plain, w/o annotate): stop at its closing line; TF writes two lists, so only
    # max_tokens (or the fine-tuned model's EOS) ends it
    stop = [_CLOSE] if method != "transfusion" else None
    reqs = [GenRequest(prompt=p, max_tokens=max_tokens, temperature=0.0, lora=adapter, stop=stop) for p in prompts]
    results = backend.generate(reqs, progress=progress) if reqs else []
    classes = {c: lab for lab, c in class_map(schema).items()}
    tinfo = template_info(method)
    out = []
    for d, e, r in zip(docs, eng, results):
        counts = {"requests": 1, "invalid": 0, "truncated": 0, "unaligned": 0, "errors": 0, "rejected": 0,
                  "hallucinated": 0}
        spans: list[Span] = []
        status: list[str] = []
        dropped: list[dict[str, str]] = []
        meta: dict[str, Any] = {"template": tinfo.name, "template_digest": tinfo.digest, "method": method,
                                "finish_reason": r.finish_reason}
        if e is not None:
            meta["eng_text"] = e
        if not r.ok:
            counts["errors"] = counts["invalid"] = 1
            meta.update(parse_status="invalid", error=r.error)
        else:
            text = r.text
            if stop and r.finish_reason == "stop" and "[" in text and not text.rstrip().endswith("]"):
                text += _CLOSE  # the stop string is not part of the output
            parsed = parse_output(text, classes, method, d.text)
            fin = parsed.final_result
            counts["invalid"] = int(fin.status in ("invalid", "missing"))
            counts["truncated"] = int(fin.status == "truncated")
            counts["rejected"] = fin.rejected + parsed.result.rejected
            counts["hallucinated"] = parsed.hallucinated
            meta["parse_status"] = "invalid" if counts["invalid"] else fin.status
            if fin.error:
                meta["parse_error"] = fin.error
            if method == "transfusion":
                meta["eng_annotations"] = [{"label": lab, "text": t} for lab, t in parsed.result.items]
            g = Grounder(d.text)
            seen = set()
            for label, text in parsed.kept:
                gr = g.ground(label, text)
                key = (label, gr.span.start, gr.span.end, gr.span.text if gr.span.start is None else "")
                if key in seen:
                    continue
                seen.add(key)
                counts["unaligned"] += gr.status == "unaligned"
                if admit(gr, keep_unaligned, dropped):
                    spans.append(gr.span)
                    status.append(gr.status)
            meta["raw"] = r.text
        meta.update(alignment_status=status, counts=counts, dropped_unaligned=dropped)
        out.append(Document(id=d.id, text=d.text, lang=d.lang, spans=spans, meta=meta))
    return out
