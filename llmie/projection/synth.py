"""PVP synthetic data: English spans -> translation -> proposer (Alg. 1) -> verifier (Alg. 2) -> points.

Per target language, up to `n_train` / `n_dev` seed sentences are re-sampled independently (the
paper's language-wise sampling; fixed seeds across languages made the data repetitive). Points are
written as EXP-style JSONL (`train.<lang>.jsonl`, `dev.<lang>.jsonl`), with counts of proposed,
failed and rejected samples; rejected and failed proposals go to `rejected.<lang>.jsonl` (DPO uses
them). `phrases_from_alignment` turns gold word-aligned parallel text into more points.
"""
from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmie.io import AlignedSentence
from llmie.io.exp import pair_to_dict
from llmie.projection.algorithms import algorithm1, algorithm2
from llmie.projection.project import prepare
from llmie.schema import Document, ProjectionPair, Span


def _rng(seed: int, lang: str) -> random.Random:
    return random.Random(seed * 1_000_003 + zlib.crc32(lang.encode()))


def sample_split(docs: Sequence[Document], n_train: int, n_dev: int, seed: int, lang: str):
    """Independent per-language sample of train and (disjoint) dev seed documents."""
    pool = [d for d in docs if d.spans and d.text.strip()]
    rng = _rng(seed, lang)
    idx = list(range(len(pool)))
    rng.shuffle(idx)
    dev = [pool[i] for i in idx[:n_dev]]
    train = [pool[i] for i in idx[n_dev:n_dev + n_train]]
    return train, dev


def propose_and_verify(pairs: list[ProjectionPair], aligner, verify: bool = True, bridge: bool = True):
    """For each pair: ('ok', target spans) | ('failed', reason) | ('rejected', reason, proposed spans)."""
    prepped = [prepare(p) for p in pairs]
    todo = [p for p in prepped if p.error is None]
    fwd = aligner.word_alignments([(p.pair.src.text, p.pair.tgt_text) for p in todo],
                                  [p.src_words for p in todo], [p.tgt_words for p in todo])
    bwd = aligner.word_alignments([(p.pair.tgt_text, p.pair.src.text) for p in todo],
                                  [p.tgt_words for p in todo], [p.src_words for p in todo]) if verify else fwd
    res: dict[int, tuple] = {}
    for p, a, b in zip(todo, fwd, bwd):
        if isinstance(a, Exception) or isinstance(b, Exception):
            res[id(p)] = ("failed", str(a if isinstance(a, Exception) else b))
            continue
        edges = p.edges
        first = algorithm1(a, p.src_span_words, p.tgt_words, edges, bridge=bridge)
        if not first.ok:
            res[id(p)] = ("failed", first.reason)
            continue
        if verify:
            checked = algorithm2(a, b, p.src_span_words, p.tgt_words, edges, bridge=bridge)
            if not checked.ok:
                res[id(p)] = ("rejected", checked.reason, _spans(p, first.spans))
                continue
        res[id(p)] = ("ok", _spans(p, first.spans))
    return [res.get(id(p), ("failed", p.error)) for p in prepped]


def _spans(p, ranges) -> list[Span]:
    out = []
    for (a, b), s in zip(ranges, p.pair.src.spans):
        st, en = p.tgt_words[a].start, p.tgt_words[b].end
        out.append(Span(start=st, end=en, label=s.label, text=p.pair.tgt_text[st:en]))
    return out


