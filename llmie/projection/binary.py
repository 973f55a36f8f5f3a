"""BinaryAlign-style word aligner (Latouche et al. 2024), the PVP proposer (notes/pvp.md §1.2).

For each source word i the model reads the tokenizer's pair encoding ``<s> src </s></s> tgt </s>``
in which the subword tokens of word i are wrapped in a marker token before and after; a head on the
encoder's last hidden state gives a sigmoid per target token, and

    P(i, j) = max over the subword tokens of target word j,      a(i, j) = P(i, j) > threshold (δ = 0.5).

One forward pass per source word (source words that share their tokens share the pass).

WORD_SEP marker: the tokenizer has no spare token, so the marker is the tokenizer's ``mask_token_id``
(``<mask>``, 250001 for the XLM-R vocabulary of multilingual-e5-small), inserted as an *id* into the
encoded pair, never as text (``"<mask>"`` inside a sentence stays ordinary text). It is configurable
(``marker_id``); a trained aligner folder records the id it was trained with and that id is used.

Tokens are mapped to words through character offsets (``token_word_matrix``); tokens made only of
whitespace are ignored. A pair whose encoding (markers included) exceeds ``max_length`` tokens gets a
``TextTooLong`` in its slot: nothing is ever truncated.

Aligner folder (``save_aligner`` / ``load_binary_model``)::

    aligner.json                      base model spec, marker id, layer count, lora flag, threshold, training summary
    adapter_config.json               peft LoRA adapter (when lora)
    adapter_model.safetensors         peft LoRA adapter (when lora)
    encoder.safetensors               the fine-tuned encoder weights (only when trained without LoRA)
    head.safetensors                  the span-similarity head (``SpanSimHead``: scale, bias, linear 1 x H)

Head (a documented deviation from BinaryAlign's linear head): ``SpanSimHead`` starts as a similarity
aligner and is sharpened by training; with a linear head the CPU budget never learned to use the marker.

``adapter="embedded"`` is the folder shipped in the package (``llmie/data/aligners/binary-e5-small``,
trained by ``recipes/binary_aligner.yaml``). A LoRA adapter is merged into the encoder weights at load
time (W += alpha/r * B @ A), so inference needs no peft.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from llmie.projection.encoder import TextTooLong, token_word_matrix
from llmie.projection.words import Word

EMBEDDED_ADAPTER = Path(__file__).resolve().parents[1] / "data" / "aligners" / "binary-e5-small"
ALIGNER_FILE, HEAD_FILE, ENCODER_FILE = "aligner.json", "head.safetensors", "encoder.safetensors"
LORA_CONFIG_FILE, LORA_WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"
FORMAT = "llmie-binary-aligner"


# --------------------------------------------------------------------------- model


HEADS = ("sim", "softmax", "align")
OPTIONAL_HEAD_WEIGHTS = {"gate", "offset"}   # added to the align head later; absent = gate 0 (no effect)


class SpanSimHead(torch.nn.Module):
    """Token logit = scale * cos(h_t, mean state of the marked tokens) + bias + w·h_t.

    It starts out as a similarity aligner (the encoder's middle layers already align across languages),
    so LoRA fine-tuning only has to sharpen it: a plain linear head has to learn from scratch that the
    marker matters, which a CPU budget does not reach (900 steps left it a constant predictor).
    With `softmax`, the similarity term is a log-softmax over the target tokens (they compete for the
    marked word, as in awesome-align): dev AER untrained 63.1 vs 76.7 for the plain similarity.
    """

    def __init__(self, hidden: int, marker_id: int, scale: float | None = None, bias: float | None = None,
                 softmax: bool = False):
        super().__init__()
        self.softmax = softmax
        scale = scale if scale is not None else (20.0 if softmax else 10.0)
        bias = bias if bias is not None else (1.0 if softmax else -6.0)
        self.linear = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)
        self.scale = torch.nn.Parameter(torch.tensor(float(scale)))
        self.bias = torch.nn.Parameter(torch.tensor(float(bias)))
        self.register_buffer("marker", torch.tensor(int(marker_id)), persistent=False)

    def forward(self, h: torch.Tensor, input_ids: torch.Tensor, tgt_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = h.to(self.scale.dtype)                       # the head runs in float32 on a bf16 encoder
        m = input_ids == self.marker
        inside = (m.cumsum(1) == 1) & ~m                  # tokens between the two markers
        w = inside.unsqueeze(-1).to(h.dtype)
        span = (h * w).sum(1) / w.sum(1).clamp(min=1)
        z = self.scale * torch.nn.functional.cosine_similarity(h, span.unsqueeze(1), dim=-1)
        if self.softmax:   # target tokens compete for the marked word, as in awesome-align's softmax
            if tgt_mask is None:
                raise ValueError("a softmax head needs the target-token mask")
            z = torch.log_softmax(z.masked_fill(~tgt_mask, -1e4), dim=1)
        return z + self.bias + self.linear(h).squeeze(-1)


class SpanAlignHead(torch.nn.Module):
    """Token logit = scale * ½(log p_t + log q_t) + bias + w·h_t: awesome-align's two softmaxes, for a span.

    p_t = max over the marked tokens s of softmax_t'(τ cos(h_s, h_t')) (source → target: the best source
    word of the span that points at t); q_t = Σ over the marked tokens s of softmax_s'(τ cos(h_t, h_s')) over
    *all* source tokens (target → source: how much of t belongs to the span rather than to its neighbours).
    Why: the mean-of-span similarity of `SpanSimHead` lets a long span's mean drift away from its edge words
    ("Comité" of "Health and Safety Committee" fell below 0.5) and gives an article next to the span
    ("*la* Comisión") no reason to stay out; the intersection of both directions is what makes awesome-align
    precise. With scale 1 and bias -log 0.3 an untrained head is awesome's threshold-0.3 rule on this
    encoder; training sharpens τ, scale, bias and the encoder (LoRA).
    """

    def __init__(self, hidden: int, marker_id: int, special_ids: list[int] | None = None, tau: float = 20.0,
                 scale: float = 1.0, threshold: float = 0.3):
        super().__init__()
        self.linear = torch.nn.Linear(hidden, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)
        self.tau = torch.nn.Parameter(torch.tensor(float(tau)))
        self.scale = torch.nn.Parameter(torch.tensor(float(scale)))
        self.bias = torch.nn.Parameter(torch.tensor(-float(scale) * math.log(threshold)))
        # absolute-similarity gate: softmaxes are relative, so a target that does not translate the source
        # still has a "best" word; gate * (max cos to a span token - offset) lets training (pair augmentation's
        # negatives) learn to abstain there. gate 0 at init: the untrained head is unchanged (and a folder
        # saved without these two weights loads as gate 0)
        self.gate = torch.nn.Parameter(torch.tensor(0.0))
        self.offset = torch.nn.Parameter(torch.tensor(0.5))
        self.register_buffer("marker", torch.tensor(int(marker_id)), persistent=False)
        self.register_buffer("special", torch.tensor(sorted(set(special_ids or [])), dtype=torch.long),
                             persistent=False)

    def forward(self, h: torch.Tensor, input_ids: torch.Tensor, tgt_mask: torch.Tensor | None = None,
                return_aligned: bool = False):
        """Logits (B, L); with `return_aligned` also, per token t, max over source tokens s of
        min(P(t | s), P(s | t)): how strongly it aligns to *some* source word in awesome's both-directions
        sense (Algorithm 1's hole rule needs the unaligned words)."""
        if tgt_mask is None:
            raise ValueError("an align head needs the target-token mask")
        h = torch.nn.functional.normalize(h.to(self.scale.dtype), dim=-1)
        m = input_ids == self.marker
        inside = (m.cumsum(1) == 1) & ~m                                  # the marked span's tokens
        src = (tgt_mask.cumsum(1) == 0) & ~m & ~torch.isin(input_ids, self.special)
        src[:, 0] = False                                                 # <s>/[CLS]
        sim = self.tau * h @ h.transpose(1, 2)                            # (B, L, L) scaled cosine
        neg = -1e4
        fwd = torch.log_softmax(sim.masked_fill(~tgt_mask.unsqueeze(1), neg), dim=-1)     # s -> t over targets
        log_p = fwd.masked_fill(~inside.unsqueeze(-1), neg).max(dim=1).values             # best span token
        bwd = torch.softmax(sim.masked_fill(~src.unsqueeze(1), neg), dim=-1)               # t -> s over sources
        log_q = torch.log((bwd * inside.unsqueeze(1).to(bwd.dtype)).sum(-1).clamp(min=1e-6))
        cos = (sim / self.tau).masked_fill(~inside.unsqueeze(-1), -1.0).max(dim=1).values   # best span token
        z = self.scale * 0.5 * (log_p + log_q) + self.bias + self.linear(h).squeeze(-1) \
            + self.gate * (cos - self.offset)
        if not return_aligned:
            return z
        # awesome's intersection: t aligns to source token s when both softmaxes pick each other
        both = torch.minimum(fwd.exp().masked_fill(~src.unsqueeze(-1), 0.0), bwd.transpose(1, 2))
        return z, both.max(dim=1).values


class BinaryAlignModel(torch.nn.Module):
    """Encoder + span-similarity head: one logit per token for the marked word (or span)."""

    def __init__(self, encoder: torch.nn.Module, marker_id: int, head: str = "sim",
                 special_ids: list[int] | None = None):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
        self.encoder = encoder
        self.head_kind = head
        if head == "align":
            self.head = SpanAlignHead(encoder.config.hidden_size, marker_id, special_ids)
        else:
            self.head = SpanSimHead(encoder.config.hidden_size, marker_id, softmax=head == "softmax")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                tgt_mask: torch.Tensor | None = None, return_aligned: bool = False):
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if return_aligned:   # (logits, per-token alignment strength): `align` head only
            return self.head(h, input_ids, tgt_mask, return_aligned=True)
        return self.head(h, input_ids, tgt_mask)


