"""Label projection as generation (`--method llm`): an LLM reads the source sentence with the span marked
and the translation, and answers `{"span": "<target words>"}`; decoding is constrained so that the
answer can only be a contiguous word n-gram of the translation, which is then grounded to word offsets.

Why constrained: a small model copies badly (drops accents, paraphrases, adds words); restricting the
answer to target substrings makes every answer groundable and turns the task into a choice.

- Candidates: contiguous word n-grams of the target (llmie word segmentation, so a span can stop at an
  apostrophe or hyphen as in the aligners) of at most `2 * source words + max_extra` words, not starting
  or ending with a punctuation word unless the source span does.
- Every backend is built by `llmie.backends.get_backend` (response cache included) and gets one
  `GenRequest(messages, choices=[answer_text(c) for c in candidates])` per span: the answer must be
  exactly one of the candidates' answers. `hf` (default; a LoRA adapter is merged at load) decodes
  greedily through a token trie of the answers, each tokenised on its own as the SFT data is
  (`llmie.backends.constraints`); `vllm` uses structured outputs (`choice`), `openai` a vLLM server's
  `structured_outputs.choice`; an answer outside the set fails the span.
- Grounding: a candidate that occurs several times in the target is placed at the occurrence closest to
  the source span's relative position.
- One request per source span; a sample fails as a whole when one of its spans fails (EXP convention).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from llmie.projection.algorithms import Projection

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "projection.v1"
_LANG_NAMES = {"eng": "English", "deu": "German", "spa": "Spanish", "fra": "French", "ita": "Italian",
               "por": "Portuguese", "rus": "Russian", "tur": "Turkish", "swe": "Swedish", "zho": "Chinese",
               "jpn": "Japanese", "nld": "Dutch", "ara": "Arabic", "hin": "Hindi", "kor": "Korean"}


@dataclass(frozen=True)
class ProjectionTemplate:
    name: str
    system: str
    user: str
    open_tag: str
    close_tag: str


@lru_cache(maxsize=8)
def load_template(name: str = DEFAULT_TEMPLATE) -> ProjectionTemplate:
    """`projection.v1` -> prompts/projection/projection.v1.yaml; a path to a .yaml file also works."""
    import yaml

    from llmie.prompts import find

    p = find(name)
    d = yaml.safe_load(p.read_text(encoding="utf-8"))
    for k in ("name", "system", "user"):
        if not isinstance(d.get(k), str):
            raise ValueError(f"{p}: key {k!r} must be a string")
    return ProjectionTemplate(d["name"], d["system"].strip(), d["user"].strip(), d.get("open_tag", "<span>"),
                              d.get("close_tag", "</span>"))


def lang_name(code: str | None) -> str:
    if not code:
        return "unknown language"
    from llmie.lang import normalize_lang

    try:
        c = normalize_lang(code).split("_")[0]
    except ValueError:
        return code
    return _LANG_NAMES.get(c, code)


def build_messages(tpl: ProjectionTemplate, src_text: str, src_start: int, src_end: int, label: str | None,
                   tgt_text: str, src_lang: str | None, tgt_lang: str | None) -> list[dict[str, str]]:
    """Chat messages for one source span (the same layout for inference and for SFT/DPO data)."""
    marked = f"{src_text[:src_start]}{tpl.open_tag}{src_text[src_start:src_end]}{tpl.close_tag}{src_text[src_end:]}"
    user = tpl.user.format(src_lang=lang_name(src_lang), tgt_lang=lang_name(tgt_lang), label=label or "span",
                           src_marked=marked, tgt_text=tgt_text)
    return [{"role": "system", "content": tpl.system}, {"role": "user", "content": user}]


def answer_text(span: str) -> str:
    """The assistant answer for a target span: exactly what the model is trained on and constrained to."""
    return json.dumps({"span": span}, ensure_ascii=False)


def parse_answer(text: str) -> str | None:
    """The `span` string of a JSON answer, or None (never evaluates anything)."""
    try:
        obj = json.loads(text.strip())
    except (json.JSONDecodeError, ValueError):
        return None
    v = obj.get("span") if isinstance(obj, dict) else None
    return v if isinstance(v, str) else None


def candidates(tgt_text: str, tgt_words, n_src_words: int, edges: tuple[bool, bool] = (False, False),
               max_extra: int = 3) -> dict[str, list[tuple[int, int]]]:
    """Candidate answer text -> its word ranges [a, b] in the target (first occurrence first)."""
    n = len(tgt_words)
    max_len = max(1, 2 * n_src_words + max_extra)
    out: dict[str, list[tuple[int, int]]] = {}
    for a in range(n):
        if tgt_words[a].punct and not edges[0]:
            continue
        for b in range(a, min(n, a + max_len)):
            if tgt_words[b].punct and not edges[1]:
                continue
            out.setdefault(tgt_text[tgt_words[a].start:tgt_words[b].end], []).append((a, b))
    if not out:  # a target made only of punctuation: allow every single word
        for a, w in enumerate(tgt_words):
            out.setdefault(tgt_text[w.start:w.end], []).append((a, a))
    return out


def place(occurrences: list[tuple[int, int]], n_tgt: int, src_rel: float) -> tuple[int, int]:
    """The occurrence whose centre is closest to the source span's relative position."""
    n = max(1, n_tgt)
    return min(occurrences, key=lambda ab: (abs((ab[0] + ab[1]) / 2 / n - src_rel), ab[0]))


