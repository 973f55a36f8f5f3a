"""NLLB-200 (or any NLLB-tokenizer seq2seq model) through transformers; for users with a GPU or internet.

`NLLBTranslator(model="facebook/nllb-200-distilled-600M")` takes a hub id or a local folder. Nothing is loaded
until the first translation (or `pairs()`); a path that does not exist fails at construction. Language codes
are mapped to NLLB's `xxx_Scrp` form by `nllb_code` (`pt` -> `por_Latn`, `zh` -> `zho_Hans`, `ar` -> `arb_Arab`).
"""
from __future__ import annotations

import threading
from pathlib import Path

from llmie.mt.base import BaseTranslator, default_script, lang3
from llmie.lang import normalize_lang

DEFAULT_MODEL = "facebook/nllb-200-distilled-600M"

# Macrolanguages (what `normalize_lang` returns for 2-letter codes) -> the individual language NLLB trained on.
_NLLB_LANG = {
    "ara": "arb", "fas": "pes", "swa": "swh", "nor": "nob", "msa": "zsm", "uzb": "uzn", "lav": "lvs",
    "mon": "khk", "kur": "kmr", "fil": "tgl", "orm": "gaz", "pus": "pbt", "sqi": "als", "yid": "ydd",
    "aze": "azj", "nep": "npi", "ori": "ory", "mlg": "plt", "que": "quy",
}
# Scripts NLLB uses where langcodes' likely script differs or is missing.
_NLLB_SCRIPT = {"yue": "Hant", "kas": "Arab", "knc": "Latn", "taq": "Latn", "bjn": "Latn", "ace": "Latn"}


def nllb_code(code: str) -> str:
    """NLLB language token for any accepted code: `pt`/`por`/`por_Latn` -> `por_Latn`, `zh-Hant` -> `zho_Hant`."""
    norm = normalize_lang(code)
    base, _, script = norm.partition("_")
    base = _NLLB_LANG.get(base, base)
    script = script or _NLLB_SCRIPT.get(base) or default_script(base) or default_script(lang3(code))
    if not script:
        raise ValueError(f"no script known for language {code!r}; pass an NLLB code such as 'por_Latn'")
    return f"{base}_{script}"


def _looks_like_path(model: str) -> bool:
    """Hub ids are `owner/name`; anything absolute, relative-dotted, home-based or deeper is a path."""
    return (model.startswith(("./", "../", "~", ".\\")) or Path(model).is_absolute()
            or model.count("/") > 1 or "\\" in model)


class NLLBTranslator(BaseTranslator):
    """Batched `generate` with `tokenizer.src_lang` and `forced_bos_token_id` set to the target code."""

    name = "nllb"

    def __init__(self, model: str | Path = DEFAULT_MODEL, *, device: str | None = None, num_beams: int = 1,
                 batch_size: int = 16, max_new_tokens: int | None = None, max_input_tokens: int = 512,
                 dtype: str | None = None):
        model = str(model)
        p = Path(model).expanduser()
        if p.exists():
            if not (p / "config.json").is_file():
                raise FileNotFoundError(f"NLLB model folder {model!r} has no config.json; point `model` at a "
                                        f"folder saved with save_pretrained (model + tokenizer)")
            model = str(p.resolve())
        elif _looks_like_path(model):
            raise FileNotFoundError(f"NLLB model folder {model!r} does not exist; pass a local folder saved with "
                                    f"save_pretrained or a hub id such as {DEFAULT_MODEL!r}")
        self.model = model
        self.model_id = model
        self.device = device
        self.num_beams = num_beams
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.max_input_tokens = max_input_tokens
        self.dtype = dtype
        self._tok = None
        self._mdl = None
        self._langs: dict[str, list[str]] | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- loading
    def _tokenizer(self):
        if self._tok is None:
            from transformers import AutoTokenizer

            try:
                self._tok = AutoTokenizer.from_pretrained(self.model)
            except OSError as e:
                raise RuntimeError(f"cannot load the NLLB tokenizer from {self.model!r}: {e}") from e
        return self._tok

    def _model(self):
        if self._mdl is None:
            import torch
            from transformers import AutoModelForSeq2SeqLM

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            kw = {"dtype": getattr(torch, self.dtype)} if self.dtype else {}
            try:
                mdl = AutoModelForSeq2SeqLM.from_pretrained(self.model, **kw)
            except OSError as e:
                raise RuntimeError(f"cannot load the NLLB model from {self.model!r}: {e}") from e
            self._mdl = mdl.to(device).eval()
            self.device = device
        return self._mdl

    def languages(self) -> dict[str, list[str]]:
        """NLLB base code -> the NLLB codes the tokenizer has for it (`zho` -> `['zho_Hans', 'zho_Hant']`)."""
        if self._langs is None:
            from transformers.models.nllb.tokenization_nllb import FAIRSEQ_LANGUAGE_CODES

            tok = self._tokenizer()
            unk = tok.unk_token_id
            vocab = tok.get_vocab()
            langs: dict[str, list[str]] = {}
            for c in FAIRSEQ_LANGUAGE_CODES:
                if vocab.get(c, unk) != unk:
                    langs.setdefault(c.split("_")[0], []).append(c)
            self._langs = langs
        return self._langs

    def pairs(self) -> set[tuple[str, str]]:
        langs = list(self.languages())
        return {(a, b) for a in langs for b in langs if a != b}

    def supports(self, src: str, tgt: str) -> bool:
        """Like `pairs()` but through `nllb_code`, so macrolanguages match (`ar` -> `arb`, `fa` -> `pes`)."""
        langs = self.languages()
        s, t = nllb_code(src).split("_")[0], nllb_code(tgt).split("_")[0]
        return s != t and s in langs and t in langs

    def _code(self, code: str) -> str:
        want = nllb_code(code)
        have = self.languages().get(want.split("_")[0], [])
        if want in have:
            return want
        if have:
            return have[0]
        raise ValueError(f"{self.model!r} has no language token for {code!r} (looked for {want!r})")

    # ----------------------------------------------------------------- translating
    def _translate_batch(self, texts: list[str], src: str, tgt: str) -> list[str]:
        import torch

        src_code, tgt_code = self._code(src), self._code(tgt)
        mdl = self._model()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = [""] * len(texts)
        with self._lock:  # the tokenizer's src_lang is shared state
            tok = self._tokenizer()
            tok.src_lang = src_code
            bos = tok.convert_tokens_to_ids(tgt_code)
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                          max_length=self.max_input_tokens).to(mdl.device)
                max_new = self.max_new_tokens or int(enc["input_ids"].shape[1] * 2 + 16)
                with torch.inference_mode():
                    gen = mdl.generate(**enc, forced_bos_token_id=bos, num_beams=self.num_beams,
                                       max_new_tokens=max_new, do_sample=False)
                for i, s in zip(idx, tok.batch_decode(gen, skip_special_tokens=True)):
                    out[i] = s.strip()
        return out
