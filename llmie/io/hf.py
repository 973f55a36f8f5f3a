"""Bridge to Hugging Face `datasets`: llmie Documents <-> `Dataset` rows.

Users with internet pass a hub id (`masakhane/masakhaner2`-style token/tag datasets or llmie-shaped rows);
the same `load_dataset` call reads a local folder or data files, which is how it is tested here.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from llmie.io.bio import bio_to_spans, repair_iob2
from llmie.schema import Document, LlmieDataError


def to_hf_dataset(docs: Iterable[Document]):
    """A `datasets.Dataset` with the llmie JSONL columns (meta serialised as JSON to keep a fixed schema)."""
    import json

    import datasets

    rows = []
    for d in docs:
        r = d.model_dump(mode="json")
        r["meta"] = json.dumps(r["meta"], ensure_ascii=False)
        rows.append(r)
    return datasets.Dataset.from_list(rows)


def from_hf(source: Any, *, split: str = "train", name: str | None = None, lang: str | None = None,
            tokens_column: str = "tokens", tags_column: str = "ner_tags", **load_kwargs: Any) -> Iterator[Document]:
    """Documents from a `Dataset`, a hub id, a local dataset folder or a builder name ('json', data_files=...)."""
    import json

    import datasets

    ds = source
    if isinstance(source, str):
        ds = datasets.load_dataset(source, name, split=split, **load_kwargs)
    elif isinstance(source, datasets.DatasetDict):
        ds = source[split]
    names = None
    feat = ds.features.get(tags_column) if hasattr(ds, "features") else None
    inner = getattr(feat, "feature", None)
    if inner is not None and hasattr(inner, "names"):
        names = inner.names
    for i, row in enumerate(ds):
        rid = str(row.get("id", i))
        if "text" in row and "spans" in row:
            row = dict(row)
            if isinstance(row.get("meta"), str):
                row["meta"] = json.loads(row["meta"]) if row["meta"] else {}
            for k in ("relations", "events"):
                if row.get(k) is None:
                    row[k] = []
            row["id"] = rid
            try:
                yield Document.model_validate({k: row[k] for k in ("id", "text", "lang", "spans", "relations",
                                                                   "events", "meta") if k in row})
            except ValueError as e:
                raise LlmieDataError(str(e), file=str(source), line=i, record=rid) from None
            continue
        if tokens_column not in row or tags_column not in row:
            raise LlmieDataError(f"row has neither llmie columns (text, spans) nor {tokens_column!r}/{tags_column!r}; "
                                 f"columns are {sorted(row)}", file=str(source), line=i, record=rid)
        tokens = [str(t) for t in row[tokens_column]]
        tags = [names[t] if names is not None and isinstance(t, int) else str(t) for t in row[tags_column]]
        tags, fixed = repair_iob2(tags, "lenient", where=str(source))
        text = " ".join(tokens)
        offs, pos = [], 0
        for t in tokens:
            offs.append((pos, pos + len(t)))
            pos += len(t) + 1
        meta = {"tokens": tokens, "token_offsets": [list(o) for o in offs], "tags": tags}
        if fixed:
            meta["repaired_tags"] = fixed
        yield Document(id=rid, text=text, lang=lang, spans=bio_to_spans(text, offs, tags), meta=meta)
