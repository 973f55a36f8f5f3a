"""Training and evaluation of encoder TOPRO and the vanilla baseline (English training, any-language test).

Budget: both methods see the same training sentences; TOPRO turns each into m (sentence, word) examples,
shuffled independently (as in the authors' code), vanilla uses one example per sentence. ``epochs`` and
``max_steps`` bound the run; the step counts and seconds are logged so the cost is visible.
Word embeddings are frozen by default (``freeze_embeddings``): with a 250k-piece vocabulary they are most
of the parameters, AdamW over them is slow on CPU, and training on English only would move English
pieces away from the other languages' pieces (bad for zero-shot transfer).
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmie.topro.decompose import Cost, decompose, load_template, recompose

log = logging.getLogger(__name__)

TASK_TEMPLATE = {"ner": "topro.ner.v1", "pos": "topro.pos.v1"}


@dataclass
class ToproTrainConfig:
    """An `llmie topro train` recipe (recipes/topro_ner.yaml, recipes/topro_pos.yaml; llmie.train.config reads it)."""

    task: str = "pos"                    # ner | pos
    method: str = "topro"                # topro | vanilla
    model: str = "embedded"              # embedded, a folder, or a hub id (AutoModelForMaskedLM works as is)
    train: str | None = None             # training file (default: UD-EWT train for pos, UNER-EWT dev for ner)
    n_train: int | None = 300            # first N training sentences (None: all)
    epochs: float = 1.0                  # passes over the training examples
    max_steps: int | None = None         # stops earlier when reached
    batch_size: int = 16                 # examples (prompts) per step
    lr: float = 1e-4                     # encoder (README numbers, eval/bench_topro.py and the CLI use 1e-4)
    head_lr: float | None = 1e-3         # new parameters (built MLM transform / classifier) learn faster; None: = lr
    warmup_ratio: float = 0.1            # linear warmup, then linear decay (AdamW)
    weight_decay: float = 0.01           # AdamW
    max_length: int = 128                # tokens per prompt
    seed: int = 42                       # random seed
    mark: bool = False                   # bracket the target word in the sentence (repeated-word fix)
    freeze_embeddings: bool = True       # word embeddings stay frozen (and are not saved)
    template: str | None = None          # default: topro.<task>.v1
    out: str | None = None               # save the model here (None: keep in memory only)
    log_every: int = 10                  # log the loss every N steps
    threads: int = 1                     # torch CPU threads
    device: str = "auto"                 # auto (CUDA when present) | cpu | cuda | cuda:N (llmie.device)
    o_keep: float = 1.0                  # TOPRO: share of `O` word prompts kept, redrawn each epoch (NER: ~90% are O)
    class_weight: str = "none"           # none | sqrt | balanced: cross-entropy weights from the training tag counts

    def template_name(self) -> str:
        return self.template or TASK_TEMPLATE[self.task]


@dataclass
class Trained:
    """A trained model kept in memory (plus where it was saved, if it was)."""

    method: str
    model: Any
    tokenizer: Any
    template: Any
    labels: list[str]
    verbalizer: Any = None
    mark: bool = False
    max_length: int = 128
    losses: list[float] = field(default_factory=list)
    log: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None


# --------------------------------------------------------------------------- data


def default_file(task: str, split: str, data: Path) -> Path:
    """English file of ``task`` (llmie.datasets): UD-EWT for pos, UNER English-EWT for ner (train = its dev)."""
    from llmie.datasets import uner_en, ud_en

    if task == "pos":
        return ud_en(split, data)
    if task == "ner":
        return uner_en(split, data)
    raise ValueError(f"unknown task {task!r}; expected ner or pos")


def read_tagged(path: str | Path, task: str, *, lang: str | None = None,
                limit: int | None = None, keep_types: Sequence[str] | None = None
                ) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """(ids, word lists, tag lists) from .conllu (UPOS), .iob2 (UNER) or two-column CoNLL (MasakhaNER).

    ``keep_types`` (NER): entity types outside it become O (e.g. MasakhaNER DATE for a PER/ORG/LOC model).
    """
    from llmie.io.conll import read_conll, read_conllu, read_iob2
    from llmie.io.bio import repair_iob2

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file (set LLMIE_DATA_DIR or pass the file)")
    if p.suffix == ".conllu":
        docs = read_conllu(p, lang=lang)
    elif p.suffix == ".iob2":
        docs = read_iob2(p, lang=lang)
    else:
        docs = read_conll(p, lang=lang)
    ids, sents, tags = [], [], []
    for d in docs:
        if limit is not None and len(ids) >= limit:
            break
        if task == "pos":
            if "upos" not in d.meta:
                raise ValueError(f"{p}: record {d.id} has no UPOS tags (task pos needs .conllu)")
            t = list(d.meta["upos"])
        else:
            if "tags" not in d.meta:
                raise ValueError(f"{p}: record {d.id} has no IOB2 tags (task ner needs .iob2 or CoNLL)")
            t = list(d.meta["tags"])
            if keep_types is not None:
                t = ["O" if x != "O" and x[2:] not in keep_types else x for x in t]
                t, _ = repair_iob2(t, "lenient", where=f"{p}:{d.id}")
        ids.append(d.id)
        sents.append(list(d.meta["tokens"]))
        tags.append(t)
    return ids, sents, tags


# --------------------------------------------------------------------------- training


def _schedule(opt, total: int, warmup_ratio: float):
    import torch

    warm = max(1, int(total * warmup_ratio))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm)))


def train(cfg: ToproTrainConfig, data: Path | None = None) -> Trained:
    """Train TOPRO or vanilla per ``cfg``; saves to ``cfg.out`` when set. Returns the model in memory."""
    import torch
    from transformers import AutoTokenizer

    from llmie.device import resolve_device, to_device
    from llmie.settings import data_dir
    from llmie.models.embedded import resolve_encoder
    from llmie.topro.encoder import (ToproMLM, encode_prompts, encode_words, load_vanilla)
    from llmie.topro.verbalizer import resolve_verbalizer

    if cfg.task not in TASK_TEMPLATE:
        raise ValueError(f"unknown task {cfg.task!r}; expected ner or pos")
    if cfg.method not in ("topro", "vanilla"):
        raise ValueError(f"unknown method {cfg.method!r}; expected topro or vanilla")
    if not 0.0 < cfg.o_keep <= 1.0:
        raise ValueError(f"o_keep must be in (0, 1], got {cfg.o_keep}")
    class_weights({}, cfg.class_weight)  # an unknown kind fails here, before the model loads
    dev = resolve_device(cfg.device)
    torch.set_num_threads(max(1, cfg.threads))
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    path = resolve_encoder(cfg.model)
    template = load_template(cfg.template_name())
    if template.task != cfg.task:
        raise ValueError(f"template {template.name} is for task {template.task}, not {cfg.task}")
    train_file = Path(cfg.train) if cfg.train else default_file(cfg.task, "train", data or data_dir())
    _, sents, tags = read_tagged(train_file, cfg.task, limit=cfg.n_train)
    tok = AutoTokenizer.from_pretrained(path)
    labels = template.labels
    lab2id = {l: i for i, l in enumerate(labels)}
    for s, row in enumerate(tags):
        for t in row:
            if t not in lab2id:
                raise ValueError(f"{train_file}: sentence {s}: tag {t!r} is not a label of {template.name} ({labels})")
    verb = None
    if cfg.method == "topro":
        verb = resolve_verbalizer(template, tok)
        model = ToproMLM(path, verb.token_ids)
        if cfg.freeze_embeddings:
            model.freeze_word_embeddings()
        prompts = decompose(sents, mark=cfg.mark, mark_chars=template.mark)
        examples = list(range(len(prompts)))
        y_all = [lab2id[tags[p.sent][p.idx]] for p in prompts]
    else:
        model = load_vanilla(path, labels)
        if cfg.freeze_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)
        examples = list(range(len(sents)))
    model.to(dev)
    counts = _tag_counts(tags, labels)
    weight = class_weights(counts, cfg.class_weight)
    w_dev = torch.tensor(weight, dtype=torch.float, device=dev) if cfg.class_weight != "none" else None
    o_id = lab2id.get("O")
    rng = random.Random(cfg.seed)
    if cfg.method == "topro" and cfg.o_keep < 1.0 and o_id is not None:
        keep_all = [i for i in examples if y_all[i] != o_id]
        o_pool = [i for i in examples if y_all[i] == o_id]
        n_o = max(1, round(cfg.o_keep * len(o_pool))) if o_pool else 0

        def epoch_examples() -> list[int]:  # every entity prompt, a fresh draw of O prompts
            ex = keep_all + rng.sample(o_pool, n_o)
            rng.shuffle(ex)
            return ex
        n_epoch = len(keep_all) + n_o
    else:
        def epoch_examples() -> list[int]:  # reshuffled in place each epoch (as before o_keep existed)
            rng.shuffle(examples)
            return examples
        n_epoch = len(examples)
    steps_per_epoch = math.ceil(n_epoch / cfg.batch_size)
    total = math.ceil(steps_per_epoch * cfg.epochs)
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    # only parameters that start untrained get head_lr: a native MLM head (xlm-roberta) is pretrained
    head = (model.head if model.head_kind == "tied-built" else None) if cfg.method == "topro" \
        else getattr(model, "classifier", None)
    new_ids = {id(p) for p in head.parameters()} if head is not None and cfg.head_lr else set()
    groups = []
    for is_new, lr in ((False, cfg.lr), (True, cfg.head_lr)):
        ps = [p for p in params if (id(p) in new_ids) == is_new]
        groups += [{"params": [p for p in ps if p.ndim > 1], "weight_decay": cfg.weight_decay, "lr": lr},
                   {"params": [p for p in ps if p.ndim <= 1], "weight_decay": 0.0, "lr": lr}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr)
    sched = _schedule(opt, total, cfg.warmup_ratio)
    model.train()
    losses: list[float] = []
    step, t0 = 0, time.perf_counter()
    n_seen = 0
    while step < total:
        ex = epoch_examples()
        for b in range(0, len(ex), cfg.batch_size):
            if step >= total:
                break
            idx = ex[b:b + cfg.batch_size]
            if cfg.method == "topro":
                enc = encode_prompts(tok, template, [prompts[i] for i in idx], cfg.max_length)
                y = torch.tensor([y_all[i] for i in idx], device=dev)
                logits = model(**to_device(enc, dev))
                loss = torch.nn.functional.cross_entropy(logits, y, weight=w_dev)  # CE over the label words only
            else:
                enc, _ = encode_words(tok, [sents[i] for i in idx], [[lab2id[t] for t in tags[i]] for i in idx],
                                      cfg.max_length)
                enc = to_device(enc, dev)
                y = enc.pop("labels")
                logits = model(**enc).logits
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                         weight=w_dev, ignore_index=-100)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            n_seen += len(idx)
            step += 1
            if cfg.log_every and step % cfg.log_every == 0:
                log.info("%s %s step %d/%d loss %.4f (%.1f s)", cfg.method, cfg.task, step, total,
                         sum(losses[-cfg.log_every:]) / len(losses[-cfg.log_every:]), time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    info = {"config": asdict(cfg), "model_path": path, "train_file": str(train_file), "sentences": len(sents),
            "examples": len(examples), "examples_per_epoch": n_epoch, "steps": step, "examples_seen": n_seen, "seconds": round(seconds, 1),
            "loss_first10": _mean(losses[:10]), "loss_last10": _mean(losses[-10:]), "template": template.name,
            "verbalizer": verb.as_dict() if verb else None, "labels": labels,
            "imbalance": {"o_keep": cfg.o_keep, "class_weight": cfg.class_weight, "tag_counts": counts,
                          "weights": [round(w, 4) for w in weight]}}
    out = Trained(cfg.method, model, tok, template, labels, verb, cfg.mark, cfg.max_length, losses, info)
    if cfg.out:
        save(out, Path(cfg.out))
    return out


def _tag_counts(tags: Sequence[Sequence[str]], labels: Sequence[str]) -> dict[str, int]:
    counts = {l: 0 for l in labels}
    for row in tags:
        for t in row:
            counts[t] += 1
    return counts


def class_weights(counts: dict[str, int], kind: str) -> list[float]:
    """Cross-entropy weight per label (label order of ``counts``), mean 1 over the labels seen.

    ``balanced`` = n / (k * count) (sklearn's rule), ``sqrt`` its square root (milder: rare B-/I- words
    are up-weighted without making every uncertain word an entity); unseen labels get the largest weight."""
    if kind == "none":
        return [1.0] * len(counts)
    if kind not in ("balanced", "sqrt"):
        raise ValueError(f"class_weight must be none, sqrt or balanced, got {kind!r}")
    seen = {l: c for l, c in counts.items() if c > 0}
    if not seen:
        return [1.0] * len(counts)
    n, k = sum(seen.values()), len(seen)
    raw = {l: n / (k * c) for l, c in seen.items()}
    if kind == "sqrt":
        raw = {l: math.sqrt(v) for l, v in raw.items()}
    mean = sum(raw.values()) / k
    top = max(raw.values()) / mean
    return [raw[l] / mean if l in raw else top for l in counts]


def _mean(xs: Sequence[float]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


WEIGHTS = "weights.pt"


def _input_embeddings(t: Trained):
    m = t.model
    return m.input_embeddings() if t.method == "topro" else m.get_input_embeddings()


def save(t: Trained, out: Path) -> Path:
    """Write a model folder: ``topro.json`` (method, template, verbalizer, base encoder), ``weights.pt``
    (the state dict *without* frozen word embeddings: they stay those of the base encoder, which is
    ~80% of multilingual-e5-small's size) and ``train_log.json``. ``load`` rebuilds from the base."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    emb = _input_embeddings(t).weight
    frozen = not emb.requires_grad
    state = {k: v for k, v in t.model.state_dict().items() if not (frozen and v.data_ptr() == emb.data_ptr())}
    torch.save(state, out / WEIGHTS)
    cfg = t.log.get("config", {})
    meta = {"kind": "topro", "method": t.method, "task": t.template.task, "template": t.template.name,
            "labels": t.labels, "mark": t.mark, "max_length": t.max_length,
            "base": cfg.get("model", t.log.get("model_path")), "base_path": t.log.get("model_path"),
            "frozen_word_embeddings": frozen, "head": getattr(t.model, "head_kind", "token-classification"),
            "verbalizer": t.verbalizer.as_dict() if t.verbalizer else None,
            "imbalance": t.log.get("imbalance")}   # how the O imbalance was handled in training (o_keep, weights)
    (out / "topro.json").write_text(json.dumps(meta, indent=1))
    (out / "train_log.json").write_text(json.dumps({**t.log, "losses": [round(x, 5) for x in t.losses]}, indent=1))
    t.path = out
    return out


def load(path: str | Path, device: str | None = "auto") -> Trained:
    """A model folder written by ``save`` (``llmie topro train --out``), on `device` (llmie.device)."""
    import torch
    from transformers import AutoTokenizer

    from llmie.models.embedded import resolve_encoder
    from llmie.topro.encoder import ToproMLM, load_vanilla
    from llmie.topro.verbalizer import ResolvedVerbalizer

    p = Path(path)
    meta_f = p / "topro.json"
    if not meta_f.is_file() or not (p / WEIGHTS).is_file():
        raise FileNotFoundError(f"{p}: not a TOPRO/vanilla model folder (needs topro.json and {WEIGHTS}); "
                                "train one with `llmie topro train --out DIR`")
    meta = json.loads(meta_f.read_text())
    try:
        base = resolve_encoder(meta["base"])
    except (FileNotFoundError, ValueError, RuntimeError):
        base = meta["base_path"]
    template = load_template(meta["template"])
    tok = AutoTokenizer.from_pretrained(base)
    if meta["method"] == "topro":
        verb = ResolvedVerbalizer(**meta["verbalizer"])
        model = ToproMLM(base, verb.token_ids)
    else:
        verb = None
        model = load_vanilla(base, meta["labels"])
    t = Trained(meta["method"], model, tok, template, meta["labels"], verb, meta.get("mark", False),
                meta.get("max_length", 128), path=p)
    state = torch.load(p / WEIGHTS, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    emb_ptr = _input_embeddings(t).weight.data_ptr()
    own = model.state_dict()
    bad = [k for k in missing if own[k].data_ptr() != emb_ptr]
    if unexpected or bad:
        raise ValueError(f"{p / WEIGHTS} does not fit base {base}: missing {bad[:5]}, unexpected {unexpected[:5]}")
    from llmie.device import resolve_device

    model.to(resolve_device(device))
    return t


# --------------------------------------------------------------------------- evaluation


def predict(t: Trained, sents: Sequence[Sequence[str]], batch_size: int = 64) -> tuple[list[list[str]], Cost]:
    """Tag sequences for word lists, with the cost (prompts, forward passes, seconds)."""
    from llmie.topro.encoder import predict_topro, predict_vanilla

    cost = Cost(sentences=len(sents), words=sum(len(s) for s in sents))
    t0 = time.perf_counter()
    if t.method == "topro":
        prompts = decompose(sents, mark=t.mark, mark_chars=t.template.mark)
        idx, cost.forward_passes = predict_topro(t.model, t.tokenizer, t.template, prompts, batch_size, t.max_length)
        tags = recompose(prompts, [t.verbalizer.labels[i] for i in idx], [len(s) for s in sents])
        cost.prompts = len(prompts)
    else:
        o = t.labels.index("O") if "O" in t.labels else 0
        idx2, cost.forward_passes = predict_vanilla(t.model, t.tokenizer, sents, max(1, batch_size // 2),
                                                    t.max_length, default=o)
        tags = [[t.labels[i] for i in row] for row in idx2]
        cost.prompts = len(sents)
    cost.seconds = time.perf_counter() - t0
    return tags, cost


def scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], task: str) -> dict[str, float]:
    """Both metrics, 0-100: seqeval strict IOB2 entity F1 (NER only) and token-level weighted F1."""
    from llmie.metrics.seqlabel import seqeval_scores, token_accuracy, token_weighted_f1

    out = {"token_weighted_f1": round(100 * token_weighted_f1(gold, pred), 2),
           "token_accuracy": round(100 * token_accuracy(gold, pred), 2)}
    if task == "ner":  # an LLM's unmatched answer ("<none>") is no entity for seqeval
        iob = [[("O" if t == "<none>" else t) for t in row] for row in pred]
        out["seqeval_f1"] = round(100 * float(seqeval_scores(gold, iob)["seqeval_f1"]), 2)
    return out


def evaluate(t: Trained, files: dict[str, Path], *, limit: int | None = None, batch_size: int = 64,
             out: Path | None = None, keep_types: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-language scores and cost of a trained encoder for ``{lang: file}`` (see ``run_eval``)."""
    return run_eval(lambda sents: predict(t, sents, batch_size), t.template.task, files,
                    {"method": t.method, "model": str(t.path or t.log.get("model_path")), "template": t.template.name},
                    limit=limit, out=out, keep_types=keep_types)


def run_eval(predict_fn, task: str, files: dict[str, Path], meta: dict[str, Any], *, limit: int | None = None,
             out: Path | None = None, keep_types: Sequence[str] | None = None) -> dict[str, Any]:
    """Score ``predict_fn(word lists) -> (tags, Cost)`` on each ``{lang: file}``; writes predictions
    (llmie JSONL with ``meta.tokens/gold/pred``) and results.json under ``out`` when given."""
    res: dict[str, Any] = {"task": task, **meta, "langs": {}}
    for lang, f in files.items():
        ids, sents, gold = read_tagged(f, task, lang=lang, limit=limit, keep_types=keep_types)
        pred, cost = predict_fn(sents)
        res["langs"][lang] = {"n": len(sents), **scores(gold, pred, task), "cost": cost.as_dict()}
        log.info("%s %s %s: %s", meta.get("method"), task, lang, res["langs"][lang])
        if out:
            from llmie.io import write_jsonl
            from llmie.schema import Document

            docs = [Document(id=i, text=" ".join(s), lang=lang, meta={"tokens": s, "gold": g, "pred": p})
                    for i, s, g, p in zip(ids, sents, gold, pred)]
            write_jsonl(docs, out / "predictions" / f"{lang}.jsonl")
    langs = res["langs"].values()
    total = sum(v["n"] for v in langs)
    keys = [k for k in ("seqeval_f1", "token_weighted_f1") if all(k in v for v in langs)]
    res["avg"] = {k: round(sum(v[k] * v["n"] for v in langs) / total, 2) if total else 0.0 for k in keys}
    if out:
        from llmie.io import write_json_atomic

        write_json_atomic(res, out / "results.json")
    return res


def markdown(res: dict[str, Any]) -> str:
    """A short table of a ``run_eval`` result."""
    lines = [f"# TOPRO eval: task `{res['task']}`, method `{res.get('method')}`, model `{res.get('model')}`", "",
             "| lang | n | seqeval F1 | token weighted F1 | token acc | prompts | forward passes | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for lang, v in res["langs"].items():
        c = v["cost"]
        lines.append(f"| {lang} | {v['n']} | {v.get('seqeval_f1', '-')} | {v['token_weighted_f1']} | "
                     f"{v['token_accuracy']} | {c['prompts']} | {c['forward_passes']} | {c['seconds']} |")
    a = res["avg"]
    lines.append(f"| **avg (weighted)** | | {a.get('seqeval_f1', '-')} | {a.get('token_weighted_f1', '-')} | | | | |")
    return "\n".join(lines) + "\n"
