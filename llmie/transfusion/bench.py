"""`llmie eval --bench masakhaner|uner --method plain|transfusion|transfusion-wo-annotate [--adapter DIR]`.

GoLLIE-style scoring (micro F1, case-insensitive exact span per class, after the hallucination filter)
plus LF1, with parse failures, rejected elements and hallucinated spans counted per language. MasakhaNER
runs score PER/ORG/LOC only, as the paper does (`include_date: false`); `labels=` changes that.
Translate-test needs an MT direction `<lang> -> en`: llmie.mt engines (sqlite-cached) or a pre-translated
file (`translations=`, JSONL rows `{"source": ..., "translation": ...}`). A language without either is
refused before any model loads, with the directions that do exist.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmie.transfusion.pipeline import METHODS, extract_tf

PAPER_LABELS = {"masakhaner": ["PER", "ORG", "LOC"], "uner": ["PER", "ORG", "LOC"]}


def translator_for(method: str, langs: list[str], translator: str = "auto", translations: str | Path | None = None):
    """The MT engine for translate-test, checked for every language up front (None for `plain`)."""
    if method == "plain":
        return None
    from llmie.mt import PretranslatedTranslator, UnsupportedDirection, get_translator

    if translations:
        return PretranslatedTranslator.from_jsonl(translations)
    tr = get_translator(translator)
    missing = [lang for lang in langs if not tr.supports(lang, "en")]
    if missing:
        have = ", ".join(sorted(f"{s}->{t}" for s, t in tr.pairs())) or "none"
        raise UnsupportedDirection(f"no machine translation into English for {', '.join(missing)} with "
                                   f"translator {translator!r} (available here: {have}). Give --translations "
                                   f"FILE.jsonl (source/translation rows) or set LLMIE_NLLB_MODEL to a local NLLB "
                                   f"folder.")
    return tr


def run_tf_bench(bench: str, method: str, backend: Any, data: Path, out: Path | None, langs: list[str] | None,
                 split: str = "test", limit: int | None = None, *, model: str = "embedded",
                 adapter: str | None = None, translator: str = "auto", translations: str | Path | None = None,
                 labels: list[str] | None = None, schema: str = "gollie_ner", max_tokens: int = 256,
                 progress: Callable[[str, int], None] | None = None, keep_unaligned: bool = False) -> dict[str, Any]:
    from llmie.bench.ner import MASAKHANER, load_schema, run_ner_bench
    from llmie.schema import Schema
    from llmie.transfusion.prompt import template_info

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    labels = labels or PAPER_LABELS.get(bench)
    full = load_schema(schema)
    sch = Schema(task=full.task, labels=[lab for lab in full.labels if labels is None or lab.name in labels])
    run_langs = langs or (MASAKHANER if bench == "masakhaner" else ["eng"])
    tr = translator_for(method, run_langs, translator, translations)

    def fn(docs):
        return extract_tf(docs, sch, backend=backend, method=method, translator=tr, adapter=adapter,
                          max_tokens=max_tokens, keep_unaligned=keep_unaligned)

    t = template_info(method)
    extra = {"template": t.name, "template_digest": t.digest, "labels": sch.names, "adapter": adapter,
             "keep_unaligned": keep_unaligned,
             "translator": None if tr is None else (str(translations) if translations else repr(tr)),
             "scoring": "gollie_f1 = micro F1, case-insensitive exact span per class (hallucinated spans dropped)"}
    return run_ner_bench(bench, fn, data, out, langs, split, limit, method=method, model=model, progress=progress,
                         labels=sch.names, extra=extra)