@dataclass
class _Job:
    messages: list[dict[str, str]]
    cands: dict[str, list[tuple[int, int]]]
    n_tgt: int
    rel: float


@dataclass
class LLMProjector:
    """`project_batch` for `llmie.projection.project`; see the module docstring."""

    model: str = "embedded"
    adapter: str | None = None
    backend: str = "hf"
    template: str = DEFAULT_TEMPLATE
    batch_size: int = 8
    max_extra: int = 3
    api_base: str | None = None
    cache: bool | str = True  # response cache (llmie.backends.cache): True = default file, a path, False = off
    stats: dict[str, Any] = field(default_factory=lambda: {"requests": 0, "candidates": 0, "outside": 0,
                                                            "errors": 0, "seconds": 0.0})

    def __post_init__(self) -> None:
        self.tpl = load_template(self.template)
        if self.adapter:
            from llmie.models import peft_adapter

            peft_adapter(self.adapter, "adapter")
        from llmie.backends import get_backend

        if self.backend == "hf":
            from llmie.projection.encoder import fast_dtype

            # bf16 where native (~2x on CPU); the adapter merged into the weights (no LoRA overhead)
            kw: dict[str, Any] = dict(dtype=fast_dtype(), adapter=self.adapter, batch_size=self.batch_size)
        elif self.backend in ("vllm", "openai"):
            kw = {"api_base": self.api_base} if self.api_base else {}
        else:
            raise ValueError(f"unknown backend {self.backend!r} for --method llm; expected hf, vllm or openai")
        self._be = get_backend(self.backend, self.model, cache=self.cache, **kw)

    def _generate(self, jobs: list[_Job]) -> list[str | None]:
        """One choice-constrained request per job; the answered span text, or None."""
        from llmie.backends import GenRequest

        reqs = []
        for j in jobs:
            answers = [answer_text(t) for t in j.cands]
            longest = max(len(self._tok_len(a)) for a in answers)
            reqs.append(GenRequest(messages=j.messages, choices=answers, max_tokens=longest + 16,
                                   lora=None if self.backend == "hf" else self.adapter))
        out: list[str | None] = []
        for r in self._be.generate(reqs):
            if not r.ok:
                self.stats["errors"] += 1
                out.append(None)
            else:
                out.append(parse_answer(r.text))
        return out

    def close(self) -> None:
        self._be.close()

    def _tok_len(self, text: str) -> list[int]:
        """Token ids of an answer (bounds ``max_tokens``); openai has no local tokenizer."""
        if not hasattr(self, "_count_tok"):
            self._count_tok = getattr(self._be, "tokenizer", None) if self.backend == "hf" else None
            if self.backend == "vllm":
                from transformers import AutoTokenizer

                from llmie.models import resolve_llm

                self._count_tok = AutoTokenizer.from_pretrained(resolve_llm(self.model))
        if self._count_tok is None:
            return [0] * (len(text) + 8)  # characters bound tokens
        return self._count_tok(text, add_special_tokens=False)["input_ids"]

    # ------------------------------------------------------------------ projection
    def jobs_for(self, p) -> list[_Job]:
        """One generation job per source span of a Prepared pair."""
        pair = p.pair
        jobs = []
        for i, span in enumerate(pair.src.spans):
            c = candidates(pair.tgt_text, p.tgt_words, len(p.src_span_words[i]), p.edges[i], self.max_extra)
            jobs.append(_Job(build_messages(self.tpl, pair.src.text, span.start, span.end, span.label,
                                            pair.tgt_text, pair.src.lang, pair.tgt_lang),
                             c, len(p.tgt_words), p.src_rel[i]))
        return jobs

    def project_batch(self, todo: list, bridge: bool = True, best_run: bool = True) -> list[Projection]:
        t0 = time.perf_counter()
        jobs, owner = [], []
        for k, p in enumerate(todo):
            for j in self.jobs_for(p):
                jobs.append(j)
                owner.append(k)
        answers = self._generate(jobs)
        per: list[list[tuple[int, int] | str]] = [[] for _ in todo]
        for j, k, a in zip(jobs, owner, answers):
            self.stats["requests"] += 1
            self.stats["candidates"] += len(j.cands)
            if a is None or a not in j.cands:
                self.stats["outside"] += a is not None
                per[k].append("answer is not a substring candidate of the target" if a is not None
                              else "no parseable answer")
            else:
                per[k].append(place(j.cands[a], j.n_tgt, j.rel))
        self.stats["seconds"] += time.perf_counter() - t0
        out = []
        for spans in per:
            bad = [(i, s) for i, s in enumerate(spans) if isinstance(s, str)]
            out.append(Projection(None, f"span {bad[0][0]}: {bad[0][1]}") if bad
                       else Projection(tuple(spans)))  # type: ignore[arg-type]
        return out