def load_base(model: str = "embedded", layers: int | None = None):
    """(tokenizer, encoder) of a fresh (uncached: adapters are merged into it) encoder copy."""
    from transformers import AutoModel, AutoTokenizer

    from llmie.models import resolve_encoder

    path = resolve_encoder(model)
    tok = AutoTokenizer.from_pretrained(path)
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"encoder {model!r}: the binary aligner needs a fast tokenizer (character offsets)")
    try:  # BERT-likes: the pooler is unused (and absent from e5 checkpoints)
        enc = AutoModel.from_pretrained(path, dtype=torch.float32, add_pooling_layer=False)
    except TypeError:
        enc = AutoModel.from_pretrained(path, dtype=torch.float32)
    if layers is not None and hasattr(enc, "encoder") and hasattr(enc.encoder, "layer"):
        enc.encoder.layer = enc.encoder.layer[:layers]
    return tok, enc


def n_layers(encoder: torch.nn.Module) -> int | None:
    layer = getattr(getattr(encoder, "encoder", None), "layer", None)
    return len(layer) if layer is not None else None


def default_marker(tok) -> int:
    if tok.mask_token_id is None:
        raise ValueError("the tokenizer has no mask token; pass marker_id explicitly")
    return int(tok.mask_token_id)


def _merge_lora(encoder: torch.nn.Module, folder: Path) -> None:
    """W += scaling * B @ A for every LoRA pair of a peft adapter folder (plain LoRA on Linear layers)."""
    from safetensors.torch import load_file

    cfg = json.loads((folder / LORA_CONFIG_FILE).read_text())
    if (cfg.get("use_dora") or cfg.get("fan_in_fan_out") or cfg.get("bias", "none") != "none"
            or cfg.get("modules_to_save") or cfg.get("trainable_token_indices") or cfg.get("peft_type") != "LORA"):
        raise ValueError(f"{folder}: unsupported adapter (only plain LoRA on Linear layers is merged)")
    weights = load_file(str(folder / LORA_WEIGHTS_FILE))
    modules = dict(encoder.named_modules())
    n = 0
    for key, a in weights.items():
        if ".lora_A." not in key:
            continue
        name = key.split(".lora_A.")[0].removeprefix("base_model.model.")
        b = weights[key.replace(".lora_A.", ".lora_B.")]
        short = name.rsplit(".", 1)[-1]
        r = cfg.get("rank_pattern", {}).get(short, cfg["r"])
        alpha = cfg.get("alpha_pattern", {}).get(short, cfg["lora_alpha"])
        scaling = alpha / (r ** 0.5 if cfg.get("use_rslora") else r)
        mod = modules.get(name)
        if mod is None:
            if name.startswith("encoder.layer.") and int(name.split(".")[2]) >= (n_layers(encoder) or 0):
                continue  # a layer dropped by `layers`
            raise ValueError(f"{folder}: LoRA weight for unknown module {name!r}")
        with torch.no_grad():
            mod.weight += scaling * (b.float() @ a.float())
        n += 1
    if n == 0:
        raise ValueError(f"{folder}: no LoRA weights found in {LORA_WEIGHTS_FILE}")


