"""Train a BinaryAlign-style word aligner (llmie.projection.binary) on gold word alignments.

Data: the gold alignments of ``pairs`` (default enfr, roen, jaen, zhen) under ``data`` (default
``$LLMIE_DATA_DIR/word_alignment``). Only the first ``train_frac`` (80%) of each file is used: the last
20% is the held-out split of ``run_align_bench(split="heldout")`` and is never read here. Of those 80%,
the last ``eval_sents`` sentences per file are a dev slice for the periodic AER evaluation (model
selection) and are not trained on.

Text = gold tokens joined by single spaces, one Word per gold token (``gold_words``). One example per
(sentence, source word), plus with probability ``swap_prob`` per sentence the swapped direction (target
as source, all its words). Labels: 1 for every subword token of a target word linked to the source
word (sure ∪ possible), 0 for the other target tokens; loss = BCE averaged over the target tokens only
(source tokens, markers and special tokens are not scored), then over the batch.

Batches (``by_sentence``, default): each step takes up to ``batch_size`` marked words of ONE
(sentence, direction), so the labels within a batch differ only through the marker; with mixed batches
the model first settles on a per-target-token prior and learned to use the marker much more slowly
in pilots. AdamW with linear warmup/decay (separate ``head_lr`` for the head); LoRA (r, alpha, dropout
on query,value) plus the head, or full fine-tuning with ``lora: false`` (word embeddings stay frozen
unless ``train_embeddings: true``).
The best dev-AER checkpoint is kept and written with ``save_aligner``.

    python -m llmie.projection.train_binary recipes/binary_aligner.yaml --max_steps 20 --out /tmp/al
"""
from __future__ import annotations

import logging
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmie.bench.align import PAIRS, aer, gold_words, predict_links
from llmie.io import AlignedSentence, read_alignment
from llmie.projection.binary import (
    BinaryAligner,
    BinaryAlignModel,
    default_marker,
    encode_pairs,
    load_base,
    pad_batch,
    save_aligner,
)
from llmie.train.config import as_dict, coerce, flat_loader, recipe_main

log = logging.getLogger("llmie.train_binary")

@dataclass
class AlignerTrainConfig:
    """An `llmie train-aligner` recipe (recipes/binary_aligner.yaml; llmie.train.config reads it)."""

    model: str = "embedded"                 # encoder: embedded (multilingual-e5-small), a folder, a hub id
    layers: int | None = None               # encoder layers kept (None: all)
    marker_id: int | None = None            # word marker token id (None: the tokenizer's mask token)
    lora: bool = True                       # LoRA on lora_targets (False: full fine-tuning)
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["query", "value"])
    train_embeddings: bool = False          # full fine-tuning: also train the word embeddings
    lr: float = 5e-4                        # encoder / LoRA learning rate (AdamW, warmup + linear decay)
    head_lr: float | None = None            # head learning rate (None: = lr)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    batch_size: int = 16                    # marked words per step
    max_steps: int = 300
    max_length: int = 256                   # pair tokens incl. the markers; longer examples are skipped
    eval_every: int = 100                   # dev AER every N steps (0: never; model selection)
    eval_sents: int = 6                     # dev sentences per pair, from the tail of the train split
    log_every: int = 20
    seed: int = 13
    pairs: list[str] = field(default_factory=lambda: list(PAIRS))   # gold alignment files (enfr, roen, ...)
    data: str | None = None                 # folder of the gold alignments (None: $LLMIE_DATA_DIR/word_alignment)
    train_frac: float = 0.8                 # the first 80% train; the rest is the held-out bench split, never read
    limit_sents: int | None = None          # first N training sentences per pair (None: all)
    swap_prob: float = 0.5                  # per sentence, also the swapped direction
    by_sentence: bool = True                # a batch = marked words of ONE (sentence, direction)
    threshold: float = 0.5                  # link probability threshold saved with the aligner
    head: str = "sim"                       # sim | softmax | align
    bf16: str | bool = "auto"               # autocast bf16: auto (when the device has it) | true | false
    device: str = "auto"                    # auto (CUDA when present) | cpu | cuda | cuda:N (llmie.device)
    out: str = "runs/binary-aligner"        # aligner folder to write


DEFAULTS: dict = asdict(AlignerTrainConfig())   # the flat view (old callers index it); the dataclass is the source


# --------------------------------------------------------------------------- recipe


load_recipe = flat_loader(AlignerTrainConfig)  # (path, overrides) -> the flat dict the trainer takes


