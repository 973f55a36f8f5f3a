"""Shared test settings: one torch thread, the benchmark data folder from one setting."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    from llmie.settings import data_dir as _data_dir

    d = _data_dir()
    if not d.is_dir():
        pytest.skip(f"benchmark data not found at {d} (set LLMIE_DATA_DIR)")
    return d


@pytest.fixture(scope="session")
def user_server(tmp_path_factory) -> Iterator[str]:
    """One server started the way a user would (`llmie serve` in another shell, served name `usersmol`), shared by
    the optimize and projection-optimize tests: a vLLM start is ~30 s of CI each."""
    yield from serve_like_a_user(tmp_path_factory.mktemp("serve") / "serve.log", "usersmol")


def serve_like_a_user(log: Path, name: str) -> Iterator[str]:
    """`llmie serve` started the way a user would (another shell), yielding its /v1 URL once healthy; stopped by
    its PID (SIGTERM: `llmie serve` stops its vLLM server). Used by the session-scoped `user_server` fixture."""
    from llmie.backends.serve import free_port

    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "llmie.cli", "serve", "--port", str(port), "--name", name,
                                 "--timeout", "900"], stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900  # vLLM start: ~45 s idle, minutes on a busy CPU
    try:
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "llmie serve did not become healthy"
            time.sleep(1)
        yield url + "/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
