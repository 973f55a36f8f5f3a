"""TransFusion training data (paper §3, notes §2) and translated test sets.

Roles are reversed at training time: `text` = the MT of an English gold sentence (labels projected onto
it), `eng_text` = the English original, `result` = the English gold labels, `final_result` = the projected
labels. These TF examples are mixed with plain GoLLIE English examples (paper: 891 TF of 20,000).
Every example is split into prompt / completion at the first `result =` line (completion-only loss).

Projection uses llmie's projectors (`pvp` by default, `awesome` / `binary` also work); sentences whose
projection fails are dropped and counted. `build_translated_test` writes the same kind of data as a
MasakhaNER-format folder (`<lang>/test.txt`, `token TAG`) for translate-test evaluation where no test
set in the language exists; its labels are *projected* (silver), say so when reporting.
"""
from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmie.schema import Document, ProjectionPair, Schema, Span
from llmie.transfusion.prompt import render, split_prompt

log = logging.getLogger(__name__)


def data_path(path: str | Path) -> Path:
    """A path as given if it exists, else relative to `$LLMIE_DATA_DIR` (recipes name benchmark files that way)."""
    from llmie.settings import data_dir

    p = Path(path).expanduser()
    if p.exists() or p.is_absolute():
        return p
    q = data_dir() / p
    if not q.exists():
        raise FileNotFoundError(f"{path}: not found here nor under LLMIE_DATA_DIR ({data_dir()})")
    return q


def _keep(spans: Sequence[Span], schema: Schema) -> list[Span]:
    names = set(schema.names)
    return [s for s in spans if s.label in names]


def tf_record(schema: Schema, tgt: Document, en: Document, method: str = "transfusion") -> dict[str, Any]:
    """One TF example (roles reversed: text = translation, eng_text = English original)."""
    ex = render(schema, tgt.text, method=method, eng_text=en.text, annotations=_keep(tgt.spans, schema),
                en_annotations=_keep(en.spans, schema))
    prompt, completion = split_prompt(ex)
    return {"prompt": prompt, "completion": completion, "kind": "tf", "id": tgt.id, "lang": tgt.lang}


def plain_record(schema: Schema, doc: Document) -> dict[str, Any]:
    """One plain GoLLIE example (English gold)."""
    prompt, completion = split_prompt(render(schema, doc.text, method="plain", annotations=_keep(doc.spans, schema)))
    return {"prompt": prompt, "completion": completion, "kind": "plain", "id": doc.id, "lang": doc.lang}


def translate_project(english: Sequence[Document], lang: str, translator: Any, projector: str = "pvp",
                      model: str = "embedded", src_lang: str = "en") -> tuple[list[tuple[Document, Document]], int]:
    """Translate English gold documents into `lang` and project their spans. Returns ((en, tgt) pairs, failed)."""
    from llmie.projection.project import project

    english = [d for d in english if d.text.strip()]
    tgt_texts = translator.translate([d.text for d in english], src_lang, lang)
    pairs, out, failed = [], [], 0
    for d, t in zip(english, tgt_texts):
        pairs.append(ProjectionPair(id=f"{d.id}>{lang}", src=Document(id=d.id, text=d.text, lang=src_lang,
                                                                    spans=d.spans), tgt_text=t, tgt_lang=lang))
    with_spans = [p for p in pairs if p.src.spans and p.tgt_text.strip()]
    projected = {doc.id: doc for doc in project(with_spans, projector, model)} if with_spans else {}
    for d, p in zip(english, pairs):
        if not p.tgt_text.strip():
            failed += 1
            continue
        if not p.src.spans:
            out.append((d, Document(id=p.id, text=p.tgt_text, lang=lang)))
            continue
        doc = projected[p.id]
        if doc.meta.get("status") != "ok":
            failed += 1
            continue
        out.append((d, Document(id=p.id, text=doc.text, lang=lang, spans=doc.spans,
                                meta={"projector": projector})))
    return out, failed


_Key = tuple[str, str, str, str, str]   # (lang, translator, projector, English id, English text)


def _pair_key(lang: str, translator: str, projector: str, en: Document) -> _Key:
    return (lang, translator, projector, en.id, en.text)