def resolve_adapter(adapter: str | Path | None, embedded: Path = EMBEDDED_ADAPTER) -> Path | None:
    if adapter is None:
        return None
    if str(adapter) == "embedded":
        folder = embedded
        if not (folder / ALIGNER_FILE).is_file():
            raise FileNotFoundError(f"the shipped binary aligner is missing ({folder}); reinstall llmie or "
                                    "train one with `train_binary_aligner` (recipes/binary_aligner.yaml)")
        return folder
    folder = Path(adapter).expanduser()
    if not (folder / ALIGNER_FILE).is_file():
        raise FileNotFoundError(f"binary aligner {adapter!r}: no {ALIGNER_FILE} in that folder")
    return folder


def load_binary_model(model: str = "embedded", adapter: str | Path | None = "embedded",
                      marker_id: int | None = None, layers: int | None = None, *, fmt: str = FORMAT,
                      embedded: Path = EMBEDDED_ADAPTER, factory=None, dtype: str = "auto",
                      device: str | None = "auto"):
    """(tokenizer, BinaryAlignModel in eval mode on `device`, marker id, aligner.json dict or {}).

    `fmt`/`embedded` let other token-head models (the PVP projector) share this folder format.
    dtype "auto": the encoder runs in bfloat16 where the CPU/GPU computes it natively (see `fast_dtype`),
    the head in float32. device: "auto" (CUDA when present), "cpu", "cuda", "cuda:N" (see `llmie.device`).
    """
    from llmie.device import resolve_device

    dev = resolve_device(device)
    folder = resolve_adapter(adapter, embedded)
    meta: dict = {}
    if folder is not None:
        meta = json.loads((folder / ALIGNER_FILE).read_text())
        if meta.get("format") != fmt:
            raise ValueError(f"{folder / ALIGNER_FILE}: not a {fmt} file")
        if meta.get("base_model") != model:
            warnings.warn(f"binary aligner {folder} was trained on {meta.get('base_model')!r}, loading it on "
                          f"{model!r}", stacklevel=3)
        layers = meta.get("layers", layers)
    tok, enc = load_base(model, layers)
    if marker_id is None:
        marker_id = meta.get("marker_id") if meta.get("marker_id") is not None else default_marker(tok)
    net = (factory or BinaryAlignModel)(enc, int(marker_id), head=meta.get("head", "sim"),
                                        special_ids=tok.all_special_ids)
    if folder is not None:
        from safetensors.torch import load_file

        if meta.get("lora"):
            _merge_lora(enc, folder)
        elif (folder / ENCODER_FILE).is_file():
            state = load_file(str(folder / ENCODER_FILE))
            missing, unexpected = enc.load_state_dict(state, strict=False)
            if unexpected:
                raise ValueError(f"{folder / ENCODER_FILE}: unexpected weights {unexpected[:3]}")
        missing, unexpected = net.head.load_state_dict(load_file(str(folder / HEAD_FILE)), strict=False)
        if unexpected or set(missing) - OPTIONAL_HEAD_WEIGHTS:
            raise ValueError(f"{folder / HEAD_FILE}: head weights do not match a {meta.get('head', 'sim')!r} "
                             f"head (missing {missing}, unexpected {unexpected})")
        if marker_id != meta.get("marker_id"):
            warnings.warn(f"marker_id {marker_id} differs from the one the aligner was trained with "
                          f"({meta.get('marker_id')})", stacklevel=3)
    if dtype != "float32":
        from llmie.projection.encoder import fast_dtype

        net.encoder.to(fast_dtype(dev) if dtype == "auto" else getattr(torch, dtype))
    net.to(dev)
    net.eval()
    return tok, net, int(marker_id), meta