# --------------------------------------------------------------------------- data


@dataclass
class Example:
    ids: list[int]
    tgt_pos: np.ndarray      # positions (markers included) of the scored target tokens
    labels: np.ndarray       # 0/1 per scored target token
    group: int = 0           # index of its (sentence, direction): examples of one group share the pair


def split_sentences(cfg: dict) -> tuple[list[AlignedSentence], list[AlignedSentence]]:
    """(train, dev) sentences: first `train_frac` of each file, minus its last `eval_sents` (dev)."""
    from llmie.settings import data_dir

    root = Path(cfg["data"]) if cfg["data"] else data_dir() / "word_alignment"
    train, dev = [], []
    for name in cfg["pairs"]:
        sents = list(read_alignment(root / f"{name}.src-tgt", root / f"{name}.gold"))
        part = sents[:int(cfg["train_frac"] * len(sents))]      # the held-out tail is never touched
        k = int(cfg["eval_sents"] or 0)
        tr, dv = (part[:-k], part[-k:]) if k else (part, [])
        if cfg["limit_sents"]:
            tr = tr[:int(cfg["limit_sents"])]
        train += tr
        dev += dv
    return train, dev


def build_examples(tok, sents: list[AlignedSentence], marker_id: int, max_length: int, swap_prob: float,
                   rng: random.Random) -> tuple[list[Example], int]:
    """(examples, number skipped as too long)."""
    items = []  # (src tokens, tgt tokens, links)
    for s in sents:
        items.append((s.src_tokens, s.tgt_tokens, s.possible))
        if rng.random() < swap_prob:
            items.append((s.tgt_tokens, s.src_tokens, {(j, i) for i, j in s.possible}))
    src = [gold_words(x[0]) for x in items]
    tgt = [gold_words(x[1]) for x in items]
    encs = encode_pairs(tok, [(a[0], b[0]) for a, b in zip(src, tgt)], [a[1] for a in src], [b[1] for b in tgt])
    out, skipped = [], 0
    for g, ((_, _, links), pe) in enumerate(zip(items, encs)):
        by_src: dict[int, list[int]] = {}
        for i, j in links:
            by_src.setdefault(i, []).append(j)
        scored = pe.tgt_tw.any(axis=1)
        if not scored.any():
            continue
        for i, sp in enumerate(pe.spans):
            if sp is None:
                continue
            if pe.n_tokens > max_length:
                skipped += 1
                continue
            lab = pe.tgt_tw[:, by_src.get(i, [])].any(axis=1)
            out.append(Example(pe.with_marker(sp, marker_id), pe.tgt_pos[scored] + 2,
                               lab[scored].astype(np.float32), g))
    return out, skipped


def batches(examples: list[Example], batch_size: int, rng: random.Random, by_sentence: bool = False):
    """Endless stream of batches.

    by_sentence: each batch holds up to `batch_size` words of ONE (sentence, direction), so the same pair is
    seen with different marked words and only the marker tells the labels apart (much faster to learn
    the conditioning on the marker than from mixed batches); else shuffled examples, bucketed by length
    within chunks of 50 batches (less padding).
    """
    if by_sentence:
        groups: dict[int, list[int]] = {}
        for k, e in enumerate(examples):
            groups.setdefault(e.group, []).append(k)
        while True:
            order = list(groups)
            rng.shuffle(order)
            for g in order:
                idx = groups[g][:]
                rng.shuffle(idx)
                for b in range(0, len(idx), batch_size):
                    if b and len(idx) - b < batch_size // 2:
                        break   # drop a small remainder (the next epoch shuffles again)
                    yield [examples[k] for k in idx[b:b + batch_size]]
    while True:
        idx = list(range(len(examples)))
        rng.shuffle(idx)
        chunk = 50 * batch_size
        bs = []
        for c in range(0, len(idx), chunk):
            part = sorted(idx[c:c + chunk], key=lambda k: len(examples[k].ids))
            bs += [part[b:b + batch_size] for b in range(0, len(part), batch_size)]
        rng.shuffle(bs)
        for b in bs:
            yield [examples[k] for k in b]


def collate(batch: list[Example], pad_id: int):
    ids, mask = pad_batch([e.ids for e in batch], pad_id)
    labels = torch.zeros(ids.shape, dtype=torch.float32)
    scored = torch.zeros(ids.shape, dtype=torch.bool)
    for r, e in enumerate(batch):
        pos = torch.from_numpy(e.tgt_pos)
        labels[r, pos] = torch.from_numpy(e.labels)
        scored[r, pos] = True
    return ids, mask, labels, scored