def _save_pairs(entries: dict[_Key, tuple[Document, Document | None]], path: Path) -> None:
    """The whole cache, atomically: one line per English sentence and (language, translator, projector); a sentence
    whose projection failed is stored with `"tgt": null` so that reruns do not try it again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for (lang, translator, projector, _, _), (en, tgt) in entries.items():
            f.write(json.dumps({"key": {"lang": lang, "translator": translator, "projector": projector},
                                "en": en.model_dump(mode="json"),
                                "tgt": tgt.model_dump(mode="json") if tgt is not None else None},
                               ensure_ascii=False) + "\n")
    tmp.replace(path)


def _load_pairs(path: Path) -> dict[_Key, tuple[Document, Document | None]]:
    from llmie.io import iter_json_lines
    from llmie.schema import LlmieDataError

    out: dict[_Key, tuple[Document, Document | None]] = {}
    legacy = 0
    for n, obj in iter_json_lines(path):
        for k in ("en", "tgt"):
            if k not in obj:
                raise LlmieDataError(f"missing {k!r}", file=str(path), line=n, field=k)
        key = obj.get("key")
        if not isinstance(key, dict):
            legacy += 1     # written before caches were keyed: nothing says which translator/projector made it
            continue
        en = Document.model_validate(obj["en"])
        tgt = Document.model_validate(obj["tgt"]) if obj["tgt"] is not None else None
        for d in (en, tgt):
            if d is not None:
                d.meta.pop("tokens", None), d.meta.pop("token_offsets", None), d.meta.pop("tags", None)
        try:
            k = _pair_key(key["lang"], key["translator"], key["projector"], en)
        except KeyError as e:
            raise LlmieDataError(f"key lacks {e.args[0]!r}", file=str(path), line=n, field="key") from None
        out[k] = (en, tgt)
    if legacy:
        log.warning("%s: %d unkeyed lines from an older llmie ignored (they are rebuilt)", path, legacy)
    return out


def translated_pairs(langs: Sequence[str], pick: Callable[[int, str], list[Document]], translator: str = "auto",
                     projector: str = "pvp", cache: str | Path | None = None) -> list[tuple[Document, Document]]:
    """(English, translated + projected) pairs for each language: `pick(i, lang)` chooses the English gold documents,
    `translate_project` does the rest. With a JSONL `cache`, each sentence is looked up by (language, translator,
    projector, English sentence): reruns skip MT and projection, and a cache made for other languages, another
    sample or another projector is extended rather than silently reused. The cache is saved after each language.
    Shared by the TransFusion rows and the IE adapter's translate-train rows (llmie.massie.sft_data)."""
    cache_path = Path(cache) if cache else None
    entries = _load_pairs(cache_path) if cache_path and cache_path.exists() else {}
    tr, pairs = None, []
    for i, lang in enumerate(langs):
        chosen = [d for d in pick(i, lang) if d.text.strip()]
        keys = [_pair_key(lang, translator, projector, d) for d in chosen]
        missing = [d for d, k in zip(chosen, keys) if k not in entries]
        if missing:
            if tr is None:
                from llmie.mt import get_translator

                tr = get_translator(translator)
            got, _ = translate_project(missing, lang, tr, projector)
            done = {en.id: tgt for en, tgt in got}
            for d in missing:   # failures (no projection) are remembered as None
                entries[_pair_key(lang, translator, projector, d)] = (d, done.get(d.id))
            if cache_path:
                _save_pairs(entries, cache_path)
        kept = [entries[k] for k in keys if entries[k][1] is not None]
        log.info("%s: %d sentences (%d from cache), %d pairs kept (%d with entities), %d projection failures",
                 lang, len(chosen), len(chosen) - len(missing), len(kept), sum(bool(t.spans) for _, t in kept),
                 len(chosen) - len(kept))
        pairs.extend(kept)  # type: ignore[arg-type]
    return pairs


def mix(tf: Sequence[dict], plain: Sequence[dict], seed: int = 13) -> list[dict]:
    rows = list(tf) + list(plain)
    random.Random(seed).shuffle(rows)
    return rows