def synthesize(src_docs: Sequence[Document], langs: Sequence[str], out_dir: Path, translator, aligner, *,
               src_lang: str = "eng", n_train: int = 1000, n_dev: int = 100, seed: int = 13,
               verify: bool = True, dataset: str = "synthetic") -> dict[str, Any]:
    import json

    from llmie.io.atomic import atomic_write_json, write_jsonl_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, Any] = {}
    for lang in langs:
        # resumable per language: a finished language leaves a marker with its counts and settings; a rerun
        # with the same --out and settings skips it (files are written atomically, so no half file remains)
        marker = out_dir / f".done.{lang}.json"
        settings = {"n_train": n_train, "n_dev": n_dev, "seed": seed, "verify": verify, "n_src": len(src_docs)}
        if marker.exists():
            prev = json.loads(marker.read_text(encoding="utf-8"))
            if prev.get("settings") == settings:
                counts[lang] = prev["counts"]
                continue
        train, dev = sample_split(src_docs, n_train, n_dev, seed, lang)
        c = {"seeds": 0, "proposed": 0, "failed": 0, "rejected": 0, "kept": 0, "points": 0}
        rejected_rows = []
        for split, docs in (("train", train), ("dev", dev)):
            tgt = translator.translate([d.text for d in docs], src_lang, lang)
            pairs = [ProjectionPair(id=f"{d.id}>{lang}", src=Document(id=d.id, text=d.text, lang=src_lang,
                                                                      spans=d.spans),
                                    tgt_text=t, tgt_lang=lang, meta={"dataset": dataset, "split": split})
                     for d, t in zip(docs, tgt)]
            rows = []
            for p, r in zip(pairs, propose_and_verify(pairs, aligner, verify)):
                c["seeds"] += 1
                if r[0] == "ok":
                    c["proposed"] += 1
                    c["kept"] += 1
                    c["points"] += len(r[1])
                    rows.append(pair_to_dict(p, r[1]) | {"meta": {"split": split, "verified": verify}})
                elif r[0] == "rejected":
                    c["proposed"] += 1
                    c["rejected"] += 1
                    rejected_rows.append(pair_to_dict(p, r[2]) | {"meta": {"split": split, "status": "rejected",
                                                                          "reason": r[1]}})
                else:
                    c["failed"] += 1
                    rejected_rows.append(pair_to_dict(p, None) | {"meta": {"split": split, "status": "failed",
                                                                          "reason": r[1]}})
            write_jsonl_atomic(rows, out_dir / f"{split}.{lang}.jsonl")
        write_jsonl_atomic(rejected_rows, out_dir / f"rejected.{lang}.jsonl")
        counts[lang] = c
        atomic_write_json({"settings": settings, "counts": c}, marker)
    return counts


def phrases_from_alignment(sents: Sequence[AlignedSentence], max_len: int = 4, per_sentence: int = 2,
                           seed: int = 13, label: str = "PHRASE") -> list[ProjectionPair]:
    """Pairs from gold word alignments: source phrases (<= max_len words) whose sure+possible links form a
    contiguous, consistent target phrase (no target word inside it links outside the source phrase)."""
    rng = random.Random(seed)
    out = []
    for s in sents:
        links = s.possible
        cands = []
        for i in range(len(s.src_tokens)):
            for j in range(i, min(len(s.src_tokens), i + max_len)):
                tg = sorted({t for a, t in links if i <= a <= j})
                if not tg or tg[-1] - tg[0] + 1 != len(tg):
                    continue
                if any(a < i or a > j for a, t in links if tg[0] <= t <= tg[-1]):
                    continue
                if not all(any(a == k for a, _ in links) for k in range(i, j + 1)):
                    continue
                if not any(ch.isalnum() for ch in " ".join(s.src_tokens[i:j + 1])):
                    continue
                cands.append(((i, j), (tg[0], tg[-1])))
        rng.shuffle(cands)
        chosen: list[tuple[tuple[int, int], tuple[int, int]]] = []
        for c in cands:
            if len(chosen) >= per_sentence:
                break
            if all(c[0][1] < d[0][0] or c[0][0] > d[0][1] for d in chosen) and \
                    all(c[1][1] < d[1][0] or c[1][0] > d[1][1] for d in chosen):
                chosen.append(c)
        if not chosen:
            continue
        (src_text, so), (tgt_text, to) = _join(s.src_tokens), _join(s.tgt_tokens)
        ss, ts = [], []
        for (i, j), (k, m) in chosen:
            a, b = so[i][0], so[j][1]
            c, d = to[k][0], to[m][1]
            ss.append(Span(start=a, end=b, label=label, text=src_text[a:b]))
            ts.append(Span(start=c, end=d, label=label, text=tgt_text[c:d]))
        out.append(ProjectionPair(id=s.id, src=Document(id=s.id, text=src_text, spans=ss), tgt_text=tgt_text,
                                  gold_tgt_spans=ts, meta={"dataset": "gold-alignment"}))
    return out


def _join(tokens: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """Text and token offsets; scripts written without spaces (Han, Kana) are joined without them."""
    import regex

    nospace = sum(bool(regex.search(r"[\p{Han}\p{Hiragana}\p{Katakana}]", t)) for t in tokens) > len(tokens) / 2
    sep = "" if nospace else " "
    offs, pos = [], 0
    for t in tokens:
        offs.append((pos, pos + len(t)))
        pos += len(t) + len(sep)
    return sep.join(tokens), offs
