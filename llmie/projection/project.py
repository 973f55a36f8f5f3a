"""Label projection: `project(pairs, method=...)` -> one target Document per pair, with a status.

Span texts are always the original target substring from the first to the last projected word.
A sample fails as a whole (status `failed` + reason) when any of its spans cannot be projected.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from functools import lru_cache

from llmie.projection.algorithms import Projection, algorithm1
from llmie.projection.words import Word, segment, words_in_span
from llmie.registry import Entry, Registry
from llmie.schema import Document, ProjectionPair, Span

# One line per projection method (llmie.registry): a new method is a class with `word_alignments(...)`
# (word-alignment methods, Algorithm 1 projects) or `project_batch(prepared, bridge=, best_run=)`, and a line here.
METHODS = Registry("projection method", {
    "awesome": Entry("llmie.projection.awesome:AwesomeAligner", accepts=("device",), help="similarity word alignment (awesome-align)"),
    "binary": Entry("llmie.projection.binary:BinaryAligner", accepts=("adapter", "device"),
                    help="BinaryAlign-style trained word aligner"),
    "binary-w": Entry("llmie.projection.binary:BinaryAligner", {"symmetric": True}, accepts=("adapter", "device"),
                      help="binary, symmetrised"),
    "pvp": Entry("llmie.projection.pvp:PVPProjector", accepts=("adapter", "device"), help="PVP span projector"),
    "llm": Entry("llmie.projection.llm:LLMProjector", accepts=("adapter", "backend"),
                 help="label projection as constrained LLM generation"),
})


@lru_cache(maxsize=4)
def get_aligner(method: str, model: str = "embedded", **kwargs):
    """The method's aligner/projector, loaded once per (method, model, options) in this process."""
    return METHODS.create(method, model, **kwargs)


def load_projector(method: str, model: str = "embedded", *, batch_size: int = 32, best_run: bool = True,
                   elision: bool = False, **options) -> Callable[[list[ProjectionPair]], list[Document]]:
    """pairs -> target Documents, with the model loaded now (a bad model fails before any record, and
    timings exclude the load). ``options`` (adapter, backend, ...) reach the methods that accept them."""
    kw = METHODS.options(method, **options)
    get_aligner(method, model, **kw)
    return lambda pairs: list(project(pairs, method, model, batch_size=batch_size, best_run=best_run,
                                      elision=elision, **kw))


@dataclass
class Prepared:
    pair: ProjectionPair
    src_words: list[Word]
    tgt_words: list[Word]
    src_span_words: list[list[int]]
    error: str | None = None

    @property
    def edges(self) -> list[tuple[bool, bool]]:
        """Per source span: does it start / end with punctuation (then `bridge` keeps target edge punctuation)."""
        return [(bool(t) and not t[0].isalnum(), bool(t) and not t[-1].isalnum())
                for t in (s.text for s in self.pair.src.spans)]

    @property
    def src_rel(self) -> list[float]:
        """Relative position (0-1) of each source span's centre word in its sentence."""
        n = max(1, len(self.src_words))
        return [(ws[0] + ws[-1]) / 2 / n if ws else 0.5 for ws in self.src_span_words]


def prepare(pair: ProjectionPair) -> Prepared:
    sw, tw = segment(pair.src.text), segment(pair.tgt_text)
    spans = [words_in_span(sw, s.start, s.end) for s in pair.src.spans]  # type: ignore[arg-type]
    err = None
    if not pair.tgt_text.strip():
        err = "empty target text"
    elif not pair.src.spans:
        err = "no source spans"
    elif any(not ws for ws in spans):
        err = "a source span covers no word"
    return Prepared(pair, sw, tw, spans, err)


_APOSTROPHES = {"'", "\u2019"}


