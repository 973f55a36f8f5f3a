"""LLM TOPRO (zero-shot, the paper's §A.5 prompt): one question per word, answered by the next token.

Two modes, as in the authors' code:
- ``score``: next-token logits restricted to the first sub-token of each verbalizer word (one forward
  pass per prompt, no decoding); argmax over the label words.
- ``generate``: greedy ``max_new_tokens`` tokens, then a case-insensitive substring match of each
  verbalizer word; as in the authors' code the last label (in verbalizer order) that matches wins and
  no match is the extra class ``<none>`` (always wrong for token F1; read as O for seqeval).

Prompt order is sentence first: ``prefix`` = tag list + sentence (shared by the m prompts of a sentence),
``question`` = the per-word part. The backend comes from ``llmie.backends.get_backend`` (see
:func:`build`; the response cache answers reruns of ``generate`` mode). ``hf`` scores with
``HFBackend.score_next_token(..., prefix_groups=sentence ids)``: the longest common token prefix of a
sentence's m prompts (tag list + sentence + the question's fixed start) runs once into a KV cache that
is repeated m times, so only the short remainders (`` w in the sentence is``) run m times. ``vllm``
relies on the engine's automatic prefix caching (``enable_prefix_caching``) and restricts the one
sampled token with ``allowed_token_ids`` (``VLLMBackend.pick_next_token``). ``cost`` counts prompts,
forward passes, tokens run through the model and seconds, so reuse can be compared with no reuse and
with one sentence-level prompt.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from llmie.topro.decompose import Cost, Prompt, Template, decompose, llm_parts, recompose
from llmie.topro.verbalizer import resolve_verbalizer

NONE = "<none>"


def build(template: Template, model: str = "embedded", backend: str = "hf", *, reuse_prefix: bool = True,
          mark: bool = False, cache: bool | str = True) -> LLMTopro:
    """LLM TOPRO over ``get_backend(backend, model)`` (response cache included; ``cache=False`` turns it
    off). hf batches 16 prompts; vllm's automatic prefix caching follows ``reuse_prefix``."""
    from llmie.backends import get_backend

    if backend == "hf":
        kw: dict[str, Any] = {"batch_size": 16}
    elif backend == "vllm":
        kw = {"enable_prefix_caching": reuse_prefix}
    else:
        raise ValueError(f"LLM TOPRO backend must be hf or vllm, got {backend!r}")
    return LLMTopro(template, get_backend(backend, model, cache=cache, **kw), mark=mark)


