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
from collections.abc import Callable, Sequence
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


def seed_records(src_docs: Sequence[Document], langs: Sequence[str], *, n_train: int, n_dev: int, seed: int,
                 src_lang: str = "eng") -> list[Document]:
    """The work list: one English seed per (target language, split, sampled document), id `doc>lang`.

    Seeds are plain Documents (meta: tgt_lang, split, src_id) so both engines of `llmie.scale` can carry them.
    """
    out = []
    for lang in langs:
        train, dev = sample_split(src_docs, n_train, n_dev, seed, lang)
        for split, docs in (("train", train), ("dev", dev)):
            out.extend(Document(id=f"{d.id}>{lang}", text=d.text, lang=src_lang, spans=d.spans,
                                meta={"src_id": d.id, "tgt_lang": lang, "split": split}) for d in docs)
    return out


def _pair(seed: Document, tgt_text: str, dataset: str) -> ProjectionPair:
    src = Document(id=seed.meta["src_id"], text=seed.text, lang=seed.lang, spans=seed.spans)
    return ProjectionPair(id=seed.id, src=src, tgt_text=tgt_text, tgt_lang=seed.meta["tgt_lang"],
                          meta={"dataset": dataset, "split": seed.meta["split"]})


def synth_batch(seeds: Sequence[Document], translator, aligner, *, verify: bool = True,
                dataset: str = "synthetic") -> list[Document]:
    """Translate + propose (Alg. 1) + verify (Alg. 2) one batch of seeds: one output per seed, in order.

    The output is the target side as a Document: text = the translation, spans = the kept (status ok) or
    the rejected proposal's spans, meta.status ok | rejected | failed with the reason. This is the unit both
    `--engine local` and `--engine ray` run (llmie.scale.jobs.Runner), so the engines cannot drift apart.
    """
    tgt: dict[int, str] = {}
    by_lang: dict[str, list[int]] = {}
    for i, s in enumerate(seeds):
        by_lang.setdefault(s.meta["tgt_lang"], []).append(i)
    for lang, idx in by_lang.items():  # one MT batch per target language
        for i, t in zip(idx, translator.translate([seeds[i].text for i in idx], seeds[idx[0]].lang, lang)):
            tgt[i] = t
    pairs = [_pair(s, tgt[i], dataset) for i, s in enumerate(seeds)]
    out = []
    for s, p, r in zip(seeds, pairs, propose_and_verify(pairs, aligner, verify)):
        meta = {"status": r[0], "split": s.meta["split"], "src_id": s.meta["src_id"]}
        spans = r[1] if r[0] == "ok" else r[2] if r[0] == "rejected" else []
        if r[0] != "ok":
            meta["reason"] = r[1]
        out.append(Document(id=s.id, text=p.tgt_text, lang=p.tgt_lang, spans=spans, meta=meta))
    return out


def write_points(seeds: Sequence[Document], outputs: Sequence[Document], out_dir: Path, *, verify: bool = True,
                 dataset: str = "synthetic") -> dict[str, Any]:
    """`train|dev|rejected.<lang>.jsonl` (EXP-style) and per-language counts from the per-seed outputs."""
    from llmie.io.atomic import write_jsonl_atomic

    got = {o.id: o for o in outputs}
    missing = [s.id for s in seeds if s.id not in got]
    if missing:
        raise RuntimeError(f"{len(missing)} seeds have no synthesis output (first: {missing[0]!r}); rerun to resume")
    counts: dict[str, Any] = {}
    files: dict[tuple[str, str], list[dict]] = {}
    for s in seeds:
        lang, split, o = s.meta["tgt_lang"], s.meta["split"], got[s.id]
        c = counts.setdefault(lang, {"seeds": 0, "proposed": 0, "failed": 0, "rejected": 0, "kept": 0, "points": 0})
        for key in ((lang, "train"), (lang, "dev"), (lang, "rejected")):
            files.setdefault(key, [])
        p, status = _pair(s, o.text, dataset), o.meta.get("status")
        c["seeds"] += 1
        if status == "ok":
            c["proposed"] += 1
            c["kept"] += 1
            c["points"] += len(o.spans)
            files[(lang, split)].append(pair_to_dict(p, o.spans) | {"meta": {"split": split, "verified": verify}})
        elif status == "rejected":
            c["proposed"] += 1
            c["rejected"] += 1
            files[(lang, "rejected")].append(pair_to_dict(p, o.spans) | {
                "meta": {"split": split, "status": "rejected", "reason": o.meta.get("reason")}})
        else:
            c["failed"] += 1
            files[(lang, "rejected")].append(pair_to_dict(p, None) | {
                "meta": {"split": split, "status": "failed", "reason": o.meta.get("reason")}})
    out_dir.mkdir(parents=True, exist_ok=True)
    for (lang, name), rows in files.items():
        write_jsonl_atomic(rows, out_dir / f"{name}.{lang}.jsonl")
    return counts


