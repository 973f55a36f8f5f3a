"""SFT rows in exactly the `llmie extract` layout, for an IE adapter of the embedded model (recipes/massie_sft.yaml).

One row per (document, label batch): the chat messages `llmie extract` sends (llmie.massie.prompt.messages: the
template's demonstrations as earlier turns, with probability `demo_share`, then the input) as a conversational
prompt, and the label-keyed gold JSON answer as the assistant completion, so trl trains on the completion only
and applies the model's own chat template, as the backends do at extraction time. The schema of each source is
the one its bench asks with (prompts/schemas/uner.yaml, masakhaner.yaml), label descriptions included.

Sources: UNER English-EWT dev and MasakhaNER 2.0 train splits (llmie.datasets; test files are refused). Languages
left out of `masakhaner` stay zero-shot for `llmie eval --bench masakhaner`. Translate-train rows (`translate`):
English dev sentences -> every offline MT engine (`llmie.mt`, Bergamot en->pt,
apertium en->es) -> labels projected with the shipped `pvp` projector (llmie.transfusion.data.translate_project),
the seeds' "SFT on synthesized PVP projection data" applied to extraction; pairs cached in `cache`.
"""
from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from llmie.schema import Document, Schema


def rows_for(docs: Sequence[Document], schema: Schema, *, template: str | None = None, demo_share: float = 0.5,
             split_num: int = 6, seed: int = 13, source: str = "") -> list[dict[str, Any]]:
    """Conversational prompt/completion rows (one per document and label batch)."""
    from llmie.massie.prompt import batch_labels, gold_answer, load_template, messages

    tpl = load_template(template or f"massie.{schema.task}.v1")
    rng = random.Random(f"{seed}:{source}")
    rows = []
    for d in docs:
        for batch in batch_labels(list(schema.labels), split_num):
            demos = rng.random() < demo_share
            answer = gold_answer(d, schema.task, [lab.name for lab in batch])
            rows.append({"prompt": messages(tpl, d.text, batch, demos=demos),
                         "completion": [{"role": "assistant", "content": json.dumps(answer, ensure_ascii=False)}],
                         "kind": f"{source}{'+demos' if demos else ''}", "id": d.id, "lang": d.lang})
    return rows


def _sample(docs: list[Document], n: int | None, empty_share: float, rng: random.Random) -> list[Document]:
    """`n` documents (all when None), at most `empty_share` of them without gold spans (the bench sets have many)."""
    docs = [d for d in docs if d.text.strip()]
    rng.shuffle(docs)
    if n is None or n >= len(docs):
        return docs
    pos = [d for d in docs if d.spans]
    neg = [d for d in docs if not d.spans]
    k = min(len(neg), int(round(n * empty_share)))
    out = pos[:n - k] + neg[:k]
    out += neg[k:k + n - len(out)]  # too few labelled ones: fill with empty ones
    rng.shuffle(out)
    return out


def sample_docs(english: bool = True, masakhaner: Sequence[str] = (), *, n_english: int | None = 1000,
                n_per_lang: int | None = 300, empty_share: float = 0.3, seed: int = 13,
                rng: random.Random | None = None) -> list[tuple[str, list[Document]]]:
    """(source, documents) the IE adapter trains on: UNER English-EWT dev and MasakhaNER train splits (test files are
    refused), sampled as `build_rows` does; also the training set of the encoder baseline (eval/ie_encoder_baseline.py)."""
    from llmie.datasets import check_trainable, masakhaner as mk_path, uner_en
    from llmie.io import read_conll, read_iob2

    rng = rng or random.Random(seed)
    out: list[tuple[str, list[Document]]] = []
    if english:
        p = check_trainable(uner_en("dev"), "IE adapter training data")
        out.append(("eng", _sample(list(read_iob2(p, lang="eng")), n_english, empty_share, rng)))
    for lang in masakhaner:
        p = check_trainable(mk_path(lang, "train"), "IE adapter training data")
        if not p.exists():
            raise FileNotFoundError(f"{p}: MasakhaNER train split of {lang!r} is missing (set LLMIE_DATA_DIR)")
        out.append((lang, _sample(list(read_conll(p, lang=lang)), n_per_lang, empty_share, rng)))
    return out


def translated_docs(english: Sequence[Document], langs: Sequence[str], n: int, *, empty_share: float = 0.3,
                    translator: str = "auto", projector: str = "pvp", seed: int = 13,
                    cache: str | None = None) -> list[tuple[str, list[Document]]]:
    """(lang, silver documents): `n` English gold documents per language machine-translated into it, their spans
    projected (pairs whose projection failed are left out); cached as JSONL pairs in `cache` when given."""
    from llmie.transfusion.data import translated_pairs

    pairs = translated_pairs(langs, lambda _, lang: _sample(list(english), n, empty_share,
                                                            random.Random(f"{seed}:{lang}")),
                             translator, projector, cache)
    return [(lang, [tgt for _, tgt in pairs if tgt.lang == lang]) for lang in langs]


def build_rows(english: bool = True, masakhaner: Sequence[str] = (), *, n_english: int | None = 1000,
               n_per_lang: int | None = 300, empty_share: float = 0.3, demo_share: float = 0.5,
               template: str | None = None, seed: int = 13, translate: Sequence[str] = (), n_translate: int = 300,
               translator: str = "auto", projector: str = "pvp", cache: str | None = None) -> list[dict[str, Any]]:
    """The `data.builder` of recipes/massie_sft.yaml: rows from UNER English-EWT dev and MasakhaNER train splits, plus
    translate-train rows in each `translate` language (`translated_docs` of UNER English dev, sampled on their own:
    the English rows take most labelled dev sentences, and a pool without them gave 600 empty rows)."""
    from llmie.bench.ner import load_schema

    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    sources = sample_docs(english, masakhaner, n_english=n_english, n_per_lang=n_per_lang,
                          empty_share=empty_share, rng=rng)
    if translate:  # translate-train: the English training sentences themselves, in other languages
        from llmie.datasets import check_trainable, uner_en
        from llmie.io import read_iob2

        pool = list(read_iob2(check_trainable(uner_en("dev"), "IE adapter training data"), lang="eng"))
        sources += translated_docs(pool, translate, n_translate, empty_share=empty_share, translator=translator,
                                   projector=projector, seed=seed, cache=cache)
    for source, docs in sources:
        schema = load_schema("masakhaner" if source in masakhaner else "uner")
        rows += rows_for(docs, schema, template=template, demo_share=demo_share, seed=seed, source=source)
    rng.shuffle(rows)
    return rows
