"""Settings read from the environment, in one place."""
from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """Benchmark data folder: `$LLMIE_DATA_DIR`, default `../shared/data` (relative to the working directory)."""
    return Path(os.environ.get("LLMIE_DATA_DIR", "../shared/data")).expanduser().resolve()