class LLMTopro:
    """Zero-shot TOPRO over a causal LM (``backend``: hf or vllm from ``get_backend``, cached or not)."""

    def __init__(self, template: Template, backend, *, mark: bool = False) -> None:
        self.template = template
        self.backend = backend
        self.mark = mark
        self.tokenizer = backend.tokenizer if hasattr(backend, "tokenizer") else backend.llm.get_tokenizer()
        self.verb = resolve_verbalizer(template, self.tokenizer, first_piece=True)
        self.labels = self.verb.labels

    # ------------------------------------------------------------------ prompts

    def prompts(self, sents: Sequence[Sequence[str]]) -> tuple[list[Prompt], list[tuple[str, str]]]:
        ps = decompose(sents, mark=self.mark, mark_chars=self.template.mark)
        return ps, [llm_parts(self.template, p, self.verb.words) for p in ps]

    def _ids(self, parts: list[tuple[str, str]]) -> tuple[list[list[int]], list[list[int]]]:
        """Prefix and question token ids, tokenized apart (the prefix ends in a newline: a clean cut)."""
        tok = self.tokenizer
        cache: dict[str, list[int]] = {}
        pre, q = [], []
        for a, b in parts:
            if a not in cache:
                cache[a] = list(tok(a, add_special_tokens=True)["input_ids"])
            pre.append(cache[a])
            q.append(list(tok(b, add_special_tokens=False)["input_ids"]))
        return pre, q

    # ------------------------------------------------------------------ scoring (hf)

    def score(self, sents: Sequence[Sequence[str]], *, reuse_prefix: bool = True,
              batch_size: int = 32) -> tuple[list[list[str]], Cost, Any]:
        """Tags by restricted next-token scoring; returns (tags, cost, log-prob tensor [prompts, labels])."""
        import torch

        if getattr(self.backend, "name", "") == "vllm":
            return self._score_vllm(sents)
        ps, parts = self.prompts(sents)
        pre, q = self._ids(parts)
        cost = Cost(sentences=len(sents), words=sum(len(s) for s in sents), prompts=len(ps))
        st: dict[str, int] = {}
        t0 = time.perf_counter()
        lp_all = self.backend.score_next_token([pre[i] + q[i] for i in range(len(ps))], list(self.verb.token_ids),
                                               batch_size=batch_size, stats=st,
                                               prefix_groups=[p.sent for p in ps] if reuse_prefix else None)
        cost.seconds = time.perf_counter() - t0
        cost.forward_passes, cost.tokens = st.get("forward_passes", 0), st.get("tokens", 0)
        if reuse_prefix and len(ps):
            cost.extra["shared_prefix_tokens"] = st.get("shared_prefix_tokens", 0)
        if not len(ps):
            lp_all = torch.empty(0, len(self.labels))
        answers = [self.labels[int(k)] for k in lp_all.argmax(-1)] if len(ps) else []
        cost.extra["mode"] = "score"
        cost.extra["reuse_prefix"] = reuse_prefix
        return recompose(ps, answers, [len(s) for s in sents]), cost, lp_all

    def sentence_level_cost(self, sents: Sequence[Sequence[str]]) -> Cost:
        """Reference cost: one forward pass per sentence over its prefix (what one sentence-level prompt
        costs to read, before any decoding), batch 1 as in the reuse path."""
        import torch

        ps, parts = self.prompts(sents)
        pre, _ = self._ids(parts)
        firsts = {}
        for p, ids in zip(ps, pre):
            firsts.setdefault(p.sent, ids)
        cost = Cost(sentences=len(sents), words=sum(len(s) for s in sents), prompts=len(firsts))
        t0 = time.perf_counter()
        model = self.backend.model
        with torch.inference_mode():
            for ids in firsts.values():
                model.base_model(input_ids=torch.tensor([ids], device=model.device))
                cost.forward_passes += 1
                cost.tokens += len(ids)
        cost.seconds = time.perf_counter() - t0
        return cost

    def sentence_generate_cost(self, sents: Sequence[Sequence[str]], tokens_per_word: int = 2) -> Cost:
        """Reference cost of one sentence-level *generative* prompt per sentence: the prefix plus greedy
        decoding of ``tokens_per_word * m`` tokens (the least a sentence-level answer naming one tag per
        word needs: a label word and a separator), batch 1."""
        import torch

        ps, parts = self.prompts(sents)
        pre, _ = self._ids(parts)
        firsts: dict[int, list[int]] = {}
        for p, ids in zip(ps, pre):
            firsts.setdefault(p.sent, ids)
        cost = Cost(sentences=len(sents), words=sum(len(s) for s in sents), prompts=len(firsts))
        model = self.backend.model
        t0 = time.perf_counter()
        with torch.inference_mode():
            for s, ids in firsts.items():
                n = tokens_per_word * len(sents[s])
                model.generate(input_ids=torch.tensor([ids], device=model.device), do_sample=False,
                               max_new_tokens=n, min_new_tokens=n, pad_token_id=self.tokenizer.pad_token_id,
                               temperature=None, top_p=None, top_k=None)
                cost.forward_passes += n
                cost.tokens += len(ids) + n
        cost.seconds = time.perf_counter() - t0
        cost.extra["tokens_per_word"] = tokens_per_word
        return cost

    # ------------------------------------------------------------------ scoring (vllm)

    def _score_vllm(self, sents: Sequence[Sequence[str]]) -> tuple[list[list[str]], Cost, Any]:
        ps, parts = self.prompts(sents)
        cost = Cost(sentences=len(sents), words=sum(len(s) for s in sents), prompts=len(ps))
        st: dict[str, int] = {}
        t0 = time.perf_counter()
        picks = self.backend.pick_next_token([a + b for a, b in parts], list(self.verb.token_ids), stats=st)
        cost.seconds = time.perf_counter() - t0
        answers = [self.labels[k] if k is not None else NONE for k in picks]
        cost.forward_passes, cost.tokens = st.get("forward_passes", 0), st.get("tokens", 0)
        if "cached_tokens" in st:
            cost.extra["cached_tokens"] = st["cached_tokens"]
        cost.extra.update(mode="score", backend="vllm",
                          prefix_caching=bool(getattr(self.backend, "enable_prefix_caching", False)))
        return recompose(ps, answers, [len(s) for s in sents]), cost, None

    # ------------------------------------------------------------------ generate, then match

    def match(self, text: str) -> str:
        """The authors' rule: case-insensitive substring; the last label (verbalizer order) found wins."""
        low, found = text.lower(), NONE
        for lab, w in zip(self.labels, self.verb.words):
            if w.lower() in low:
                found = lab
        return found

    def generate(self, sents: Sequence[Sequence[str]], *, max_new_tokens: int = 10) -> tuple[list[list[str]], Cost]:
        """Tags by greedy generation + matching (``<none>`` when no label word appears)."""
        from llmie.backends.base import GenRequest

        ps, parts = self.prompts(sents)
        cost = Cost(sentences=len(sents), words=sum(len(s) for s in sents), prompts=len(ps))
        t0 = time.perf_counter()
        res = self.backend.generate([GenRequest(prompt=a + b, max_tokens=max_new_tokens) for a, b in parts])
        cost.seconds = time.perf_counter() - t0
        answers = [self.match(r.text) if r.ok else NONE for r in res]
        cost.tokens = sum((r.prompt_tokens or 0) + (r.completion_tokens or 0) for r in res)
        cost.extra.update(mode="generate", no_match=sum(a == NONE for a in answers),
                          errors=sum(not r.ok for r in res))
        return recompose(ps, answers, [len(s) for s in sents]), cost


def for_seqeval(tags: Sequence[Sequence[str]]) -> list[list[str]]:
    """``<none>`` -> O (seqeval needs IOB2 tags); token F1 keeps ``<none>`` as a wrong class."""
    return [[("O" if t == NONE else t) for t in row] for row in tags]