def elision_start(text: str, words: list[Word], a: int) -> int:
    """Start word of a span, moved left over an elided article glued to it (`l'`, `d'`, `L'`, `dell'`).

    French/Italian/Catalan gold spans keep the whole written token ("l'atmosphère" for "atmosphere");
    the aligner links the noun only. A 1-4 letter piece + apostrophe in the same whitespace token, at its
    start, is taken in; suffixes (Turkish `Michigan'daki`) are untouched.
    """
    if a >= 2:
        ap, art = words[a - 1], words[a - 2]
        if (ap.group == art.group == words[a].group and text[ap.start:ap.end] in _APOSTROPHES
                and not art.punct and art.end - art.start <= 4 and text[art.start:art.end].isalpha()
                and (a == 2 or words[a - 3].group != art.group)):
            return a - 2
    return a


def to_document(p: Prepared, proj: Projection | None, reason: str | None = None, elision: bool = False) -> Document:
    pair = p.pair
    meta = {"status": "ok", "src_lang": pair.src.lang}
    spans: list[Span] = []
    if proj is None or not proj.ok:
        meta = {**meta, "status": "failed", "reason": reason or (proj.reason if proj else "failed")}
    else:
        for (a, b), src in zip(proj.spans, pair.src.spans):  # type: ignore[union-attr]
            if elision:
                a = elision_start(pair.tgt_text, p.tgt_words, a)
            s, e = p.tgt_words[a].start, p.tgt_words[b].end
            spans.append(Span(start=s, end=e, label=src.label, text=pair.tgt_text[s:e]))
    return Document(id=pair.id, text=pair.tgt_text, lang=pair.tgt_lang, spans=spans, meta=meta)


def project(pairs: Iterable[ProjectionPair], method: str = "awesome", model: str = "embedded",
            batch_size: int = 32, bridge: bool = True, best_run: bool = True, elision: bool = False,
            **kwargs) -> Iterator[Document]:
    """Project the source spans of each pair onto its target text, in input order, batch by batch.

    `bridge` and `best_run` are llmie's documented deviations from the paper's algorithms (see
    algorithms.py); `best_run` applies to the probability-based methods (binary, pvp). `elision` takes an
    elided article glued to a span's first word into the span (`l'atmosphère`), a dataset convention
    (ABSA-EXP fr yes, RELX/Europarl no).
    """
    aligner = get_aligner(method, model, **kwargs)
    batch: list[Prepared] = []

    def flush() -> Iterator[Document]:
        todo = [p for p in batch if p.error is None]
        if hasattr(aligner, "project_batch"):
            results = aligner.project_batch(todo, bridge=bridge, best_run=best_run)
        else:
            results = _word_alignment_projection(aligner, todo, bridge)
        res = dict(zip((id(p) for p in todo), results))
        for p in batch:
            if p.error is not None:
                yield to_document(p, None, p.error)
            else:
                r = res[id(p)]
                yield to_document(p, r if isinstance(r, Projection) else None,
                                  None if isinstance(r, Projection) else str(r), elision=elision)
        batch.clear()

    for pair in pairs:
        batch.append(prepare(pair))
        if len(batch) >= batch_size:
            yield from flush()
    if batch:
        yield from flush()


def _word_alignment_projection(aligner, todo: list[Prepared], bridge: bool) -> list[Projection | Exception]:
    mats = aligner.word_alignments([(p.pair.src.text, p.pair.tgt_text) for p in todo],
                                   [p.src_words for p in todo], [p.tgt_words for p in todo])
    out: list[Projection | Exception] = []
    for p, a in zip(todo, mats):
        if isinstance(a, Exception):
            out.append(a)
            continue
        out.append(algorithm1(a, p.src_span_words, p.tgt_words, p.edges, bridge=bridge))
    return out


# ---- corpus runs (llmie.scale): load once, then records -> Documents; RUNNERS["project"] in llmie/scale/jobs.py

def job_runner(job: dict[str, Any]) -> tuple[Callable[[list], list[Document]], Callable[[], None]]:
    import torch


    torch.set_num_threads(max(1, int(job.get("threads", 1))))
    try:
        fn = load_projector(job["method"], job["model"], batch_size=job["batch_size"], best_run=job["best_run"],
                            elision=job["elision"], adapter=job.get("adapter"), backend=job.get("backend", "hf"),
                            device=job.get("device"))
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as e:
        raise RuntimeError(f"cannot load the {job['method']} projector ({job['model']}): {e}") from e
    return fn, lambda: None