def synthesize(src_docs: Sequence[Document], langs: Sequence[str], out_dir: Path, *, translator: str = "auto",
               proposer: str = "binary", src_lang: str = "eng", n_train: int = 1000, n_dev: int = 100,
               seed: int = 13, verify: bool = True, dataset: str = "synthetic", engine: str = "local",
               chunk: int = 256, workers: int = 2, address: str | None = None, mt_cache: str | None = None,
               progress=None, num_gpus: float = 0.0) -> dict[str, Any]:
    """{"counts": per-language counts, "run": engine stats}. The PVP synthesis pipeline over `llmie.scale`: seeds -> `synth` job (local or Ray Data actors, each
    loading the MT engine and the proposer once) -> per-seed outputs in `OUT/synth.jsonl` -> point files.

    Resumable with either engine: the local engine skips seeds already in `OUT/synth.jsonl`, the Ray engine
    skips finished shards in `OUT/synth.jsonl.shards/`. A rerun into the same OUT with other settings is
    refused (it would mix two samples).
    """
    import json

    from llmie.scale import run
    from llmie.scale.jobs import synth_job

    seeds = seed_records(src_docs, langs, n_train=n_train, n_dev=n_dev, seed=seed, src_lang=src_lang)
    job = synth_job(translator, proposer, verify=verify, dataset=dataset, mt_cache=mt_cache)
    settings = {"job": job, "n_train": n_train, "n_dev": n_dev, "seed": seed, "langs": list(langs),
                "n_src": len(src_docs), "chunk": chunk}
    out_dir.mkdir(parents=True, exist_ok=True)
    marker, outputs = out_dir / "synth.settings.json", out_dir / "synth.jsonl"
    if outputs.exists():
        prev = json.loads(marker.read_text(encoding="utf-8")) if marker.exists() else {}
        if {k: v for k, v in prev.items() if k != "engine"} != settings:
            raise ValueError(f"{out_dir} holds synthesis outputs of other settings ({marker}); use another --out "
                             "or remove that folder")
    from llmie.io.atomic import atomic_write_json

    atomic_write_json(settings | {"engine": engine}, marker)
    st = run(job, seeds, outputs, engine=engine, chunk=chunk, workers=workers, address=address, resume=True,
             progress=progress, num_gpus=num_gpus)
    from llmie.io import read_jsonl

    outs = list(read_jsonl(outputs))
    counts = write_points(seeds, outs, out_dir, verify=verify, dataset=dataset)
    keep = ("engine", "n", "seconds", "workers", "gpus_per_worker", "shards", "skipped_done", "skipped_shards", "redone_shards")
    return {"counts": counts, "kinds": kind_mix(seeds, outs), "run": {k: st[k] for k in keep if k in st}}


def kind_mix(seeds: Sequence[Document], outputs: Sequence[Document]) -> dict[str, dict[str, dict[str, int]]]:
    """Per language and seed span kind (NAME, NP, COMPOUND, NUM, DATE, ARG): seed spans, and how many were in
    seeds whose point was kept, rejected by the verifier, or failed."""
    from llmie.projection.seeds import kind_of

    got = {o.id: o.meta.get("status") for o in outputs}
    mix: dict[str, dict[str, dict[str, int]]] = {}
    for sd in seeds:
        status = {"ok": "kept", "rejected": "rejected"}.get(got.get(sd.id), "failed")
        per = mix.setdefault(sd.meta["tgt_lang"], {})
        for sp in sd.spans:
            c = per.setdefault(kind_of(sp.label), {"spans": 0, "kept": 0, "rejected": 0, "failed": 0})
            c["spans"] += 1
            c[status] += 1
    return {lang: dict(sorted(v.items())) for lang, v in mix.items()}


# English closed-class words: a phrase whose English side starts or ends with one is not span-like
ENGLISH_FUNCTION_WORDS = frozenset("""a an the this that these those my your his her its our their of to in on at
by for with from into onto about as than and or but nor so if then because while whether which who whom whose
what where when how not no is are was were be been being am do does did have has had will would shall should can
could may might must it i you he she we they me him us them there here also very just only""".split())


def _content_edged(tokens: list[str], a: int, b: int) -> bool:
    return tokens[a].lower() not in ENGLISH_FUNCTION_WORDS and tokens[b].lower() not in ENGLISH_FUNCTION_WORDS


def phrases_from_alignment(sents: Sequence[AlignedSentence], max_len: int = 4, per_sentence: int = 2,
                           seed: int = 13, label: str = "PHRASE",
                           english: str | None = None) -> list[ProjectionPair]:
    """Pairs from gold word alignments: source phrases (<= max_len words) whose sure+possible links form a
    contiguous, consistent target phrase (no target word inside it links outside the source phrase).

    `english` ("src" | "tgt"): keep only phrases whose English side neither starts nor ends with a function
    word ("of the house" -> "de la maison" is a correct alignment but not a span anyone projects: entity,
    term and aspect spans start and end with content words, and such phrases teach the projector to take
    the target's article)."""
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
                if english == "src" and not _content_edged(s.src_tokens, i, j) or \
                        english == "tgt" and not _content_edged(s.tgt_tokens, tg[0], tg[-1]):
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


# ---- corpus runs (llmie.scale): load once, then records -> Documents; RUNNERS["synth"] in llmie/scale/jobs.py

def job_runner(job: dict[str, Any]) -> tuple[Callable[[list], list[Document]], Callable[[], None]]:
    import torch

    from llmie.mt import get_translator
    from llmie.projection.project import get_aligner

    torch.set_num_threads(max(1, int(job.get("threads", 1))))
    cache = job.get("mt_cache")
    off = isinstance(cache, str) and cache.lower() == "none"
    tr = get_translator(job["translator"], cache=not off, cache_path=None if off else cache)
    aligner = get_aligner(job["proposer"], "embedded")
    return (lambda seeds: synth_batch(seeds, tr, aligner, verify=job["verify"], dataset=job["dataset"])), \
        getattr(tr, "close", lambda: None)