# --------------------------------------------------------------------------- encoding


@dataclass
class PairEncoding:
    """One pair's tokenizer pair encoding, with content-token positions and token -> word maps."""

    ids: list[int]                 # <s> src </s></s> tgt </s> (no markers)
    src_pos: np.ndarray            # positions in `ids` of the source content tokens
    tgt_pos: np.ndarray            # positions in `ids` of the target content tokens
    src_tw: np.ndarray             # (len(src_pos) x r) token overlaps source word
    tgt_tw: np.ndarray             # (len(tgt_pos) x u) token overlaps target word
    # source word i -> (first, last) position of its tokens in `ids`; words sharing tokens share a key
    spans: list[tuple[int, int] | None] = field(default_factory=list)

    def with_marker(self, span: tuple[int, int], marker_id: int) -> list[int]:
        a, b = span
        return self.ids[:a] + [marker_id] + self.ids[a:b + 1] + [marker_id] + self.ids[b + 1:]

    @property
    def n_tokens(self) -> int:
        return len(self.ids) + 2


def _content(offsets, text: str, seq: list[int | None], which: int) -> tuple[np.ndarray, np.ndarray]:
    pos = [k for k, (s, e) in enumerate(offsets) if seq[k] == which and e > s and text[s:e].strip()]
    return np.asarray(pos, dtype=np.int64), np.asarray([offsets[k] for k in pos], dtype=np.int64).reshape(-1, 2)


