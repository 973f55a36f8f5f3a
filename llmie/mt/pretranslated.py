"""Translations supplied up front (a dict, two columns, or a JSONL file): no engine, exact lookups.

Useful when the translations come from elsewhere (a paid API, a human, a dataset's own translated split).
A text without a translation raises `KeyError` naming it; nothing is ever invented.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from llmie.mt.base import BaseTranslator, lang3


class PretranslatedTranslator(BaseTranslator):
    """`mapping`: source text -> translation. With `src`/`tgt` given, only that direction is accepted;
    without, any direction is (the mapping is assumed to be for the one you ask)."""

    name = "pretranslated"

    def __init__(self, mapping: Mapping[str, str] | Iterable[tuple[str, str]], *, src: str | None = None,
                 tgt: str | None = None, strip_fallback: bool = True):
        items = mapping.items() if isinstance(mapping, Mapping) else mapping
        self.mapping: dict[str, str] = {}
        for i, pair in enumerate(items):
            k, v = pair
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"pretranslated entry {i} must map str -> str, got {type(k).__name__} -> "
                                f"{type(v).__name__}")
            self.mapping[k] = v
        self.src = lang3(src) if src else None
        self.tgt = lang3(tgt) if tgt else None
        if (self.src is None) != (self.tgt is None):
            raise ValueError("give both src and tgt, or neither")
        self.strip_fallback = strip_fallback
        self._stripped = {k.strip(): v for k, v in self.mapping.items()} if strip_fallback else {}

    @classmethod
    def from_columns(cls, sources: Iterable[str], targets: Iterable[str], **kw) -> PretranslatedTranslator:
        sources, targets = list(sources), list(targets)
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} source texts but {len(targets)} translations")
        return cls(zip(sources, targets), **kw)

    @classmethod
    def from_jsonl(cls, path: str | Path, source_field: str = "source", target_field: str = "translation",
                   **kw) -> PretranslatedTranslator:
        pairs = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                if source_field not in row or target_field not in row:
                    raise KeyError(f"{path}:{n}: needs fields {source_field!r} and {target_field!r}")
                pairs.append((row[source_field], row[target_field]))
        return cls(pairs, **kw)

    def pairs(self) -> set[tuple[str, str]]:
        return {(self.src, self.tgt)} if self.src and self.tgt else set()

    def supports(self, src: str, tgt: str) -> bool:
        return self.src is None or (lang3(src), lang3(tgt)) == (self.src, self.tgt)

    def _hint(self) -> str:
        return "this pretranslated mapping was built for one direction only"

    def _translate_batch(self, texts: list[str], src: str, tgt: str) -> list[str]:
        out = []
        for t in texts:
            if t in self.mapping:
                out.append(self.mapping[t])
            elif self.strip_fallback and t.strip() in self._stripped:
                out.append(self._stripped[t.strip()])
            else:
                short = t if len(t) <= 200 else t[:200] + "..."
                raise KeyError(f"no pre-translation for text {short!r} ({len(self.mapping)} entries)")
        return out
