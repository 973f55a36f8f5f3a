"""Train the PVP span-alignment projector on synthetic (or any parallel) projection points.

Data: EXP-style JSONL files (`llmie project synth` writes them); every (pair, span) is a point.
Objective (PVP §3.4): input `[src with <SPAN_SEP> around span i, tgt]`, one sigmoid per target token,
BCE averaged over the target tokens only (every subword of a gold word is 1); **Worst Group Loss**:
per batch, back-propagate the mean of the top ⌊B·k⌋ per-point losses (k = 0.5); **pair augmentation**:
swap the roles of source and target with p_b = 0.5, and with p_n = 0.2 replace the target by another
pair's target (same target language when possible) with all-zero labels. AdamW, linear decay without
warmup; model selection by exact match on the dev file. LoRA (peft) or full fine-tuning.

    llmie train-projector recipes/pvp_encoder.yaml [--key value | key=value ...]
    accelerate launch --multi_gpu --num_processes N $(which llmie) train-projector recipes/pvp_encoder.yaml

Data-parallel under `accelerate launch` (an `accelerate.Accelerator`; one plain process is world size 1 and
trains exactly as before). `batch_size` is the GLOBAL batch per optimizer step: every rank draws the same
global batch (same seeded order and augmentation as a single process) and keeps its examples r, r+N, r+2N...,
so N ranks split one batch instead of each training on its own. The worst-group selection is made over the
whole global batch (per-point losses are all-gathered) and DDP's gradient average then equals one process's
gradient on that batch. Dev EM is computed on a 1/N slice of the dev pairs per rank and summed, so every rank
takes the same best-step decision. Ranks run on CPU (gloo): projection inference, which the dev evaluation
uses, is CPU code. Every rank writes `OUT/rank{N}.sha256` of its final trainable weights; rank 0 saves.
"""
from __future__ import annotations

import logging
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from llmie.io import read_exp
from llmie.projection.binary import encode_pairs, pad_batch, save_aligner
from llmie.projection.pvp import FORMAT, PVPModel, PVPProjector, span_token_range
from llmie.projection.words import segment, words_in_span
from llmie.schema import ProjectionPair
from llmie.train.config import as_dict, coerce, flat_loader, recipe_main

log = logging.getLogger("llmie.train_pvp")

@dataclass
class PVPTrainConfig:
    """An `llmie train-projector` recipe (recipes/pvp_encoder*.yaml; llmie.train.config reads it)."""

    model: str = "embedded"                 # encoder: embedded (multilingual-e5-small), a folder, a hub id
    marker_id: int | None = None            # span marker token id (None: the tokenizer's mask token)
    layers: int = 8                         # encoder layers kept: middle layers align best
    head: str = "sim"                       # sim (cos to the span mean) | softmax | align (both softmaxes)
    head_gate: bool = True                  # align: train the absolute-similarity gate (false: it stays 0)
    head_lr: float = 0.01                   # span-similarity head (scale, bias, linear)
    lora: bool = True                       # LoRA on lora_targets (False: full fine-tuning)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: ["query", "value"])
    lr: float = 5e-4                        # encoder / LoRA learning rate (AdamW, linear decay)
    weight_decay: float = 0.0
    batch_size: int = 16                    # GLOBAL batch per optimizer step (split over ranks)
    max_steps: int = 400
    max_length: int = 256                   # pair tokens; longer points are skipped
    wgl_k: float = 0.5                      # worst-group loss: back-propagate the top k of per-point losses
    p_swap: float = 0.5                     # pair augmentation: swap source/target roles
    p_neg: float = 0.2                      # pair augmentation: another pair's target, all-zero labels
    eval_every: int = 100                   # dev EM every N steps (0: never; model selection)
    log_every: int = 20
    seed: int = 13
    train: list[str] = field(default_factory=list)   # EXP JSONL files (globs)
    dev: list[str] = field(default_factory=list)     # EXP JSONL files (globs) for dev EM
    dev_limit: int = 200                    # dev pairs scored per evaluation
    dev_adversarial: bool = True            # select on EM + abstentions on mismatched dev pairs (equal weight)
    threshold: float = 0.5                  # token probability threshold saved with the projector
    bf16: str | bool = "auto"               # autocast bf16: auto (when the device has it) | true | false
    device: str = "auto"                    # auto (CUDA when present) | cpu | cuda | cuda:N (llmie.device)
    out: str = "runs/pvp-projector"         # projector folder to write
    init: str | None = None                 # a LoRA projector folder to go on training (same head/layers/LoRA shape)


DEFAULTS: dict = asdict(PVPTrainConfig())   # the flat view (old callers index it); the dataclass is the source


