"""The one machine-translation interface every engine implements, plus shared input checks.

`Translator.translate(texts, src, tgt)` is batched: a list in, a list of the same length out. Language
codes are anything `llmie.lang.normalize_lang` accepts (`pt`, `por`, `por_Latn`, `pt-BR`); directions
are compared on the ISO 639-3 part (`pairs()` returns 639-3 tuples such as `("eng", "por")`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Protocol, runtime_checkable

from llmie.lang import normalize_lang


@runtime_checkable
class Translator(Protocol):
    """Batched MT engine: `translate(texts, src, tgt) -> list[str]`, same length and order as `texts`."""

    name: str

    def translate(self, texts: list[str], src: str, tgt: str) -> list[str]: ...

    def pairs(self) -> set[tuple[str, str]]: ...


class UnsupportedDirection(ValueError):
    """The translator cannot translate `src -> tgt`; the message lists the directions it has."""


def lang3(code: str) -> str:
    """ISO 639-3 part of any accepted code: `'pt'`, `'por_Latn'`, `'pt-BR'` -> `'por'`."""
    return normalize_lang(code).split("_")[0]


@lru_cache(maxsize=1024)
def canonical_lang(code: str) -> str:
    """639-3 code, plus the script only where it is not the language's usual one.

    `'pt'`/`'por_Latn'` -> `'por'`; `'zh'`/`'zho_Hans'` -> `'zho'`; `'zh-Hant'` -> `'zho_Hant'`.
    Used for cache keys so that `pt` and `por_Latn` share entries while `zh-Hant` keeps its own.
    """
    norm = normalize_lang(code)
    base, _, script = norm.partition("_")
    if script and script == default_script(base):
        return base
    return norm


@lru_cache(maxsize=1024)
def default_script(code3: str) -> str | None:
    import langcodes

    try:
        return langcodes.Language.get(code3).maximize().script
    except Exception:  # noqa: BLE001 - langcodes raises several types for odd codes
        return None


def format_pairs(pairs: set[tuple[str, str]], limit: int = 40) -> str:
    if not pairs:
        return "none"
    items = sorted(f"{s}->{t}" for s, t in pairs)
    more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def unsupported(name: str, src: str, tgt: str, pairs: set[tuple[str, str]], hint: str = "") -> UnsupportedDirection:
    msg = f"{name} cannot translate {src!r} -> {tgt!r}; available directions: {format_pairs(pairs)}"
    return UnsupportedDirection(msg + (f". {hint}" if hint else ""))


def check_texts(texts: Sequence[str]) -> list[str]:
    """A list of strings, or TypeError naming the offending index. A bare `str` is refused (it would be
    translated character by character)."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("translate() takes a list of texts, got a single string; wrap it in a list")
    out = list(texts)
    for i, t in enumerate(out):
        if t is None:
            raise TypeError(f"text at index {i} is None; pass '' for an empty text")
        if not isinstance(t, str):
            raise TypeError(f"text at index {i} is {type(t).__name__}, expected str")
    return out


class BaseTranslator:
    """Shared `translate()`: input checks, identity for same-language requests, empty texts without the
    engine, direction check, output-length check. Engines implement `pairs()` and `_translate_batch()`.
    """

    name: str = "base"
    model_id: str = ""

    def pairs(self) -> set[tuple[str, str]]:  # pragma: no cover - overridden
        raise NotImplementedError

    def supports(self, src: str, tgt: str) -> bool:
        return (lang3(src), lang3(tgt)) in self.pairs()

    def _hint(self) -> str:
        return ""

    def _translate_batch(self, texts: list[str], src: str, tgt: str) -> list[str]:  # pragma: no cover
        """Translate non-empty texts; `src`/`tgt` are `normalize_lang` codes (e.g. `por`, `zho_Hant`)."""
        raise NotImplementedError

    def check_direction(self, src: str, tgt: str) -> tuple[str, str]:
        s, t = normalize_lang(src), normalize_lang(tgt)
        if not self.supports(s, t):
            raise unsupported(self.name, src, tgt, self.pairs(), self._hint())
        return s, t

    def translate(self, texts: list[str], src: str, tgt: str) -> list[str]:
        return translate_nonempty(self, texts, src, tgt, self._translate_batch)


def translate_nonempty(tr: BaseTranslator, texts: Sequence[str], src: str, tgt: str,
                       fn: Callable[[list[str], str, str], list[str]]) -> list[str]:
    """Run `fn` on the non-blank texts only; blank ones map to `''`, same language is the identity."""
    items = check_texts(texts)
    s, t = normalize_lang(src), normalize_lang(tgt)
    if canonical_lang(s) == canonical_lang(t):
        return list(items)
    s, t = tr.check_direction(src, tgt)
    idx = [i for i, x in enumerate(items) if x.strip()]
    out = [""] * len(items)
    if not idx:
        return out
    res = fn([items[i] for i in idx], s, t)
    if len(res) != len(idx):
        raise RuntimeError(f"{tr.name} returned {len(res)} translations for {len(idx)} texts")
    for i, r in zip(idx, res):
        out[i] = r
    return out