def encode_pairs(tok, pairs: list[tuple[str, str]], src_words: list[list[Word]],
                 tgt_words: list[list[Word]]) -> list[PairEncoding]:
    if not pairs:
        return []
    enc = tok([p[0] for p in pairs], [p[1] for p in pairs], add_special_tokens=True,
              return_offsets_mapping=True, truncation=False, verbose=False)
    out = []
    for k, ((s, t), sw, tw) in enumerate(zip(pairs, src_words, tgt_words)):
        offs, seq = enc["offset_mapping"][k], enc.sequence_ids(k)
        sp, so = _content(offs, s, seq, 0)
        tp, to = _content(offs, t, seq, 1)
        pe = PairEncoding(list(enc["input_ids"][k]), sp, tp, token_word_matrix(so, sw), token_word_matrix(to, tw))
        for i in range(len(sw)):
            toks = sp[pe.src_tw[:, i]]
            pe.spans.append((int(toks.min()), int(toks.max())) if len(toks) else None)
        out.append(pe)
    return out


def pad_batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), L), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[r, :len(s)] = 1
    return ids, mask


def marked_target_probs(model, tokenizer, encs: list[PairEncoding], jobs: list[tuple], marker_id: int,
                        batch_size: int, aligned: list | None = None) -> list[np.ndarray]:
    """Sigmoid per target token for each job `(pair index, marked token range, ...)`, in job order.

    One forward pass per job, in length-sorted padded batches; shared by the word aligner (a marked word)
    and the PVP projector (a marked span). With an `aligned` list (an `align` head), it is filled in job
    order with each target token's alignment strength to any source token (`SpanAlignHead`).
    """
    order = sorted(range(len(jobs)), key=lambda j: len(encs[jobs[j][0]].ids))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(jobs)
    if aligned is not None:
        aligned[:] = [np.zeros(0, dtype=np.float32)] * len(jobs)
    from llmie.device import model_device

    dev = model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for b in range(0, len(order), batch_size):
                chunk = order[b:b + batch_size]
                ids, mask = pad_batch([encs[jobs[j][0]].with_marker(jobs[j][-1], marker_id) for j in chunk], pad)
                tgt = torch.zeros(ids.shape, dtype=torch.bool)
                for r, j in enumerate(chunk):
                    tgt[r, torch.from_numpy(encs[jobs[j][0]].tgt_pos + 2)] = True
                if aligned is not None:
                    z, al = model(ids.to(dev), mask.to(dev), tgt.to(dev), return_aligned=True)
                    al = al.float().cpu().numpy()
                    for r, j in enumerate(chunk):
                        aligned[j] = al[r, encs[jobs[j][0]].tgt_pos + 2]
                else:
                    z = model(ids.to(dev), mask.to(dev), tgt.to(dev))
                p = torch.sigmoid(z.float()).cpu().numpy()
                for r, j in enumerate(chunk):
                    out[j] = p[r, encs[jobs[j][0]].tgt_pos + 2]  # both markers sit before the target
    finally:
        model.train(was_training)
    return out