load_recipe = flat_loader(PVPTrainConfig)  # (path, overrides) -> the flat dict the trainer takes


@dataclass(frozen=True)
class Point:
    src: str
    span: tuple[int, int]
    tgt: str
    tgt_span: tuple[int, int]
    tgt_lang: str | None


def load_points(files: list[str]) -> tuple[list[Point], list[ProjectionPair]]:
    import glob

    pts, pairs = [], []
    expanded = [m for f in files for m in (sorted(glob.glob(f)) if any(c in f for c in "*?[") else [f])]
    for f in expanded:
        for p in read_exp(f):
            if not p.gold_tgt_spans:
                continue
            pairs.append(p)
            for s, t in zip(p.src.spans, p.gold_tgt_spans):
                pts.append(Point(p.src.text, (s.start, s.end), p.tgt_text, (t.start, t.end), p.tgt_lang))
    return pts, pairs


def make_examples(tok, points: list[Point], all_points: list[Point], marker_id: int, cfg: dict,
                  rng: random.Random):
    """(ids, scored target positions, labels) per point after pair augmentation; None when too long."""
    items = []
    by_lang: dict = {}
    for q in all_points:
        by_lang.setdefault(q.tgt_lang, []).append(q)
    for p in points:
        a, a_span, b, b_span = p.src, p.span, p.tgt, p.tgt_span
        if rng.random() < cfg["p_swap"]:
            a, a_span, b, b_span = b, b_span, a, a_span
        negative = rng.random() < cfg["p_neg"]
        if negative:
            pool = by_lang.get(p.tgt_lang) or all_points
            other = pool[rng.randrange(len(pool))]
            cand = other.tgt if other.tgt != b else other.src
            if cand == b:
                negative = False
            else:
                b, b_span = cand, None
        items.append((a, a_span, b, b_span))
    aw = [segment(x[0]) for x in items]
    bw = [segment(x[2]) for x in items]
    encs = encode_pairs(tok, [(x[0], x[2]) for x in items], aw, bw)
    out = []
    for (a, a_span, b, b_span), wa, wb, pe in zip(items, aw, bw, encs):
        rng_tok = span_token_range(pe, words_in_span(wa, *a_span))
        scored = pe.tgt_tw.any(axis=1)
        if rng_tok is None or pe.n_tokens > cfg["max_length"] or not scored.any():
            out.append(None)
            continue
        gold = words_in_span(wb, *b_span) if b_span else []
        lab = pe.tgt_tw[:, gold].any(axis=1) if gold else np.zeros(len(pe.tgt_pos), bool)
        out.append((pe.with_marker(rng_tok, marker_id), pe.tgt_pos[scored] + 2, lab[scored].astype(np.float32)))
    return out


def point_losses(net: torch.nn.Module, examples, pad_id: int) -> torch.Tensor:
    from llmie.device import model_device

    dev = model_device(net)
    ids, mask = pad_batch([e[0] for e in examples], pad_id)
    labels = torch.zeros(ids.shape)
    scored = torch.zeros(ids.shape, dtype=torch.bool)
    for r, (_, pos, lab) in enumerate(examples):
        labels[r, torch.from_numpy(pos)] = torch.from_numpy(lab)
        scored[r, torch.from_numpy(pos)] = True
    ids, mask, labels, scored = ids.to(dev), mask.to(dev), labels.to(dev), scored.to(dev)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(net(ids, mask, scored).float(), labels,
                                                               reduction="none")
    return (bce * scored).sum(1) / scored.sum(1).clamp(min=1)


def worst_group_loss(losses: torch.Tensor, k: float) -> torch.Tensor:
    """Mean of the ⌊B·k⌋ largest per-point losses (at least one); gradients flow only through those."""
    g = max(1, math.floor(len(losses) * k))
    return torch.topk(losses, g).values.mean()


