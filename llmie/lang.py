"""Language codes: accept ISO 639-1, 639-2/3 and NLLB-style `hau_Latn`; normalise to ISO 639-3 (+ script).

Datasets mix `ha`, `hau` and `hau_Latn`; one normal form lets us join data, MT pairs and results.
"""
from __future__ import annotations

from functools import lru_cache

import langcodes


@lru_cache(maxsize=4096)
def normalize_lang(code: str) -> str:
    """`'ha'`, `'hau'` -> `'hau'`; `'hau_Latn'`, `'ha-Latn'` -> `'hau_Latn'`; `'zh-Hans'` -> `'zho_Hans'`."""
    raw = (code or "").strip()
    if not raw:
        raise ValueError("empty language code")
    try:
        tag = langcodes.Language.get(raw.replace("_", "-"), normalize=True)
    except (langcodes.tag_parser.LanguageTagError, ValueError) as e:  # type: ignore[attr-defined]
        raise ValueError(f"unknown language code {code!r}") from e
    if not tag.language or tag.language == "und":
        raise ValueError(f"unknown language code {code!r}")
    alpha3 = tag.to_alpha3()
    return f"{alpha3}_{tag.script}" if tag.script else alpha3


def iso639_1(code: str) -> str | None:
    """Two-letter code where one exists (MT engines and pair names like `en-de` use them)."""
    tag = langcodes.Language.get(normalize_lang(code).split("_")[0])
    lang = tag.language or ""
    return lang if len(lang) == 2 else None
