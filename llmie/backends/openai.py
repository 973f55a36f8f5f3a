"""Backend for any OpenAI-compatible server (a vLLM server first of all: see ``llmie.backends.serve``).

- Chat messages go to ``/v1/chat/completions``, raw prompts to ``/v1/completions``.
- Concurrency: ``asyncio`` with a semaphore (``concurrency``, default 8); a fresh ``AsyncOpenAI``
  client per ``generate`` call (an httpx pool must not outlive its event loop).
- JSON schema: ``response_format={"type": "json_schema", "json_schema": {"name": "output",
  "schema": schema}}`` (vLLM accepts the OpenAI form; for completions it goes in ``extra_body``).
- ``choices``: ``extra_body={"structured_outputs": {"choice": [...]}}`` (vLLM >= 0.12 servers); an
  answer outside the choices (a server that ignores the field) is an error result, never passed on.
- Retries with exponential backoff on connection errors, timeouts, 408/429 and 5xx (``max_retries``,
  default 3; the openai client's own retries are off so the count is ours). After the last retry,
  or on any other failure (4xx, a garbage body, no choices), that request gets an error result and
  the batch goes on.
- Sync callers: ``generate`` runs its own event loop; called inside a running loop (a notebook) it
  runs that loop in a worker thread. Async callers can ``await backend.agenerate(requests)``.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
from typing import Any

from llmie.backends.base import GenRequest, GenResult, error_result

_STOPS = {"stop": "stop", "eos": "stop", "end_turn": "stop", "stop_sequence": "stop",
          "length": "length", "max_tokens": "length"}


def _retryable(e: BaseException) -> bool:
    import openai

    if isinstance(e, (openai.APIConnectionError, asyncio.TimeoutError)):  # APITimeoutError is a subclass
        return True
    if isinstance(e, openai.APIStatusError):
        return e.status_code in (408, 429) or e.status_code >= 500
    return False


def _describe(e: BaseException) -> str:
    msg = str(e) or repr(e)
    return f"{type(e).__name__}: {msg[:500]}"


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _chat_logprobs(lp: Any) -> list[dict[str, float]] | None:
    content = _get(lp, "content") if lp is not None else None
    if not content:
        return None
    out = []
    for tok in content:
        d = {_get(t, "token"): float(_get(t, "logprob")) for t in (_get(tok, "top_logprobs") or [])}
        d.setdefault(_get(tok, "token"), float(_get(tok, "logprob")))
        out.append(d)
    return out


def _completion_logprobs(lp: Any) -> list[dict[str, float]] | None:
    top = _get(lp, "top_logprobs") if lp is not None else None
    if not top:
        return None
    return [{k: float(v) for k, v in (d or {}).items()} for d in top]


class OpenAIBackend:
    name = "openai"

    def __init__(self, model: str, api_base: str, api_key: str | None = None, *, concurrency: int = 8,
                 timeout: float = 120.0, max_retries: int = 3, backoff: float = 0.5, max_backoff: float = 8.0,
                 extra_body: dict | None = None) -> None:
        self.model = model
        self.api_base = api_base.rstrip("/")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "none"
        self.model_id = f"openai:{self.api_base}#{model}"
        self.concurrency = max(1, int(concurrency))
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self.backoff, self.max_backoff = backoff, max_backoff
        self.extra_body = dict(extra_body or {})

    # ------------------------------------------------------------------ one request

    def _kwargs(self, r: GenRequest) -> dict[str, Any]:
        kw: dict[str, Any] = dict(model=self.model, max_tokens=r.max_tokens, temperature=r.temperature)
        if r.stop:
            kw["stop"] = list(r.stop)
        if r.seed is not None:
            kw["seed"] = r.seed
        extra = dict(self.extra_body)
        rf = None
        if r.json_schema is not None:
            rf = {"type": "json_schema", "json_schema": {"name": "output", "schema": r.json_schema}}
        if r.messages is not None:
            kw["messages"] = r.messages
            if rf:
                kw["response_format"] = rf
            if r.logprobs:
                kw.update(logprobs=True, top_logprobs=r.logprobs)
        else:
            kw["prompt"] = r.prompt
            if rf:
                extra["response_format"] = rf  # not a named parameter of completions.create
            if r.logprobs:
                kw["logprobs"] = r.logprobs
        if r.choices is not None:  # vLLM server's structured outputs; other servers reject or ignore it
            extra["structured_outputs"] = {"choice": list(r.choices)}
        if extra:
            kw["extra_body"] = extra
        return kw

    @staticmethod
    def _parse(resp: Any, chat: bool) -> GenResult:
        choices = _get(resp, "choices")
        if isinstance(resp, (str, bytes)) or not isinstance(choices, (list, tuple)) or not choices:
            return error_result(f"malformed response (no choices): {str(resp)[:200]!r}")
        c = choices[0]
        if chat:
            msg = _get(c, "message")
            text = _get(msg, "content") if msg is not None else None
        else:
            text = _get(c, "text")
        if not isinstance(text, str):
            return error_result(f"malformed response (no text in choices[0]): {str(c)[:200]!r}")
        fr_raw = _get(c, "finish_reason")
        fr = "stop" if fr_raw is None else _STOPS.get(fr_raw, "error")
        usage = _get(resp, "usage")
        res = GenResult(text=text, finish_reason=fr,
                        prompt_tokens=_get(usage, "prompt_tokens") if usage is not None else None,
                        completion_tokens=_get(usage, "completion_tokens") if usage is not None else None)
        try:
            lp = _get(c, "logprobs")
            res.logprobs = _chat_logprobs(lp) if chat else _completion_logprobs(lp)
        except (TypeError, ValueError, AttributeError):
            res.logprobs = None
        if fr == "error":
            res.error = f"server finish_reason={fr_raw!r}"
        return res

    async def _one(self, client: Any, sem: asyncio.Semaphore, r: GenRequest) -> GenResult:
        chat = r.messages is not None
        try:
            kw = self._kwargs(r)
        except Exception as e:
            return error_result(f"invalid request: {_describe(e)}")
        last: BaseException | None = None
        async with sem:
            for attempt in range(self.max_retries + 1):
                try:
                    coro = client.chat.completions.create(**kw) if chat else client.completions.create(**kw)
                    # the client enforces self.timeout per HTTP call; this guards a stalled body read too
                    resp = await asyncio.wait_for(coro, timeout=self.timeout + 5)
                    res = self._parse(resp, chat)
                    if r.choices is not None and res.ok and res.text not in r.choices:
                        return error_result(f"answer {res.text[:80]!r} is not one of the {len(r.choices)} choices "
                                            "(the server ignored structured_outputs.choice: use a vLLM server)")
                    return res
                except Exception as e:
                    if not _retryable(e):
                        return error_result(_describe(e))
                    last = e
                if attempt < self.max_retries:
                    delay = min(self.max_backoff, self.backoff * 2 ** attempt) * (0.75 + 0.5 * random.random())
                    await asyncio.sleep(delay)
        return error_result(f"failed after {self.max_retries + 1} attempts: {_describe(last)}")

    # ------------------------------------------------------------------ batches

    async def agenerate(self, requests: list[GenRequest], progress: bool = False) -> list[GenResult]:
        import openai

        sem = asyncio.Semaphore(self.concurrency)
        client = openai.AsyncOpenAI(base_url=self.api_base, api_key=self.api_key, timeout=self.timeout,
                                    max_retries=0)
        try:
            tasks = [asyncio.ensure_future(self._one(client, sem, r)) for r in requests]
            if progress:
                from tqdm.auto import tqdm

                with tqdm(total=len(tasks), desc=f"openai {self.model}") as bar:
                    for t in tasks:
                        t.add_done_callback(lambda _t: bar.update(1))
                    results = await asyncio.gather(*tasks, return_exceptions=True)
            else:
                results = await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            await client.close()
        return [r if isinstance(r, GenResult) else error_result(_describe(r)) for r in results]

    def generate(self, requests: list[GenRequest], progress: bool = False) -> list[GenResult]:
        if not requests:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.agenerate(requests, progress))
        # inside a running loop (notebook, async app): run our own loop in a worker thread
        with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmie-openai") as ex:
            return ex.submit(asyncio.run, self.agenerate(requests, progress)).result()

    def close(self) -> None:
        """Nothing to release: clients live only for one generate() call."""