def batch_loss(pl: torch.Tensor, k: float, n: int, accelerator) -> tuple[torch.Tensor, float]:
    """(loss to back-propagate, mean point loss of the global batch) for this rank's slice `pl` of a global
    batch of `n` points (rank r holds points r, r+N, ...).

    One process: the plain WGL (or mean) loss. N processes: the top ⌊n·k⌋ points are chosen over the
    all-gathered global losses, and each rank's loss is N/g · (sum of its chosen points), so DDP's gradient
    mean is the gradient of the global WGL loss (not N separate local selections)."""
    world = accelerator.num_processes
    if world == 1:
        return (worst_group_loss(pl, k) if k < 1 else pl.mean()), pl.mean().item()
    rank, m = accelerator.process_index, math.ceil(n / world)
    padded = torch.full((m,), float("nan"), device=pl.device)
    padded[: len(pl)] = pl.detach()
    gathered = accelerator.gather(padded)                       # rank-major: rank r's j-th point at r*m + j
    glob = gathered[[(i % world) * m + i // world for i in range(n)]]  # global batch order
    if k < 1:
        g = max(1, math.floor(n * k))
        chosen = torch.topk(glob, g).indices.tolist()
    else:
        g, chosen = n, list(range(n))
    weight = torch.zeros(len(pl), device=pl.device)
    for i in chosen:
        if i % world == rank:
            weight[i // world] = world / g
    return (pl * weight).sum(), glob.mean().item()   # all points in the graph: every rank back-propagates


def _projected(projector: PVPProjector, pairs: list[ProjectionPair]):
    """(prepared pair, projection or None when the pair cannot be prepared) in chunks of 64."""
    from llmie.projection.project import prepare

    prepped = [prepare(p) for p in pairs]
    yield from ((p, None) for p in prepped if p.error is not None)
    ok = [p for p in prepped if p.error is None]
    for b in range(0, len(ok), 64):
        chunk = ok[b:b + 64]
        yield from zip(chunk, projector.project_batch(chunk))


def dev_hits(projector: PVPProjector, pairs: list[ProjectionPair]) -> int:
    """Number of pairs whose projected span texts equal the gold target spans exactly."""
    hits = 0
    for p, r in _projected(projector, pairs):
        if getattr(r, "ok", False):
            texts = [p.pair.tgt_text[p.tgt_words[a].start:p.tgt_words[z].end] for a, z in r.spans]
            hits += texts == [s.text for s in p.pair.gold_tgt_spans]
    return hits


def dev_abstentions(projector: PVPProjector, pairs: list[ProjectionPair]) -> int:
    """Number of mismatched pairs (a source with another sample's target) on which no span was projected."""
    return sum(not getattr(r, "ok", False) or not r.spans for _, r in _projected(projector, pairs))


def mismatched_dev(dev_sets: list[list[ProjectionPair]]) -> list[ProjectionPair]:
    """The adversarial half of the dev set: within each `dev` entry (a file or a glob's files), each source
    with the target of the sample half the entry away (`llmie eval --bench exp --adversarial` does the same
    per EXP file)."""
    from llmie.bench.exp import mismatched

    return [q for pairs in dev_sets for q in mismatched(pairs)]


def dev_em(projector: PVPProjector, pairs: list[ProjectionPair]) -> float:
    return 100.0 * dev_hits(projector, pairs) / max(1, len(pairs))


def load_init(net: PVPModel, folder: Path, cfg: dict) -> None:
    """Load a projector folder's LoRA and head weights into a freshly built trainable model (go on training:
    a later stage restarts the learning-rate schedule). The folder must match the recipe's shape."""
    import json

    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from llmie.projection.binary import ALIGNER_FILE, HEAD_FILE, LORA_WEIGHTS_FILE, OPTIONAL_HEAD_WEIGHTS

    meta_path = folder / ALIGNER_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"init {folder}: no {ALIGNER_FILE} (not a projector folder)")
    meta = json.loads(meta_path.read_text())
    want = {"format": FORMAT, "head": cfg["head"], "layers": int(cfg["layers"]), "lora": bool(cfg["lora"])}
    got = {"format": meta.get("format"), "head": meta.get("head", "sim"), "layers": meta.get("layers"),
           "lora": bool(meta.get("lora"))}
    lc = meta.get("lora_config") or {}
    if cfg["lora"]:
        want |= {"r": int(cfg["lora_r"]), "targets": sorted(cfg["lora_targets"])}
        got |= {"r": lc.get("r"), "targets": sorted(lc.get("target_modules") or [])}
    if want != got or not cfg["lora"]:
        raise ValueError(f"init {folder}: {got} does not match this recipe {want} (init needs a LoRA projector "
                         "of the same head, layers and LoRA shape)")
    result = set_peft_model_state_dict(net.encoder, load_file(str(folder / LORA_WEIGHTS_FILE)))
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"init {folder}: unexpected LoRA weights {result.unexpected_keys[:3]}")
    missing, unexpected = net.head.load_state_dict(load_file(str(folder / HEAD_FILE)), strict=False)
    if unexpected or set(missing) - OPTIONAL_HEAD_WEIGHTS:
        raise ValueError(f"init {folder}: head weights do not match (missing {missing}, unexpected {unexpected})")


def train_projector(cfg: PVPTrainConfig | dict) -> Path:
    """Train and save a PVP projector folder; the same code runs alone or as one rank of `accelerate launch`."""
    from accelerate.utils import DataLoaderConfiguration

    from llmie.device import accelerator_for
    from llmie.projection.train_binary import trainable_encoder
    from llmie.train import write_rank_hash

    cfg = as_dict(coerce(PVPTrainConfig, cfg))   # a flat dict (tests, eval scripts) is checked against the fields
    t_start = time.perf_counter()
    # split_batches: `batch_size` is the global batch, so the prepared scheduler steps once per optimizer step.
    # device: the CPU as before, one GPU (the model is moved here), or accelerate's placement under `launch`
    acc, dev = accelerator_for(cfg["device"], dataloader_config=DataLoaderConfiguration(split_batches=True))
    world, rank = acc.num_processes, acc.process_index
    if int(cfg["batch_size"]) < world:
        raise ValueError(f"batch_size {cfg['batch_size']} is the global batch: it must be >= the {world} processes")
    if acc.is_main_process:   # hashes of an earlier multi-process run into `out` would prove nothing now
        for stale in Path(cfg["out"]).glob("rank*.sha256"):
            stale.unlink()
    rng = random.Random(int(cfg["seed"]))   # the same on every rank: all ranks draw the same global batches
    torch.manual_seed(int(cfg["seed"]))
    tok, enc, marker_id = trainable_encoder(cfg)   # PVP has no train_embeddings: frozen in full fine-tuning
    net = PVPModel(enc, marker_id, head=str(cfg["head"]), special_ids=tok.all_special_ids)
    if cfg["init"]:
        load_init(net, Path(cfg["init"]), cfg)
    if hasattr(net.head, "gate") and not cfg["head_gate"]:
        net.head.gate.requires_grad_(False)      # gate * (cos - offset) stays 0: the head without a gate
        net.head.offset.requires_grad_(False)
    net = net.to(dev)
    params = [p for p in net.parameters() if p.requires_grad]
    head = list(net.head.parameters())
    body = [p for n, p in net.named_parameters() if p.requires_grad and not n.startswith("head.")]
    train_files = [cfg["train"]] if isinstance(cfg["train"], str) else list(cfg["train"])
    dev_files = [cfg["dev"]] if isinstance(cfg["dev"], str) else list(cfg["dev"])
    points, _ = load_points(train_files)
    dev_sets = [load_points([f])[1] for f in dev_files]   # per entry: the mismatched half stays within it
    dev_pairs = [p for pairs in dev_sets for p in pairs][: cfg["dev_limit"] or None]
    dev_adv = mismatched_dev(dev_sets)[: cfg["dev_limit"] or None] if cfg["dev_adversarial"] else []
    if not points:
        raise ValueError(f"no training points in {train_files}")
    steps = int(cfg["max_steps"])
    opt = torch.optim.AdamW([{"params": body}, {"params": head, "lr": float(cfg["head_lr"])}],
                            lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))  # linear, no warmup
    model, opt, sched = acc.prepare(net, opt, sched)   # DDP-wrapped when world > 1; `net` stays the bare model
    if world > 1:
        torch.manual_seed(int(cfg["seed"]) + rank)   # different LoRA-dropout masks per rank
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    if acc.is_main_process:
        log.info("pvp: %d points from %s, %d dev pairs, %d trainable params, %d process(es), global batch %d",
                 len(points), train_files, len(dev_pairs), sum(p.numel() for p in params), world,
                 int(cfg["batch_size"]))
    from llmie.device import autocast, fast_dtype

    # bf16 autocast where the device computes it natively (1.9x faster forward here); weights and gradients (the
    # DDP all-reduce) stay fp32
    use_bf16 = fast_dtype(dev) == torch.bfloat16 if cfg["bf16"] == "auto" else bool(cfg["bf16"])
    probe = [e for e in make_examples(tok, points[: int(cfg["batch_size"])], points, marker_id,
                                      {**cfg, "p_swap": 0.0, "p_neg": 0.0}, random.Random(0)) if e]

    def probe_loss() -> float:  # a fixed, unaugmented batch: tells whether training fits the data
        net.eval()
        with torch.no_grad():
            v = point_losses(net, probe, pad).mean().item()
        net.train()
        return round(v, 5)

    probe_start = probe_loss()
    order: list[int] = []
    losses, evals, best = [], [], None
    t_train, t_eval = time.perf_counter(), 0.0

    def evaluate(step: int) -> None:
        """Dev EM (+ abstentions on the mismatched dev pairs, equal weight, with `dev_adversarial`): the best
        step's trainable weights are kept (step 0: the untrained model). Without the adversarial half an
        untrained softmax head can win on EM while projecting onto almost any unrelated target."""
        nonlocal best, t_eval
        t0 = time.perf_counter()
        projector = PVPProjector(net=net, tokenizer=tok, marker_id=marker_id, threshold=cfg["threshold"],
                                 max_length=int(cfg["max_length"]))
        counts = torch.tensor([dev_hits(projector, dev_pairs[rank::world]),    # each rank a slice, summed
                               dev_abstentions(projector, dev_adv[rank::world]) if dev_adv else 0], device=dev)
        if world > 1:
            counts = acc.reduce(counts, reduction="sum")
        hits, abstained = (int(x) for x in counts.tolist())
        em = 100.0 * hits / max(1, len(dev_pairs))
        adv = 100.0 * (len(dev_adv) - abstained) / len(dev_adv) if dev_adv else None
        score = 100.0 * (hits + abstained) / max(1, len(dev_pairs) + len(dev_adv))
        t_eval += time.perf_counter() - t0
        evals.append({"step": step, "dev_em": round(em, 2), "dev_adversarial_rate": None if adv is None else
                      round(adv, 2), "dev_score": round(score, 2)})
        if acc.is_main_process:
            log.info("step %d dev EM %.2f, adversarial rate %s, score %.2f (%d + %d pairs, %.0f s)", step, em,
                     "-" if adv is None else f"{adv:.2f}", score, len(dev_pairs), len(dev_adv),
                     time.perf_counter() - t0)
        if best is None or score > best[0]:
            best = (score, step, {k: v.detach().clone() for k, v in net.named_parameters() if v.requires_grad},
                    em)

    if dev_pairs and cfg["eval_every"]:
        evaluate(0)   # what the untrained head gives: training must beat it to be kept
    model.train()
    for step in range(1, steps + 1):
        batch = []
        while len(batch) < int(cfg["batch_size"]):
            if not order:
                order = list(range(len(points)))
                rng.shuffle(order)
            batch.extend(e for e in make_examples(tok, [points[order.pop()]], points, marker_id, cfg, rng) if e)
        with autocast(dev, torch.bfloat16, enabled=use_bf16):
            pl = point_losses(model, batch[rank::world], pad)
        loss, mean_loss = batch_loss(pl, float(cfg["wgl_k"]), len(batch), acc)
        opt.zero_grad(set_to_none=True)
        acc.backward(loss)
        acc.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(round(mean_loss, 5))
        if acc.is_main_process and (step % int(cfg["log_every"]) == 0 or step == steps):
            el = time.perf_counter() - t_train - t_eval
            log.info("step %d/%d mean point loss %.4f (last %d) %.2f s/step", step, steps,
                     float(np.mean(losses[-int(cfg["log_every"]):])), int(cfg["log_every"]), el / step)
        if dev_pairs and cfg["eval_every"] and (step % int(cfg["eval_every"]) == 0 or step == steps):
            evaluate(step)
    if best is not None and best[1] != steps:
        with torch.no_grad():
            named = dict(net.named_parameters())
            for k, v in best[2].items():
                named[k].copy_(v)
    probe_end = probe_loss()
    net.eval()
    secs = time.perf_counter() - t_train
    summary = {"recipe": {k: cfg[k] for k in DEFAULTS if k != "out"}, "points": len(points),
               "dev_pairs": len(dev_pairs), "steps": steps, "seconds": round(secs, 1),
               "s_per_step": round((secs - t_eval) / steps, 3), "first_losses": losses[:20],
               "final_loss": round(float(np.mean(losses[-20:])), 5), "probe_loss_start": probe_start,
               "probe_loss_end": probe_end, "best_step": best[1] if best else steps,
               "best_dev_em": round(best[3], 2) if best else None,
               "best_dev_score": round(best[0], 2) if best else None, "evals": evals, "torch": torch.__version__,
               "world_size": world, "global_batch_size": int(cfg["batch_size"]), "device": str(dev)}
    out = Path(cfg["out"])
    write_rank_hash(acc, net, out)   # every rank, before rank 0's weights are trusted
    if acc.is_main_process:
        save_aligner(out, net, base_model=cfg["model"], marker_id=marker_id, lora=bool(cfg["lora"]),
                     threshold=float(cfg["threshold"]), training=summary, max_length=int(cfg["max_length"]),
                     fmt=FORMAT)
        log.info("wrote %s in %.0f s", out, time.perf_counter() - t_start)
    acc.wait_for_everyone()
    return out


def main(argv: list[str] | None = None) -> int:
    return recipe_main(sys.argv[1:] if argv is None else argv, PVPTrainConfig, train_projector)


if __name__ == "__main__":
    raise SystemExit(main())