def batch_loss(net: BinaryAlignModel, ids, mask, labels, scored) -> torch.Tensor:
    """BCE per example averaged over its scored target tokens, then over the batch (on the model's device)."""
    from llmie.device import model_device

    dev = model_device(net)
    ids, mask, labels, scored = ids.to(dev), mask.to(dev), labels.to(dev), scored.to(dev)
    logits = net(ids, mask, scored).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    bce = bce * scored
    return (bce.sum(1) / scored.sum(1).clamp(min=1)).mean()


# --------------------------------------------------------------------------- training


def _dev_aer(tok, net, marker_id, dev, cfg) -> float:
    aligner = BinaryAligner.from_parts(tok, net, marker_id, cfg["threshold"], 32, cfg["max_length"])
    return round(100 * aer(dev, predict_links(aligner, dev)), 2)


def _dev_loss(net, examples: list[Example], pad: int, batch_size: int = 32) -> float:
    """Mean BCE on the dev examples (eval mode): tells checkpoints apart when their AER ties."""
    was = net.training
    net.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        order = sorted(range(len(examples)), key=lambda k: len(examples[k].ids))
        for b in range(0, len(order), batch_size):
            chunk = [examples[k] for k in order[b:b + batch_size]]
            total += batch_loss(net, *collate(chunk, pad)).item() * len(chunk)
            n += len(chunk)
    net.train(was)
    return round(total / max(1, n), 5)


def trainable_encoder(cfg: dict) -> tuple[Any, Any, int]:
    """(tokenizer, encoder, marker id) of an encoder trainer's recipe (aligner and PVP projector): LoRA on
    `lora_targets`, or full fine-tuning with the word embeddings frozen unless `train_embeddings`."""
    tok, enc = load_base(cfg["model"], cfg["layers"])
    marker_id = int(cfg["marker_id"]) if cfg["marker_id"] is not None else default_marker(tok)
    if cfg["lora"]:
        from peft import LoraConfig, get_peft_model

        enc = get_peft_model(enc, LoraConfig(r=int(cfg["lora_r"]), lora_alpha=int(cfg["lora_alpha"]),
                                             lora_dropout=float(cfg["lora_dropout"]),
                                             target_modules=list(cfg["lora_targets"]), bias="none"))
    else:
        emb = enc.get_input_embeddings()
        if emb is not None and not cfg.get("train_embeddings", False):
            emb.weight.requires_grad_(False)
    return tok, enc, marker_id


