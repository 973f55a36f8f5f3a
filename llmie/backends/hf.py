"""transformers backend: batched ``generate`` (left padding) and forward-pass log-probabilities.

- Messages get the tokenizer's chat template (``add_generation_prompt=True``); raw prompts are used
  as they are (with the tokenizer's special tokens, e.g. BOS, when it adds any).
- temperature 0 -> greedy (``do_sample=False``); otherwise sampling, seeded per request when
  ``seed`` is given.
- LoRA: peft adapters, loaded once per path into one ``PeftModel`` (``disable_adapter`` for base
  requests).
- **JSON schema is not enforced here**: hf has no grammar engine; requests with ``json_schema`` are
  generated normally and the caller must validate (use vllm/openai to constrain).
- ``choices`` *is* enforced: a token trie of the choices (``llmie.backends.constraints``) through
  ``prefix_allowed_tokens_fn``; the answer is always one of them (``max_tokens``, ``stop`` and
  ``logprobs`` do not apply to such requests: the longest choice always fits).
- ``adapter=``: a LoRA merged into the weights at load (no per-layer LoRA cost; the model identity
  includes the adapter's fingerprint); per-request ``lora`` adapters stay unmerged.
- ``score_next_token`` and ``logprobs_of_continuations`` give forward-pass log-probabilities
  (TOPRO-style scoring, verifiers); ``score_next_token`` can share a KV-cached prefix per group.
- Threads: nothing here changes torch's global thread settings; set ``OMP_NUM_THREADS`` /
  ``torch.set_num_threads`` in the caller. dtype: float32 on CPU, bfloat16 on GPU unless given.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Sequence
from typing import Any

from llmie.backends.base import GenRequest, GenResult, adapter_identity, error_result, model_identity
from llmie.backends.constraints import ChoiceConstraint

log = logging.getLogger(__name__)


def _positions(mask):
    """Position ids that start at 0 on each row's first real token (left padding)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class HFBackend:
    name = "hf"

    def __init__(self, model: str, *, dtype: str | Any | None = None, device: str | None = None,
                 batch_size: int = 8, trust_remote_code: bool = False, adapter: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path = model
        self.model_id = model_identity(model)
        from llmie.device import resolve_device

        self.device = str(resolve_device(device))   # None/"auto": CUDA when present (the one rule, llmie.device)
        if dtype is None:
            dtype = torch.float32 if self.device == "cpu" else torch.bfloat16
        elif isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        self.dtype = dtype
        self.batch_size = max(1, int(batch_size))
        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        lm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype, trust_remote_code=trust_remote_code)
        if adapter:
            from peft import PeftModel

            lm = PeftModel.from_pretrained(lm, adapter).merge_and_unload()
            self.model_id = f"{self.model_id}+{adapter_identity(adapter)}"
        self.adapter = adapter
        self.model = lm.to(self.device).eval()
        self._peft = None
        self._adapters: dict[str, str] = {}  # path -> adapter name
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        eos_list = eos if isinstance(eos, list) else [eos]
        self._eos_ids = set(eos_list)
        self._end_id = int(eos_list[0])  # ends a choice (chat models: the end-of-turn token)

    # ------------------------------------------------------------------ helpers

    def render(self, r: GenRequest) -> tuple[str, bool]:
        """(text, add_special_tokens) for a request: chat template for messages, raw prompt as is."""
        if r.messages is not None:
            return self.tokenizer.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True), False
        return r.prompt or "", True

    def _model_for(self, lora: str | None):
        """The module to run for this adapter (None -> base). Adapters are loaded once per path."""
        if lora is None:
            return self._peft if self._peft is not None else self.model
        from peft import PeftModel

        if lora not in self._adapters:
            name = f"a{len(self._adapters)}"
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self.model, lora, adapter_name=name).eval()
            else:
                self._peft.load_adapter(lora, adapter_name=name)
            self._adapters[lora] = name
        self._peft.set_adapter(self._adapters[lora])
        return self._peft

    def _encode(self, texts: list[str], add_special_tokens: bool):
        return self.tokenizer(texts, return_tensors="pt", padding=True,
                              add_special_tokens=add_special_tokens).to(self.device)

    # ------------------------------------------------------------------ generation

    def _generate_group(self, reqs: list[GenRequest], lora: str | None) -> list[GenResult]:
        import contextlib

        import torch

        r0 = reqs[0]
        rendered = [self.render(r) for r in reqs]
        specials = {s for _, s in rendered}
        if len(specials) != 1:  # chat and raw never share a group; guard anyway
            raise ValueError("mixed chat/raw group")
        enc = self._encode([t for t, _ in rendered], specials.pop())
        model = self._model_for(lora)
        max_new = max(r.max_tokens for r in reqs)
        gen_kw: dict[str, Any] = dict(max_new_tokens=max_new, pad_token_id=self.tokenizer.pad_token_id,
                                      return_dict_in_generate=True, output_logits=bool(r0.logprobs))
        gen_kw.update(_sampling(r0))
        if r0.stop:
            gen_kw.update(stop_strings=list(r0.stop), tokenizer=self.tokenizer)
        ctx = self._peft.disable_adapter() if (lora is None and self._peft is not None) else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            out = model.generate(**enc, **gen_kw)
        seqs = out.sequences[:, enc["input_ids"].shape[1]:]
        logp = None
        if r0.logprobs:
            logp = torch.stack([x.float().log_softmax(-1) for x in out.logits], dim=1)  # [B, T, V]
        results = []
        for b, r in enumerate(reqs):
            ids = seqs[b].tolist()[: r.max_tokens]
            n, finish, eos_hit = len(ids), "length", False
            for k, t in enumerate(ids):
                if t in self._eos_ids:
                    n, finish, eos_hit = k, "stop", True
                    break
            text = self.tokenizer.decode(ids[:n], skip_special_tokens=True)
            if r.stop:
                cut = [p for p in (text.find(s) for s in r.stop if s) if p >= 0]
                if cut:
                    text, finish = text[: min(cut)], "stop"
            prompt_tokens = int(enc["attention_mask"][b].sum())
            res = GenResult(text=text, finish_reason=finish, prompt_tokens=prompt_tokens,
                            completion_tokens=n + int(eos_hit))
            if logp is not None:
                res.logprobs = []
                for k in range(min(n + int(eos_hit), logp.shape[1])):
                    vals, idx = logp[b, k].topk(r.logprobs)
                    d = {self.tokenizer.decode([int(i)]): float(v) for v, i in zip(vals, idx)}
                    d.setdefault(self.tokenizer.decode([ids[k]]), float(logp[b, k, ids[k]]))
                    res.logprobs.append(d)
            results.append(res)
        return results

    def _generate_choices(self, reqs: list[GenRequest], lora: str | None) -> list[GenResult]:
        """Decoding through each request's token trie of choices: the answer is one of them."""
        import contextlib

        import torch

        r0 = reqs[0]
        cons = [ChoiceConstraint.build(self.tokenizer, r.choices or [], self._end_id) for r in reqs]
        rows = []
        for r, c in zip(reqs, cons):
            text, special = self.render(r)
            rows.append(list(self.tokenizer(text, add_special_tokens=special)["input_ids"]) + c.forced)
        pad = self.tokenizer.pad_token_id
        plen = max(len(x) for x in rows)
        input_ids = torch.tensor([[pad] * (plen - len(x)) + x for x in rows], device=self.device)
        mask = torch.tensor([[0] * (plen - len(x)) + [1] * len(x) for x in rows], device=self.device)

        def allowed(b: int, ids) -> list[int]:
            a = cons[b].trie.allowed(ids[plen:].tolist())
            return a if a else [pad]

        gen_kw: dict[str, Any] = dict(max_new_tokens=max(c.trie.depth for c in cons), pad_token_id=pad,
                                      eos_token_id=self._end_id, prefix_allowed_tokens_fn=allowed)
        gen_kw.update(_sampling(r0))
        model = self._model_for(lora)
        ctx = self._peft.disable_adapter() if (lora is None and self._peft is not None) else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            gen = model.generate(input_ids=input_ids, attention_mask=mask, **gen_kw)
        out = []
        for b, row in enumerate(gen[:, plen:].tolist()):
            a = cons[b].answer(row)
            n = row.index(self._end_id) + 1 if self._end_id in row else len(row)
            if a is None:
                out.append(error_result(f"choice decoding left the choices (tokens {row[:n]})"))
            else:
                out.append(GenResult(text=a, finish_reason="stop", prompt_tokens=len(rows[b]) - len(cons[b].forced),
                                     completion_tokens=len(cons[b].forced) + n))
        return out

    def generate(self, requests: list[GenRequest], progress: bool = False) -> list[GenResult]:
        results: list[GenResult | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            key = (r.messages is not None, r.lora, r.temperature, r.seed if r.temperature > 0 else None,
                   tuple(r.stop or ()), bool(r.logprobs) and r.logprobs, r.choices is not None)
            groups.setdefault(key, []).append(i)
        batches = []
        for key, idx in groups.items():
            # similar lengths together: less padding
            idx = sorted(idx, key=lambda i: len(self.render(requests[i])[0]))
            for s in range(0, len(idx), self.batch_size):
                batches.append((key[1], key[-1], idx[s: s + self.batch_size]))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(requests), desc="hf generate")
        for lora, constrained, idx in batches:
            reqs = [requests[i] for i in idx]
            run = self._generate_choices if constrained else self._generate_group
            try:
                outs = run(reqs, lora)
            except Exception as e:
                if len(reqs) == 1:
                    outs = [error_result(f"{type(e).__name__}: {e}")]
                else:  # isolate the failing request
                    outs = []
                    for r in reqs:
                        try:
                            outs.extend(run([r], lora))
                        except Exception as e1:
                            outs.append(error_result(f"{type(e1).__name__}: {e1}"))
            for i, o in zip(idx, outs):
                results[i] = o
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        return [r if r is not None else error_result("no result") for r in results]

    # ------------------------------------------------------------------ scoring

    def score_next_token(self, prompts: Sequence[str] | Sequence[Sequence[int]], candidate_token_ids: list[int], *,
                         add_special_tokens: bool = True, lora: str | None = None, batch_size: int | None = None,
                         prefix_groups: Sequence[Hashable] | None = None, stats: dict | None = None):
        """Log-probabilities of each candidate token as the next token after each prompt.

        Returns a float32 tensor ``[len(prompts), len(candidate_token_ids)]`` (log-softmax over the
        full vocabulary, so values are comparable across prompts). Prompts are raw text (apply a
        chat template yourself if wanted) or token ids; batched by length with left padding.
        ``prefix_groups`` (one key per prompt): each contiguous run of equal keys is one group whose
        longest common token prefix runs once into a KV cache, repeated for the group, so only the
        remainders run per prompt (TOPRO's m prompts of a sentence). ``stats`` (a dict) is
        incremented with ``forward_passes``, ``tokens`` and ``shared_prefix_tokens``.
        """
        import contextlib

        import torch

        ids = [self.tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] if isinstance(p, str)
               else p for p in prompts]
        ids = [list(x) for x in ids]
        st = stats if stats is not None else {}
        for k in ("forward_passes", "tokens", "shared_prefix_tokens"):
            st.setdefault(k, 0)
        cand = torch.tensor(candidate_token_ids, dtype=torch.long)
        bs = batch_size or self.batch_size
        model = self._model_for(lora)
        ctx = self._peft.disable_adapter() if (lora is None and self._peft is not None) else contextlib.nullcontext()
        rows: list[Any] = [None] * len(ids)
        with torch.inference_mode(), ctx:
            if prefix_groups is not None:
                if len(prefix_groups) != len(ids):
                    raise ValueError("prefix_groups needs one key per prompt")
                start = 0
                while start < len(ids):
                    end = start
                    while end < len(ids) and prefix_groups[end] == prefix_groups[start]:
                        end += 1
                    lp = self._score_group_reuse(model, ids[start:end], cand, st)
                    for k in range(end - start):
                        rows[start + k] = lp[k]
                    start = end
            else:
                order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
                for s in range(0, len(order), bs):
                    idx = order[s:s + bs]
                    lp = self._score_full(model, [ids[i] for i in idx], cand, st)
                    for k, i in enumerate(idx):
                        rows[i] = lp[k]
        if not rows:
            return torch.empty(0, len(candidate_token_ids))
        return torch.stack(rows)

    @staticmethod
    def _body_head(model):
        """(transformer body, LM head) of a causal LM or a PeftModel around one (LoRA layers stay in)."""
        m = model.get_base_model() if hasattr(model, "get_base_model") else model
        return m.base_model, m.get_output_embeddings()

    def _score_full(self, model, seqs: list[list[int]], cand, st: dict):
        """One left-padded batch: the last position is every row's next-token slot; the LM head runs
        on that position only (the vocabulary is big)."""
        import torch

        body, head = self._body_head(model)
        pad = self.tokenizer.pad_token_id or 0
        L = max(len(x) for x in seqs)
        ids = torch.full((len(seqs), L), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), L), dtype=torch.long)
        for b, x in enumerate(seqs):
            ids[b, L - len(x):] = torch.tensor(x)
            mask[b, L - len(x):] = 1
        dev = self.device
        h = body(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                 position_ids=_positions(mask).to(dev)).last_hidden_state[:, -1]
        st["forward_passes"] += 1
        st["tokens"] += sum(len(x) for x in seqs)
        return head(h).float().log_softmax(-1)[:, cand.to(dev)].cpu()

    def _score_group_reuse(self, model, seqs: list[list[int]], cand, st: dict):
        """One group: the longest common token prefix runs once into a KV cache, repeated m times
        (``DynamicCache.batch_repeat_interleave``), and only the m remainders run, right-padded, in
        one batch (every row keeps at least its last token)."""
        import torch

        body, head = self._body_head(model)
        dev = self.device
        lcp = min(len(x) for x in seqs) - 1
        first = seqs[0]
        for x in seqs[1:]:
            k = 0
            while k < lcp and x[k] == first[k]:
                k += 1
            lcp = k
        rest = [x[lcp:] for x in seqs]
        m = len(seqs)
        cache = None
        if lcp:
            cache = body(input_ids=torch.tensor([first[:lcp]], device=dev), use_cache=True).past_key_values
            cache.batch_repeat_interleave(m)
            st["forward_passes"] += 1
        L = max(len(x) for x in rest)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((m, L), pad, dtype=torch.long)
        mask = torch.zeros((m, lcp + L), dtype=torch.long)
        mask[:, :lcp] = 1
        for b, x in enumerate(rest):
            ids[b, :len(x)] = torch.tensor(x)
            mask[b, lcp:lcp + len(x)] = 1
        pos = (lcp + torch.arange(L)).unsqueeze(0).expand(m, L)
        hid = body(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                   past_key_values=cache, use_cache=False).last_hidden_state
        last = torch.tensor([len(x) - 1 for x in rest], device=dev)
        st["forward_passes"] += 1
        st["tokens"] += lcp + sum(len(x) for x in rest)
        st["shared_prefix_tokens"] += lcp
        h = hid[torch.arange(m, device=dev), last]
        return head(h).float().log_softmax(-1)[:, cand.to(dev)].cpu()

    def logprobs_of_continuations(self, prompts: list[str], continuations: list[str], *,
                                  add_special_tokens: bool = True, lora: str | None = None,
                                  batch_size: int | None = None) -> list[float]:
        """Sum of token log-probabilities of each continuation given its prompt (teacher forcing).

        The prompt and the continuation are tokenized separately (continuation without special
        tokens) and concatenated, so the scored tokens are exactly the continuation's tokens.
        """
        import contextlib

        import torch

        if len(prompts) != len(continuations):
            raise ValueError("prompts and continuations must have the same length")
        tok = self.tokenizer
        pairs = []
        for p, c in zip(prompts, continuations):
            pi = tok(p, add_special_tokens=add_special_tokens)["input_ids"]
            ci = tok(c, add_special_tokens=False)["input_ids"]
            pairs.append((pi, ci))
        bs = batch_size or self.batch_size
        model = self._model_for(lora)
        ctx = self._peft.disable_adapter() if (lora is None and self._peft is not None) else contextlib.nullcontext()
        pad = tok.pad_token_id
        out: list[float] = []
        with torch.inference_mode(), ctx:
            for s in range(0, len(pairs), bs):
                chunk = pairs[s: s + bs]
                seqs = [pi + ci for pi, ci in chunk]
                L = max(len(x) for x in seqs)
                ids = torch.full((len(seqs), L), pad, dtype=torch.long)
                mask = torch.zeros((len(seqs), L), dtype=torch.long)
                for b, x in enumerate(seqs):
                    ids[b, L - len(x):] = torch.tensor(x)
                    mask[b, L - len(x):] = 1
                mask = mask.to(self.device)
                logits = model(input_ids=ids.to(self.device), attention_mask=mask,
                               position_ids=_positions(mask)).logits.float()
                logp = logits.log_softmax(-1)
                for b, (pi, ci) in enumerate(chunk):
                    if not ci:
                        out.append(0.0)
                        continue
                    start = L - len(ci)  # position of the first continuation token
                    pos = torch.arange(start - 1, L - 1)
                    tgt = ids[b, start:].to(logp.device)
                    out.append(float(logp[b, pos.to(logp.device), tgt].sum()))
        return [v if math.isfinite(v) else float("-inf") for v in out]

    def adapter_id(self, path: str) -> str:
        return adapter_identity(path)

    def close(self) -> None:
        import gc

        self._peft = None
        self._adapters.clear()
        self.model = None
        gc.collect()


def _sampling(r: GenRequest) -> dict[str, Any]:
    """generate() kwargs of a request's sampling settings (greedy at temperature 0; a seed fixes a sample)."""
    import torch

    if r.temperature > 0:
        if r.seed is not None:
            torch.manual_seed(r.seed)
        return dict(do_sample=True, temperature=r.temperature, top_p=1.0, top_k=0)
    return dict(do_sample=False, temperature=None, top_p=None, top_k=None)
