"""llmie.device: the one device rule (auto = CUDA when present), checked values, batches moved to the model."""
from __future__ import annotations

import pytest
import torch

from llmie.device import autocast, model_device, resolve_device, to_device


def test_auto_and_explicit_cpu():
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want and resolve_device(None).type == want
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "tpu:0", "cuda:x", ""])
def test_bad_value_is_a_clear_value_error(bad):
    with pytest.raises(ValueError, match="device"):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_without_cuda_is_refused():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:1")


def test_tiny_model_and_batch_moved_with_the_helper():
    dev = resolve_device("auto")
    net = torch.nn.Linear(4, 2).to(dev)
    batch = to_device({"x": torch.ones(3, 4), "meta": ["a"], "pair": (torch.zeros(1), 2)}, model_device(net))
    assert batch["x"].device.type == dev.type and batch["pair"][0].device.type == dev.type
    assert batch["meta"] == ["a"] and batch["pair"][1] == 2
    with autocast(dev, torch.bfloat16, enabled=False):
        assert net(batch["x"]).shape == (3, 2)


def test_device_check_script_runs_on_the_cpu(tmp_path):
    """eval/device_check.py (the prepared GPU check) runs end to end here with DEVICE=cpu: tiny models, the
    trainers and inference placed on the device, CPU agreement; its JSON lists no failed check."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "DEVICE": "cpu", "OMP_NUM_THREADS": "1", "OUT": str(tmp_path)}
    r = subprocess.run([sys.executable, str(root / "eval" / "device_check.py")], env=env, capture_output=True,
                       text=True, timeout=300)
    rep = json.loads((tmp_path / "device_check.json").read_text())
    assert r.returncode == 0 and rep["failed"] == [], (rep, r.stderr[-2000:])
    assert rep["device"] == "cpu" and set(rep["checks"]) == {"rule", "awesome", "binary", "pvp", "topro", "speed"}
    assert rep["checks"]["awesome"]["same_as_cpu"] == "8/8"
    assert rep["checks"]["pvp"]["train_device"] == "cpu" and rep["checks"]["topro"]["loaded_device"] == "cpu"


def test_vllm_runs_the_llm_in_the_cpus_native_dtype(monkeypatch):
    """vLLM on a CPU: bf16 only where it is native (on an AVX2-only EPYC bf16 was 4.1x slower than fp32), for the
    in-process engine and for the server (whose model folder says bf16), unless the caller chose a dtype."""
    import torch

    import llmie.backends.serve as serve
    import llmie.device as device
    from llmie.backends.vllm import VLLMBackend, _is_cpu_platform

    if not _is_cpu_platform():
        pytest.skip("vLLM's CPU defaults apply only on a CPU platform")
    for native, want in ((torch.bfloat16, "bfloat16"), (torch.float32, "float32")):
        monkeypatch.setattr(device, "fast_dtype", lambda dev=None, _d=native: _d)
        assert device.cpu_llm_dtype() == want
        assert VLLMBackend("m").engine_args()["dtype"] == want
        assert VLLMBackend("m", dtype="float16").engine_args()["dtype"] == "float16"
        seen = {}
        monkeypatch.setattr(serve, "launch", lambda cmd, *a, **k: seen.setdefault("cmd", cmd))
        monkeypatch.setattr(serve, "_cuda_available", lambda: False)
        serve.start_server("embedded", port=1)
        assert seen["cmd"][seen["cmd"].index("--dtype") + 1] == want
        seen.clear()
        serve.start_server("embedded", port=1, extra_args=["--dtype", "float16"])
        assert seen["cmd"].count("--dtype") == 1
        seen.clear()
        serve.start_server("embedded", port=1, extra_args=["--dtype=float16"])
        assert "--dtype" not in seen["cmd"] and "--dtype=float16" in seen["cmd"]


def test_fast_dtype_is_bf16_only_on_gpus_that_compute_it(monkeypatch):
    """A pre-Ampere GPU (V100, T4) has no native bf16: the encoders and `bf16: auto` must pick float32 there.
    No GPU here: the CUDA answers are injected."""
    import llmie.device as device

    monkeypatch.setattr(device, "resolve_device", lambda d=None: torch.device("cuda"))
    for supported, want in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, _s=supported, **k: _s)
        assert device.fast_dtype("cuda") is want