def train_binary_aligner(cfg: AlignerTrainConfig | dict) -> Path:
    """Train per `cfg` (AlignerTrainConfig or its flat dict) and write the aligner folder `cfg['out']`; returns it."""
    from llmie.device import autocast, fast_dtype, resolve_device

    cfg = as_dict(coerce(AlignerTrainConfig, cfg))   # a flat dict (tests, eval scripts) is checked
    t_start = time.perf_counter()
    dev = resolve_device(cfg["device"])   # one process (this trainer has no multi-process path)
    seed = int(cfg["seed"])
    rng = random.Random(seed)
    torch.manual_seed(seed)
    np.random.seed(seed)

    tok, enc, marker_id = trainable_encoder(cfg)
    net = BinaryAlignModel(enc, marker_id, head=str(cfg["head"]), special_ids=tok.all_special_ids).to(dev)
    params = [p for p in net.parameters() if p.requires_grad]
    head_ids = {id(p) for p in net.head.parameters()}
    groups = [{"params": [p for p in params if id(p) not in head_ids]},
              {"params": list(net.head.parameters()), "weight_decay": 0.0,
               "lr": float(cfg["head_lr"] if cfg["head_lr"] is not None else cfg["lr"])}]
    n_trainable = sum(p.numel() for p in params)

    train_sents, dev_sents = split_sentences(cfg)
    examples, skipped = build_examples(tok, train_sents, marker_id, int(cfg["max_length"]),
                                       float(cfg["swap_prob"]), rng)
    if not examples:
        raise ValueError("no training examples (check pairs / data / max_length)")
    pos_rate = float(np.mean(np.concatenate([e.labels for e in examples])))
    log.info("binary aligner: %d train sentences -> %d examples (%d skipped > max_length), %d dev sentences, "
             "positive token rate %.3f, %d trainable parameters", len(train_sents), len(examples), skipped,
             len(dev_sents), pos_rate, n_trainable)

    steps = int(cfg["max_steps"])
    warm = max(1, int(cfg["warmup_ratio"] * steps))
    opt = torch.optim.AdamW(groups, lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm)))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    dev_examples = build_examples(tok, dev_sents, marker_id, int(cfg["max_length"]), 0.0, random.Random(seed))[0]
    stream = batches(examples, int(cfg["batch_size"]), rng, bool(cfg["by_sentence"]))
    probe = collate(examples[:int(cfg["batch_size"])], pad)

    def probe_loss() -> float:
        net.eval()
        with torch.no_grad():
            v = batch_loss(net, *probe).item()
        net.train()
        return round(v, 5)

    probe_start = probe_loss()
    losses: list[float] = []
    evals: list[dict] = []
    best: tuple[float, int, dict, float] | None = None
    every, log_every = int(cfg["eval_every"] or 0), int(cfg["log_every"] or 20)
    t_train, t_eval = time.perf_counter(), 0.0
    # bf16 autocast where the device computes it natively (as the PVP trainer); weights stay fp32
    use_bf16 = fast_dtype(dev) == torch.bfloat16 if cfg["bf16"] == "auto" else bool(cfg["bf16"])
    net.train()
    for step in range(1, steps + 1):
        with autocast(dev, torch.bfloat16, enabled=use_bf16):
            loss = batch_loss(net, *collate(next(stream), pad))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(round(loss.item(), 5))
        if step % log_every == 0 or step == steps:
            el = time.perf_counter() - t_train - t_eval
            log.info("step %d/%d loss %.4f (mean of last %d) lr %.2e %.2f s/step", step, steps,
                     float(np.mean(losses[-log_every:])), min(log_every, len(losses)),
                     sched.get_last_lr()[0], el / step)
        if dev_sents and every and (step % every == 0 or step == steps):
            t0 = time.perf_counter()
            a = _dev_aer(tok, net, marker_id, dev_sents, cfg)
            dl = _dev_loss(net, dev_examples, pad)
            t_eval += time.perf_counter() - t0
            evals.append({"step": step, "dev_aer": a, "dev_loss": dl})
            log.info("step %d dev AER %.2f dev loss %.4f (%d sentences, %.0f s)", step, a, dl, len(dev_sents),
                     time.perf_counter() - t0)
            if best is None or (a, dl) < (best[0], best[3]):   # AER first, dev loss breaks ties
                best = (a, step, {k: v.detach().clone() for k, v in net.named_parameters() if v.requires_grad}, dl)
    train_seconds = time.perf_counter() - t_train
    if best is not None and best[1] != steps:
        with torch.no_grad():
            named = dict(net.named_parameters())
            for k, v in best[2].items():
                named[k].copy_(v)
        log.info("restored the best dev checkpoint (step %d, AER %.2f, loss %.4f)", best[1], best[0], best[3])
    probe_end = probe_loss()
    net.eval()
    summary = {
        "recipe": {k: cfg[k] for k in DEFAULTS if k != "out"},
        "train_sentences": len(train_sents), "dev_sentences": len(dev_sents), "examples": len(examples),
        "skipped_too_long": skipped, "positive_token_rate": round(pos_rate, 4), "trainable_params": n_trainable,
        "steps": steps, "seconds": round(train_seconds, 1), "eval_seconds": round(t_eval, 1),
        "s_per_step": round((train_seconds - t_eval) / steps, 3), "threads": torch.get_num_threads(),
        "final_loss": round(float(np.mean(losses[-log_every:])), 5), "probe_loss_start": probe_start,
        "probe_loss_end": probe_end, "best_step": best[1] if best else steps,
        "best_dev_aer": best[0] if best else None, "evals": evals, "losses": losses,
        "torch": torch.__version__, "device": str(dev),
    }
    out = save_aligner(cfg["out"], net, base_model=cfg["model"], marker_id=marker_id, lora=bool(cfg["lora"]),
                       threshold=float(cfg["threshold"]), training=summary, max_length=int(cfg["max_length"]))
    log.info("wrote %s in %.0f s", out, time.perf_counter() - t_start)
    return out


def main(argv: list[str] | None = None) -> int:
    return recipe_main(sys.argv[1:] if argv is None else argv, AlignerTrainConfig, train_binary_aligner)


if __name__ == "__main__":
    raise SystemExit(main())
