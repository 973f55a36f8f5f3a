"""Readers and writers. `read_documents(path)` picks the reader from the file name."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from llmie.io.alignment import AlignedSentence, read_alignment
from llmie.io.bio import bio_to_spans, doc_tags, repair_iob2, spans_to_bio
from llmie.io.conll import read_conll, read_conllu, read_iob2
from llmie.io.exp import pair_target_document, read_exp, write_exp
from llmie.io.hf import from_hf, to_hf_dataset
from llmie.io.atomic import write_json_atomic
from llmie.io.jsonl import iter_json_lines, read_jsonl, write_jsonl
from llmie.schema import Document

__all__ = ["AlignedSentence", "bio_to_spans", "doc_tags", "from_hf", "is_exp_file", "iter_json_lines",
           "pair_target_document", "read_alignment", "read_conll", "read_conllu", "read_documents", "read_exp",
           "read_iob2", "read_jsonl", "repair_iob2", "spans_to_bio", "to_hf_dataset", "write_exp",
           "write_json_atomic", "write_jsonl"]


def is_exp_file(path: str | Path) -> bool:
    """True if the first record of a JSONL file is an EXP pair (has src_text/tgt_text)."""
    from llmie.io.jsonl import json_lines

    for _, obj in json_lines(path):  # the first readable record decides; bad lines are the reader's business
        if isinstance(obj, dict):
            return "src_text" in obj and "tgt_text" in obj
    return False


def read_documents(path: str | Path, *, lang: str | None = None) -> Iterator[Document]:
    """Documents from llmie JSONL, EXP JSONL (target side with gold spans), .iob2, .conllu or CoNLL text."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".json"):
        if is_exp_file(p):
            return (pair_target_document(pair) for pair in read_exp(p))
        return read_jsonl(p)
    if suffix == ".iob2":
        return read_iob2(p, lang=lang)
    if suffix == ".conllu":
        return read_conllu(p, lang=lang)
    return read_conll(p, lang=lang)