def build_sft_records(english: str, schema: str = "gollie_ner", langs: Sequence[str] = ("por", "spa"),
                      translator: str = "auto", projector: str = "pvp", n_tf: int = 40, n_english: int = 200,
                      tf_source: str | None = None, seed: int = 13, max_chars: int = 400, cache: str | None = None,
                      method: str = "transfusion", labels: Sequence[str] | None = None) -> list[dict]:
    """The `data:` section of recipes/transfusion.yaml: English gold file -> TF + plain prompt/completion rows.

    `english`: English gold (llmie JSONL / .iob2 / CoNLL). TF sentences (n_tf per language) and plain English
    sentences (n_english) are drawn from disjoint parts of it; `tf_source` can name another English file for
    the TF side. Translated + projected pairs are cached in `cache` (JSONL) so reruns skip MT and projection.
    """
    from llmie.bench.ner import load_schema
    from llmie.io import read_documents

    sch = load_schema(schema)
    if labels:
        sch = Schema(task=sch.task, labels=[lab for lab in sch.labels if lab.name in labels])
    english = str(data_path(english))
    tf_source = str(data_path(tf_source)) if tf_source else None
    rng = random.Random(seed)
    docs = [d for d in read_documents(english, lang="en") if 0 < len(d.text) <= max_chars]
    rng.shuffle(docs)
    pool = docs[n_english:] if tf_source is None else [d for d in read_documents(tf_source, lang="en")
                                                        if 0 < len(d.text) <= max_chars]
    # 75% of TF sentences with entities, 25% without (authors' code)
    with_ents, without = [d for d in pool if d.spans], [d for d in pool if not d.spans]
    plain_docs = docs[:n_english]

    def pick(i: int, lang: str) -> list[Document]:
        r = random.Random(seed + i)
        n_pos = round(n_tf * 0.75)
        return r.sample(with_ents, min(n_pos, len(with_ents))) + r.sample(without, min(n_tf - n_pos, len(without)))

    pairs = translated_pairs(langs, pick, translator, projector, cache)
    tf = [tf_record(sch, tgt, en, method) for en, tgt in pairs]
    plain = [plain_record(sch, d) for d in plain_docs]
    return mix(tf, plain, seed)


def write_conll(docs: Sequence[Document], path: Path) -> int:
    """MasakhaNER-style `token TAG` file (blank line between sentences); tokens from llmie's word segmenter."""
    from llmie.io import spans_to_bio
    from llmie.projection.words import segment

    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            words = segment(d.text)
            if not words:
                continue
            tags = spans_to_bio([(w.start, w.end) for w in words], [s for s in d.spans if s.start is not None])
            for w, t in zip(words, tags):
                f.write(f"{d.text[w.start:w.end]} {t}\n")
            f.write("\n")
            n += 1
    return n


def build_translated_test(english: str, langs: Sequence[str], out: str | Path, *, translator: str = "auto",
                          projector: str = "pvp", limit: int = 100, seed: int = 13,
                          max_chars: int = 400) -> dict[str, Any]:
    """English gold test -> MT into each language -> projected (silver) labels -> `out/<lang>/test.txt`."""
    from llmie.io import read_documents
    from llmie.mt import get_translator

    tr = get_translator(translator)
    docs = [d for d in read_documents(data_path(english), lang="en") if 0 < len(d.text) <= max_chars]
    random.Random(seed).shuffle(docs)
    docs = docs[: limit * 2]  # head-room for projection failures
    counts: dict[str, Any] = {}
    for lang in langs:
        got, failed = translate_project(docs, lang, tr, projector)
        kept = [t for _, t in got][:limit]
        n = write_conll(kept, Path(out) / lang / "test.txt")
        counts[lang] = {"written": n, "projection_failures": failed, "projector": projector,
                        "translator": getattr(tr.choose("en", lang), "name", translator)
                        if hasattr(tr, "choose") else translator}
    (Path(out) / "README.json").write_text(json.dumps({"source": str(english), "note": "labels are projected "
                                                       "(silver), not human", "counts": counts}, indent=1))
    return counts


def encoder_example(en: Document, tgt_tokens: Sequence[str], tgt_tags: Sequence[str],
                    sep: str = "||") -> tuple[list[str], list[str | None]]:
    """Encoder-only TransFusion input (paper §5): English words with `<PER> ... </PER>` around its spans,
    then `||`, then the target tokens. Labels are None (ignored, -100) left of and at `||`, BIO tags right of it."""
    from llmie.projection.words import segment

    words = segment(en.text)
    opens: dict[int, list[str]] = {}
    closes: dict[int, list[str]] = {}
    for s in en.spans:
        if s.start is None:
            continue
        inside = [i for i, w in enumerate(words) if w.start < s.end and w.end > s.start]  # type: ignore[operator]
        if inside:
            opens.setdefault(inside[0], []).append(f"<{s.label}>")
            closes.setdefault(inside[-1], []).append(f"</{s.label}>")
    toks: list[str] = []
    for i, w in enumerate(words):
        toks += opens.get(i, []) + [en.text[w.start:w.end]] + closes.get(i, [])
    labels: list[str | None] = [None] * (len(toks) + 1)
    return toks + [sep] + list(tgt_tokens), labels + list(tgt_tags)
