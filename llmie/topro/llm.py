"""LLM TOPRO (zero-shot, the paper's §A.5 prompt): one question per word, answered by the next token.

Two modes, as in the authors' code:
- ``score``: next-token logits restricted to the first sub-token of each verbalizer word (one forward
  pass per prompt, no decoding); argmax over the label words.
- ``generate``: greedy ``max_new_tokens`` tokens, then a case-insensitive substring match of each
  verbalizer word; as in the authors' code the last label (in verbalizer order) that matches wins and
  no match is the extra class ``<none>`` (always wrong for token F1; read as O for seqeval).

Prompt order is sentence first: ``prefix`` = tag list + sentence (shared by the m prompts of a sentence),
``question`` = the per-word part. ``hf`` reuses the longest common token prefix of a sentence's m prompts
(tag list + sentence + the question's fixed start): its KV cache is computed once and repeated m times
(``DynamicCache.batch_repeat_interleave``), so only the short remainders (`` w in the sentence is``) run m times.
``vllm`` relies on the engine's automatic prefix caching (``enable_prefix_caching``) and restricts the
one sampled token with ``allowed_token_ids``. ``cost`` counts prompts, forward passes, tokens run
through the model and seconds, so reuse can be compared with no reuse and with one sentence-level prompt.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from llmie.topro.decompose import Cost, Prompt, Template, decompose, llm_parts, recompose
from llmie.topro.verbalizer import resolve_verbalizer

NONE = "<none>"


class LLMTopro:
    """Zero-shot TOPRO over a causal LM (``backend``: an ``HFBackend`` or ``VLLMBackend``)."""

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
        t0 = time.perf_counter()
        rows: list[Any] = [None] * len(ps)
        model = self.backend.model
        cand = torch.tensor(self.verb.token_ids)
        with torch.inference_mode():
            if reuse_prefix:
                start = 0
                while start < len(ps):  # one group per sentence: prompts of a sentence are contiguous
                    end = start
                    while end < len(ps) and ps[end].sent == ps[start].sent:
                        end += 1
                    lp = self._score_group_reuse(model, [pre[i] + q[i] for i in range(start, end)], cand, cost)
                    for k in range(end - start):
                        rows[start + k] = lp[k]
                    start = end
            else:
                order = sorted(range(len(ps)), key=lambda i: len(pre[i]) + len(q[i]))
                for s in range(0, len(order), batch_size):
                    idx = order[s:s + batch_size]
                    lp = self._score_full(model, [pre[i] + q[i] for i in idx], cand, cost)
                    for k, i in enumerate(idx):
                        rows[i] = lp[k]
        cost.seconds = time.perf_counter() - t0
        lp_all = torch.stack(rows) if rows else torch.empty(0, len(self.labels))
        answers = [self.labels[int(k)] for k in lp_all.argmax(-1)] if len(ps) else []
        cost.extra["mode"] = "score"
        cost.extra["reuse_prefix"] = reuse_prefix
        return recompose(ps, answers, [len(s) for s in sents]), cost, lp_all

    @staticmethod
    def _last_logits(model, h):
        """LM-head logits of the hidden states ``h`` [N, H] only (not of every position: the vocab is big)."""
        return model.get_output_embeddings()(h).float()

    def _score_full(self, model, seqs: list[list[int]], cand, cost: Cost):
        import torch

        from llmie.backends.hf import _positions

        pad = self.tokenizer.pad_token_id or 0
        L = max(len(x) for x in seqs)
        ids = torch.full((len(seqs), L), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), L), dtype=torch.long)
        for b, x in enumerate(seqs):  # left padding: the last position is every row's next-token slot
            ids[b, L - len(x):] = torch.tensor(x)
            mask[b, L - len(x):] = 1
        dev = model.device
        h = model.base_model(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                             position_ids=_positions(mask).to(dev)).last_hidden_state[:, -1]
        cost.forward_passes += 1
        cost.tokens += sum(len(x) for x in seqs)
        return self._last_logits(model, h).log_softmax(-1)[:, cand.to(dev)].cpu()

    def _score_group_reuse(self, model, seqs: list[list[int]], cand, cost: Cost):
        """The m prompts of one sentence: their longest common token prefix (tag list, sentence and the
        question's fixed start) is run once into a KV cache, repeated m times, and only the m short
        remainders run, right-padded, in one batch."""
        import torch

        dev = model.device
        lcp = min(len(x) for x in seqs) - 1  # every row keeps at least its last token
        first = seqs[0]
        for x in seqs[1:]:
            k = 0
            while k < lcp and x[k] == first[k]:
                k += 1
            lcp = k
        prefix = first[:lcp]
        rest = [x[lcp:] for x in seqs]
        m = len(seqs)
        cache = None
        if lcp:
            cache = model.base_model(input_ids=torch.tensor([prefix], device=dev), use_cache=True).past_key_values
            cache.batch_repeat_interleave(m)
            cost.forward_passes += 1
        L = max(len(x) for x in rest)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((m, L), pad, dtype=torch.long)
        mask = torch.zeros((m, lcp + L), dtype=torch.long)
        mask[:, :lcp] = 1
        for b, x in enumerate(rest):
            ids[b, :len(x)] = torch.tensor(x)
            mask[b, lcp:lcp + len(x)] = 1
        pos = (lcp + torch.arange(L)).unsqueeze(0).expand(m, L)
        hid = model.base_model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                               past_key_values=cache, use_cache=False).last_hidden_state
        last = torch.tensor([len(x) - 1 for x in rest], device=dev)
        cost.forward_passes += 1
        cost.tokens += lcp + sum(len(x) for x in rest)
        cost.extra["shared_prefix_tokens"] = cost.extra.get("shared_prefix_tokens", 0) + lcp
        h = hid[torch.arange(m, device=dev), last]
        return self._last_logits(model, h).log_softmax(-1)[:, cand.to(dev)].cpu()

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
        from vllm import SamplingParams

        ps, parts = self.prompts(sents)
        cost = Cost(sentences=len(sents), words=sum(len(s) for s in sents), prompts=len(ps))
        sp = SamplingParams(max_tokens=1, temperature=0.0, allowed_token_ids=list(self.verb.token_ids))
        t0 = time.perf_counter()
        outs = self.backend.llm.generate([a + b for a, b in parts], sp, use_tqdm=False)
        cost.seconds = time.perf_counter() - t0
        id2lab = dict(zip(self.verb.token_ids, self.labels))
        answers = [id2lab.get(o.outputs[0].token_ids[0], NONE) if o.outputs[0].token_ids else NONE for o in outs]
        cost.forward_passes = len(ps)
        cost.tokens = sum(len(o.prompt_token_ids) for o in outs)
        cached = [getattr(o, "num_cached_tokens", None) for o in outs]
        if all(c is not None for c in cached):
            cost.extra["cached_tokens"] = int(sum(cached))
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
