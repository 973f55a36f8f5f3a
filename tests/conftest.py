"""Shared test settings: one torch thread, the benchmark data folder from one setting."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    from llmie.config import data_dir as _data_dir

    d = _data_dir()
    if not d.is_dir():
        pytest.skip(f"benchmark data not found at {d} (set LLMIE_DATA_DIR)")
    return d
