"""PVP span-alignment projector (PVP paper §3.4-3.5): one forward pass per source span.

Input: the tokenizer's pair encoding `<s> src </s></s> tgt </s>` with the tokens of source span i
wrapped in a SPAN_SEP marker (the tokenizer's mask id, inserted as an id, as in the binary aligner);
a sigmoid per target token; word probability = max over its subword tokens; b(i, j) = P > γ (0.5);
Algorithm 3 turns the span x word matrix into target spans. The projector abstains (the sample
fails) when no valid span exists, which is what gives PVP its near-zero adversarial projection rate.

Head (a documented choice; the paper does not fix it), `head` in the recipe:
- `align` (shipped): awesome-align's two softmax directions for the marked span (`SpanAlignHead`): the best
  span token's source -> target probability and the target token's probability mass on the span, plus an
  absolute-similarity gate and a linear term. Untrained it is already a span aligner (all of EXP: EM 89.84,
  adversarial rate 65.8%); LoRA training sharpens it and learns to abstain on targets that do not translate
  the source (shipped, LoRA on every linear layer: 92.18, 2.9%). With
  `bridge`, Algorithm 1's hole rule applies: a hole of <= 2 target words that align to no source word
  (both-directions probability <= `UNALIGNED`) is filled.
- `sim`: `scale * cos(h_t, mean of the marked span's states) + bias + w·h_t`: the mean of a long span drifts
  away from its edge words (the first shipped projector: EXP EM 72.83).
The encoder keeps its first `layers` layers (8 for e5-small: middle layers align best).

Model folder: the binary aligner's format (`aligner.json` with format `llmie-pvp-projector`, a LoRA
adapter merged at load time, `head.safetensors`). `adapter="embedded"` is the projector shipped in
the package (`llmie/data/projectors/pvp-e5-small`, trained by `recipes/pvp_encoder.yaml`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from llmie.projection.algorithms import Projection, fill_unaligned_gaps, project_rows
from llmie.projection.binary import BinaryAlignModel, encode_pairs, load_binary_model, marked_target_probs
from llmie.projection.encoder import TextTooLong

FORMAT = "llmie-pvp-projector"
UNALIGNED = 0.3   # a target word whose best min(P(t|s), P(s|t)) over source words is <= this aligns to nothing
                  # (awesome's both-directions rule and its 0.3 threshold for this encoder)
EMBEDDED = Path(__file__).resolve().parents[1] / "data" / "projectors" / "pvp-e5-small"


class PVPModel(BinaryAlignModel):
    """Encoder + span-similarity head (the binary aligner's model; here the marker wraps a whole span)."""


def span_token_range(pe, word_idx: list[int]) -> tuple[int, int] | None:
    """(first, last) position in the pair encoding of the tokens of a run of source words."""
    rs = [pe.spans[w] for w in word_idx if pe.spans[w] is not None]
    if not rs:
        return None
    return min(r[0] for r in rs), max(r[1] for r in rs)


class PVPProjector:
    name = "pvp"

    def __init__(self, model: str = "embedded", adapter: str | Path | None = "embedded", threshold: float = 0.5,
                 batch_size: int = 32, max_length: int = 256, net=None, tokenizer=None, marker_id: int | None = None,
                 device: str | None = "auto"):
        if net is None:   # device: "auto" (CUDA when present), "cpu", "cuda", "cuda:N" (llmie.device)
            self.tokenizer, self.model, self.marker_id, self.meta = load_binary_model(
                model, adapter, marker_id, fmt=FORMAT, embedded=EMBEDDED, factory=PVPModel, device=device)
        else:  # an in-memory model (training's periodic evaluation)
            self.tokenizer, self.model, self.marker_id, self.meta = tokenizer, net, int(marker_id), {}
        self.threshold, self.batch_size, self.max_length = threshold, batch_size, max_length

    def span_probabilities(self, todo) -> list[np.ndarray | Exception]:
        """(m x u) word probabilities per prepared pair (see `project.prepare`)."""
        return [b if isinstance(b, Exception) else b[0] for b in self._probabilities(todo)]

    def _probabilities(self, todo) -> list[tuple[np.ndarray, np.ndarray | None] | Exception]:
        """Per prepared pair: (m x u) word probabilities and, for an `align` head, each target word's
        alignment strength to any source word (the largest over its tokens and all span passes), else None."""
        want_aligned = getattr(self.model, "head_kind", "sim") == "align"
        encs = encode_pairs(self.tokenizer, [(p.pair.src.text, p.pair.tgt_text) for p in todo],
                            [p.src_words for p in todo], [p.tgt_words for p in todo])
        out: list[np.ndarray | Exception] = []
        jobs: list[tuple[int, int, tuple[int, int]]] = []
        for k, (pe, p) in enumerate(zip(encs, todo)):
            if pe.n_tokens > self.max_length:
                out.append(TextTooLong(f"{pe.n_tokens} tokens (pair + 2 markers) > max_length {self.max_length}; "
                                       "not truncated"))
                continue
            out.append(np.zeros((len(p.src_span_words), len(p.tgt_words)), dtype=np.float32))
            for i, ws in enumerate(p.src_span_words):
                rng = span_token_range(pe, ws)
                if rng is not None:
                    jobs.append((k, i, rng))
        aligned: list | None = [] if want_aligned else None
        probs = marked_target_probs(self.model, self.tokenizer, encs, jobs, self.marker_id, self.batch_size,
                                    aligned=aligned)
        strength: dict[int, np.ndarray] = {}
        for n, ((k, i, _), tok_p) in enumerate(zip(jobs, probs)):
            if len(tok_p):
                out[k][i] = np.where(encs[k].tgt_tw, tok_p[:, None], 0.0).max(axis=0)  # type: ignore[index]
                if aligned is not None:
                    w = np.where(encs[k].tgt_tw, aligned[n][:, None], 0.0).max(axis=0)
                    strength[k] = np.maximum(strength[k], w) if k in strength else w
        return [o if isinstance(o, Exception) else
                (o, strength.get(k, np.zeros(o.shape[1], np.float32)) if want_aligned else None)
                for k, o in enumerate(out)]

    def project_batch(self, todo, bridge: bool = True, best_run: bool = True) -> list[Projection | Exception]:
        """Algorithm 3; `best_run`: a span whose words split into runs keeps its best run (algorithms.py).

        With `bridge` and an `align` head, Algorithm 1's hole rule applies too: a hole of at most 2 target
        words that align to no source word (strength <= `UNALIGNED`) is filled ("Universidad [de] Indiana")."""
        out: list[Projection | Exception] = []
        for p, r in zip(todo, self._probabilities(todo)):
            if isinstance(r, Exception):
                out.append(r)
                continue
            b, strength = r
            rows = b > self.threshold
            if bridge and strength is not None:
                rows = fill_unaligned_gaps(rows, (strength > UNALIGNED)[None, :])
            out.append(project_rows(rows, p.tgt_words, p.edges, bridge=bridge,
                                    scores=b if best_run else None, src_rel=p.src_rel if best_run else None))
        return out
