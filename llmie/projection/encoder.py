"""Subword-token states of a Hugging Face encoder over raw text, with character offsets.

Aligners work on the tokens of the raw strings (no pre-splitting into words, which wrecks
embeddings for scripts without spaces) and map tokens to words through offsets. Loads are cached
per (model, layer); layers above the one used are dropped, which saves their compute.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from llmie.projection.words import Word


@dataclass
class TokenStates:
    hidden: torch.Tensor          # (T, H) content tokens only (no special tokens)
    offsets: np.ndarray           # (T, 2) character offsets of each content token
    n_tokens: int                 # including special tokens (for length checks)


class TextTooLong(ValueError):
    pass


def fast_dtype(device=None) -> torch.dtype:
    """bfloat16 where `device` ("auto" when None) computes it natively, else float32 (see `llmie.device`)."""
    from llmie.device import fast_dtype as _fast

    return _fast(device)


@lru_cache(maxsize=4)
def load_encoder(model: str = "embedded", layer: int | None = 8, dtype: str = "auto", device: str | None = "auto"):
    """(tokenizer, model on `device`) with layers above `layer` removed; `layer=None` keeps all.

    dtype: "auto" (see `fast_dtype`, for that device), "float32" or "bfloat16". device: see `llmie.device`.
    """
    from llmie.device import resolve_device

    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from llmie.models import resolve_encoder

    hf_logging.disable_progress_bar()

    path = resolve_encoder(model)
    tok = AutoTokenizer.from_pretrained(path)
    try:  # BERT-style models: skip the unused pooler (e5 ships none)
        enc = AutoModel.from_pretrained(path, dtype=torch.float32, add_pooling_layer=False)
    except TypeError:
        enc = AutoModel.from_pretrained(path, dtype=torch.float32)
    enc.eval()
    dev = resolve_device(device)
    enc.to(device=dev, dtype=fast_dtype(dev) if dtype == "auto" else getattr(torch, dtype))
    if layer is not None and hasattr(enc, "encoder") and hasattr(enc.encoder, "layer"):
        enc.encoder.layer = enc.encoder.layer[:layer]
    return tok, enc


class TokenEncoder:
    def __init__(self, model: str = "embedded", layer: int = 8, batch_size: int = 32, max_length: int = 512,
                 dtype: str = "auto", device: str | None = "auto"):
        self.tokenizer, self.model = load_encoder(model, layer, dtype, device)
        self.device = next(self.model.parameters()).device
        self.batch_size, self.max_length = batch_size, max_length

    def encode(self, texts: list[str]) -> list[TokenStates | TextTooLong]:
        """States for each text; texts longer than `max_length` tokens give a TextTooLong (never truncated)."""
        enc = self.tokenizer(texts, add_special_tokens=True, return_offsets_mapping=True, truncation=False)
        out: list[TokenStates | TextTooLong | None] = [None] * len(texts)
        ok = []
        for i, ids in enumerate(enc["input_ids"]):
            if len(ids) > self.max_length:
                out[i] = TextTooLong(f"{len(ids)} tokens > max_length {self.max_length}")
            else:
                ok.append(i)
        ok.sort(key=lambda i: len(enc["input_ids"][i]))
        pad = self.tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for b in range(0, len(ok), self.batch_size):
                idx = ok[b:b + self.batch_size]
                L = max(len(enc["input_ids"][i]) for i in idx)
                ids = torch.full((len(idx), L), pad, dtype=torch.long)
                mask = torch.zeros((len(idx), L), dtype=torch.long)
                for r, i in enumerate(idx):
                    n = len(enc["input_ids"][i])
                    ids[r, :n] = torch.tensor(enc["input_ids"][i])
                    mask[r, :n] = 1
                ids, mask = ids.to(self.device), mask.to(self.device)
                hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
                for r, i in enumerate(idx):
                    offs = np.asarray(enc["offset_mapping"][i])
                    text = texts[i]
                    keep = [k for k, (s, e) in enumerate(offs) if e > s and text[s:e].strip()]
                    out[i] = TokenStates(hidden[r, keep].float(), offs[keep].reshape(-1, 2),
                                         len(enc["input_ids"][i]))
        return out  # type: ignore[return-value]


def token_word_matrix(offsets: np.ndarray, words: list[Word]) -> np.ndarray:
    """(T x W) boolean incidence: token t overlaps word w."""
    m = np.zeros((len(offsets), len(words)), dtype=bool)
    if not len(offsets) or not words:
        return m
    ws = np.array([w.start for w in words])
    we = np.array([w.end for w in words])
    for t, (s, e) in enumerate(offsets):
        m[t] = (we > s) & (ws < e)
    return m
