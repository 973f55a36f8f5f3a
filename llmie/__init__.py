"""llmie: multilingual information extraction with LLMs.

Heavy modules (torch, transformers) load lazily: `import llmie` stays fast for `llmie score`.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "extract", "project"]


def __getattr__(name: str) -> Any:
    if name == "project":
        from llmie.projection.project import project

        return project
    if name == "extract":
        from llmie.massie.extract import extract

        return extract
    raise AttributeError(f"module 'llmie' has no attribute {name!r}")