# --------------------------------------------------------------------------- aligner


class BinaryAligner:
    """Word aligner with the interface of AwesomeAligner (`word_alignments`), plus `word_probabilities`."""

    name = "binary"

    def __init__(self, model: str = "embedded", adapter: str | Path | None = "embedded", threshold: float = 0.5,
                 batch_size: int = 32, max_length: int = 256, marker_id: int | None = None,
                 symmetric: bool = False, device: str | None = "auto"):
        self.tokenizer, self.model, self.marker_id, self.meta = load_binary_model(model, adapter, marker_id,
                                                                                  device=device)
        self.threshold, self.batch_size, self.max_length = threshold, batch_size, max_length
        self.symmetric = symmetric
        if symmetric:
            self.name = "binary-w"

    @classmethod
    def from_parts(cls, tokenizer, model: BinaryAlignModel, marker_id: int, threshold: float = 0.5,
                   batch_size: int = 32, max_length: int = 256) -> "BinaryAligner":
        """Wrap an in-memory model (used by training for its periodic evaluation)."""
        self = cls.__new__(cls)
        self.tokenizer, self.model, self.marker_id, self.meta = tokenizer, model, marker_id, {}
        self.threshold, self.batch_size, self.max_length = threshold, batch_size, max_length
        self.symmetric = False
        return self

    def word_probabilities(self, pairs: list[tuple[str, str]], src_words: list[list[Word]],
                           tgt_words: list[list[Word]],
                           rows: list[set[int]] | None = None) -> list[np.ndarray | Exception]:
        """(r x u) float P(i, j) per pair; a TextTooLong in the slot of a pair over `max_length` tokens.

        `rows` (per pair) limits the forward passes to those source words (projection needs only the words
        inside source spans); the other rows stay 0. `symmetric` (the PVP paper's BINARY-W): the mean of
        P(i, j) and the swapped direction's P(j, i) (one more pass per target word), which tells repeated
        target words apart ("Sacramento ... Sacramento").
        """
        out = self._probs(pairs, src_words, tgt_words, rows)
        if not self.symmetric:
            return out
        back = self._probs([(t, s) for s, t in pairs], tgt_words, src_words, None)
        for k, (m, b) in enumerate(zip(out, back)):
            if isinstance(m, Exception) or isinstance(b, Exception):
                out[k] = m if isinstance(m, Exception) else b
                continue
            both = (m + b.T) / 2
            if rows is not None:
                keep = np.zeros(len(m), dtype=bool)
                keep[sorted(rows[k])] = True
                both[~keep] = 0.0
            out[k] = both.astype(np.float32)
        return out

    def _probs(self, pairs: list[tuple[str, str]], src_words: list[list[Word]], tgt_words: list[list[Word]],
               rows: list[set[int]] | None) -> list[np.ndarray | Exception]:
        encs = encode_pairs(self.tokenizer, pairs, src_words, tgt_words)
        out: list[np.ndarray | Exception] = []
        jobs: list[tuple[int, tuple[int, int]]] = []   # (pair index, marked token span), one forward pass each
        for k, (pe, sw, tw) in enumerate(zip(encs, src_words, tgt_words)):
            if pe.n_tokens > self.max_length:
                out.append(TextTooLong(f"pair {k}: {pe.n_tokens} tokens (pair encoding + 2 markers) > max_length "
                                       f"{self.max_length}; not truncated"))
                continue
            out.append(np.zeros((len(sw), len(tw)), dtype=np.float32))
            want = range(len(pe.spans)) if rows is None else sorted(rows[k])
            jobs.extend((k, sp) for sp in dict.fromkeys(pe.spans[i] for i in want if pe.spans[i] is not None))
        probs = dict(zip(jobs, marked_target_probs(self.model, self.tokenizer, encs, jobs, self.marker_id,
                                                   self.batch_size)))
        for k, pe in enumerate(encs):
            m = out[k]
            if isinstance(m, Exception) or not m.size:
                continue
            tw = pe.tgt_tw
            for i, sp in enumerate(pe.spans):
                if sp is None or (rows is not None and i not in rows[k]):
                    continue   # a source word without tokens aligns to nothing
                tok_p = probs[(k, sp)]
                m[i] = np.where(tw, tok_p[:, None], 0.0).max(axis=0) if len(tok_p) else 0.0
        return out

    def project_batch(self, todo, bridge: bool = True, best_run: bool = True) -> list:
        """Algorithm 1 on the rows of the source-span words only (one pass per span word, not per word).

        `best_run`: a span whose aligned words split into runs keeps its best run (see algorithms.py).
        """
        from llmie.projection.algorithms import algorithm1

        probs = self.word_probabilities([(p.pair.src.text, p.pair.tgt_text) for p in todo],
                                        [p.src_words for p in todo], [p.tgt_words for p in todo],
                                        rows=[{i for ws in p.src_span_words for i in ws} for p in todo])
        out: list = []
        for p, m in zip(todo, probs):
            if isinstance(m, Exception):
                out.append(m)
                continue
            scores = np.stack([m[ws].max(axis=0) for ws in p.src_span_words]) if best_run else None
            # only span-word rows were computed, so unaligned-gap filling (which needs every row) is off
            out.append(algorithm1(m > self.threshold, p.src_span_words, p.tgt_words, p.edges, bridge=bridge,
                                  scores=scores, src_rel=p.src_rel if best_run else None, fill_gaps=False))
        return out

    def word_alignments(self, pairs: list[tuple[str, str]], src_words: list[list[Word]],
                        tgt_words: list[list[Word]]) -> list[np.ndarray | Exception]:
        """(r x u) boolean word alignment per pair: P(i, j) > threshold."""
        return [p if isinstance(p, Exception) else p > self.threshold
                for p in self.word_probabilities(pairs, src_words, tgt_words)]


# --------------------------------------------------------------------------- saving


def save_aligner(folder: str | Path, model: BinaryAlignModel, *, base_model: str, marker_id: int, lora: bool,
                 threshold: float = 0.5, training: dict | None = None, max_length: int | None = None,
                 fmt: str = FORMAT) -> Path:
    """Write an aligner folder. With `lora`, `model.encoder` must be a peft model (its adapter is saved)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in (LORA_CONFIG_FILE, LORA_WEIGHTS_FILE, ENCODER_FILE, HEAD_FILE, "README.md"):
        (folder / name).unlink(missing_ok=True)
    enc = model.encoder
    lora_cfg = None
    if lora:
        enc.save_pretrained(str(folder))
        (folder / "README.md").unlink(missing_ok=True)  # peft's model-card stub
        cfg_path = folder / LORA_CONFIG_FILE
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = base_model   # a spec, not this machine's cache path
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")
        lora_cfg = {k: cfg.get(k) for k in ("r", "lora_alpha", "lora_dropout", "target_modules")}
        base = enc.get_base_model()
    else:
        base = enc
        trainable = {k: v.detach().cpu().contiguous() for k, v in base.named_parameters() if v.requires_grad}
        save_file(trainable, str(folder / ENCODER_FILE))
    save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}, str(folder / HEAD_FILE))
    meta = {"format": fmt, "version": 1, "base_model": base_model, "marker_id": int(marker_id),
            "head": getattr(model, "head_kind", "sim"),
            "layers": n_layers(base), "lora": bool(lora), "lora_config": lora_cfg, "threshold": threshold,
            "max_length": max_length, "training": training or {}}
    (folder / ALIGNER_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    for p in folder.iterdir():
        p.chmod(0o644)   # safetensors writes 0600; the folder may ship as package data
    return folder
