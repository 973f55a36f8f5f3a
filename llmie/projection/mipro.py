"""MIPROv2 projector (`llmie optimize --task projection`): the paper's MIPROv2 prompting baseline for label
projection as generation, on the optimise machinery of `llmie.optimize` (FilteredMIPROv2, CallStats, the
JSON-schema adapter, the served `dspy.LM("openai/<name>")`).

- Program: one `dspy.Predict` over `ProjectSpan` (source sentence with the span marked `<span>…</span>`,
  the translation -> the target span); the default instruction is the system line of the projection
  template (`prompts/projection/projection.v1.yaml`), so MIPRO starts from what `--method llm` asks.
- Constraint: `ProjectionAdapter` sends `{"span": {"enum": [candidates]}}` as `response_format` on every
  projection call, the candidates being exactly those of `llmie.projection.llm.candidates` for that
  source span and target (contiguous word n-grams); the 135M model can only answer a target substring.
  An answer outside the set (a server that ignores the schema) is a parse failure, which scores 0.
- Metric: exact match of the answer with the gold target span (`ExactMatchMetric`).
- Data: verified points of PVP synthetic pairs (`llmie synth` output, EXP-style JSONL: one point per source
  span); train and dev are disjoint slices by source sentence. EXP test files are refused as training data.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from llmie.optimize.program import FilteredMIPROv2, MassieAdapter
from llmie.projection.llm import DEFAULT_TEMPLATE, candidates, load_template, parse_answer
from llmie.schema import Document, ProjectionPair, Span

DEFAULT_TRAIN = ("runs/pvp-data/train.por.jsonl", "runs/pvp-data/train.spa.jsonl")
MAX_EXTRA = 3  # the LLM projector's default candidate length slack


class ProjectSpan(dspy.Signature):
    """Copy from the translation the words that translate the marked source phrase."""

    source: str = dspy.InputField(desc="source sentence; the phrase to project is marked <span>...</span>")
    target: str = dspy.InputField(desc="the translation of the source sentence")
    span: str = dspy.OutputField(desc="the words of the translation that translate the marked phrase, copied exactly")


def is_projection(signature: Any) -> bool:
    return set(signature.input_fields) == {"source", "target"} and set(signature.output_fields) == {"span"}


def mark(src_text: str, start: int, end: int, template: str = DEFAULT_TEMPLATE) -> str:
    t = load_template(template)
    return f"{src_text[:start]}{t.open_tag}{src_text[start:end]}{t.close_tag}{src_text[end:]}"


@lru_cache(maxsize=4096)
def allowed_answers(source: str, target: str, template: str = DEFAULT_TEMPLATE,
                    max_extra: int = MAX_EXTRA) -> tuple[str, ...]:
    """The candidate target substrings for a marked source, computed as `--method llm` computes them."""
    from llmie.projection.project import prepare

    t = load_template(template)
    a = source.find(t.open_tag)
    b = source.find(t.close_tag, a + len(t.open_tag)) if a >= 0 else -1
    if a < 0 or b < 0:
        raise ValueError(f"source has no {t.open_tag}...{t.close_tag} marked span: {source[:80]!r}")
    text = source[:a] + source[a + len(t.open_tag):b] + source[b + len(t.close_tag):]
    start, end = a, b - len(t.open_tag)
    pair = ProjectionPair(id="q", src=Document(id="q", text=text, spans=[Span(start=start, end=end, label="span",
                                                                                 text=text[start:end])]),
                          tgt_text=target)
    p = prepare(pair)
    if p.error:
        raise ValueError(f"cannot build candidates: {p.error}")
    return tuple(candidates(target, p.tgt_words, len(p.src_span_words[0]), p.edges[0], max_extra))


class ProjectionAdapter(MassieAdapter):
    """The optimise adapter (schema on every call, call counting) with the candidate enum for projection."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._inputs = threading.local()  # the call's (source, target), read back by `parse` in the same thread

    def _prepare(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any, demos: list, inputs: dict) -> dict:
        if not is_projection(signature):
            return super()._prepare(lm, lm_kwargs, signature, demos, inputs)
        lm_kwargs = dict(lm_kwargs)
        enum = list(allowed_answers(inputs["source"], inputs["target"]))
        lm_kwargs["response_format"] = {"type": "json_schema", "json_schema": {"name": "projection", "strict": True,
            "schema": {"type": "object", "properties": {"span": {"enum": enum}}, "required": ["span"],
                       "additionalProperties": False}}}
        self.stats.record("task", lm, self.format(signature, demos, inputs), lm_kwargs)
        self._inputs.value = (inputs["source"], inputs["target"])
        return lm_kwargs

    def parse(self, signature, completion):  # type: ignore[override]
        if not is_projection(signature):
            return super().parse(signature, completion)
        span = parse_answer(completion)
        src_tgt = getattr(self._inputs, "value", None)
        if span is None or (src_tgt and span not in allowed_answers(*src_tgt)):
            self.stats.failure()
            raise AdapterParseError(adapter_name="ProjectionAdapter", signature=signature, lm_response=completion,
                                    message="answer is not a candidate substring of the target")
        return {"span": span}


class ProjectionProgram(dspy.Module):
    """One constrained call per source span; a parse failure becomes `span=None` (scored 0)."""

    def __init__(self, instruction: str | None = None) -> None:
        super().__init__()
        self.project = dspy.Predict(ProjectSpan.with_instructions(instruction or load_template().system))

    def forward(self, source: str, target: str) -> dspy.Prediction:
        try:
            out = self.project(source=source, target=target)
        except AdapterParseError:  # counted by the adapter
            return dspy.Prediction(span=None, parse_failures=1)
        return dspy.Prediction(span=out.span, parse_failures=0)


@dataclass
class ExactMatchMetric:
    """`(gold, pred, trace=None) -> 0/1`: the answer equals the gold target span; records what it scored."""
    calls: int = 0
    scored_predictions: int = 0
    seen: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, gold: Any, pred: Any, trace: Any = None) -> float:
        with self._lock:
            self.calls += 1
        span = None if pred is None or getattr(pred, "parse_failures", 0) else getattr(pred, "span", None)
        if not isinstance(span, str):
            return 0.0
        ok = float(span.strip() == gold.span.strip())
        with self._lock:
            self.scored_predictions += 1
            self.seen.append({"target": gold.target, "pred": span, "gold": gold.span, "em": ok})
        return ok


# --------------------------------------------------------------------------------------------- data

def _refuse_test(path: Path) -> None:
    """The split rule (llmie.datasets): the projector trains on PVP synthetic data, never on a test file."""
    from llmie.datasets import check_trainable

    check_trainable(path, "training the MIPROv2 projector: it trains on PVP synthetic data (llmie synth), never on EXP test data")


def read_points(paths: list[str]) -> list[tuple[ProjectionPair, int]]:
    """(pair, span index) of every pair with gold target spans that is not marked unverified."""
    from llmie.io import read_exp

    out = []
    for s in paths:
        p = Path(s)
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file (make PVP synthetic data with `llmie synth`, or pass --train)")
        _refuse_test(p)
        for pair in read_exp(p):
            if pair.gold_tgt_spans and pair.meta.get("verified") is not False:
                out.extend((pair, i) for i in range(len(pair.src.spans)))
    return out


def to_example(pair: ProjectionPair, i: int) -> dspy.Example:
    s = pair.src.spans[i]
    return dspy.Example(id=f"{pair.id}#{i}", source=mark(pair.src.text, s.start, s.end), target=pair.tgt_text,
                        span=pair.gold_tgt_spans[i].text).with_inputs("source", "target")  # type: ignore[index]


def split_points(points: list[tuple[ProjectionPair, int]], n_train: int, n_dev: int, seed: int,
                 langs: list[str] | None = None) -> tuple[list, list, dict[str, Any]]:
    """Train / dev examples, disjoint by source sentence (synthetic data repeats sentences under several ids
    and target languages; seeded shuffle); a point is kept only if its gold span is a candidate."""
    if langs:
        points = [(p, i) for p, i in points if (p.tgt_lang or "")[:3] in langs or p.tgt_lang in langs]
    usable, by_pair = 0, {}
    for p, i in points:
        ex = to_example(p, i)
        try:
            ok = ex.span in allowed_answers(ex.source, ex.target)
        except ValueError:
            ok = False
        if ok:
            usable += 1
            by_pair.setdefault(p.src.text.strip(), []).append(ex)  # one sentence (any language, any id) on one side
    ids = sorted(by_pair)
    random.Random(seed).shuffle(ids)
    train, dev = [], []
    for pid in ids:
        if len(train) < n_train:
            train.extend(by_pair[pid])
        elif len(dev) < n_dev:
            dev.extend(by_pair[pid])
    train, dev = train[:n_train], dev[:n_dev]
    if len(train) < n_train or len(dev) < n_dev:
        raise ValueError(f"only {usable} usable points for {n_train} train + {n_dev} dev (a point is usable when "
                         "its gold target span is a candidate substring)")
    return train, dev, {"points": len(points), "usable": usable, "n_train": len(train), "n_dev": len(dev)}


# ------------------------------------------------------------------------------------------ running

def evaluate(program: Any, examples: list, num_threads: int) -> dict[str, Any]:
    """Exact match (0-100) and the predictions, failures counted."""
    ev = dspy.Evaluate(devset=examples, metric=lambda g, p, trace=None: 0.0, num_threads=num_threads,
                       max_errors=len(examples) + 1, display_progress=False, display_table=False)
    res = ev(program)
    preds, hits, failures = [], 0, 0
    for ex, pred, _ in res.results:
        span = None if pred is None or getattr(pred, "parse_failures", 1) else getattr(pred, "span", None)
        failures += span is None
        hits += span is not None and span.strip() == ex.span.strip()
        preds.append({"id": ex.id, "source": ex.source, "target": ex.target, "gold": ex.span, "pred": span})
    return {"em": round(100 * hits / len(examples), 2), "n": len(examples), "failed": failures, "_preds": preds}


def run_projection(cfg: Any, dry_run: bool = False, echo: Any = print) -> dict[str, Any]:
    """MIPROv2 over `ProjectionProgram` with the settings of an `OptimizeConfig` (presets included)."""
    from llmie.optimize.program import CallStats
    from llmie.optimize.lm import estimate_calls, task_and_prompt_lms

    cfg.apply_preset()
    train_files = [x for x in (cfg.train or "").split(",") if x] or list(DEFAULT_TRAIN)
    points = read_points(train_files)
    if cfg.dev:
        dev_points = read_points([cfg.dev])
        trainset, _, info = split_points(points, cfg.n_train, 0, cfg.seed, _langs(cfg))
        train_src = {p.src.text.strip() for p, _ in points}
        _, devset, dinfo = split_points([(p, i) for p, i in dev_points if p.src.text.strip() not in train_src], 0,
                                        cfg.n_dev, cfg.seed, _langs(cfg))
        info["n_dev"] = dinfo["n_dev"]
    else:
        trainset, devset, info = split_points(points, cfg.n_train, cfg.n_dev, cfg.seed, _langs(cfg))
    info.update(source=train_files, dev_source=cfg.dev or "disjoint slice of the train source (by source sentence)")
    est = estimate_calls(cfg, len(trainset), len(devset), 0, 1)
    if dry_run:
        return {"task": "projection", "dry_run": True, "data": info, "lm_calls_max": est}

    out = Path(cfg.out) if cfg.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    handle = None
    try:
        from llmie.backends.serve import serve_unless

        name = cfg.model_name or "llmie"
        api_base, handle = serve_unless(cfg.api_base, cfg.model, served_name=name, max_model_len=cfg.max_model_len,
                                        timeout=cfg.server_timeout, echo=echo)
        server_secs = time.perf_counter() - t0
        stats = CallStats()
        task_lm, prompt_lm = task_and_prompt_lms(cfg, api_base, name)
        dspy.configure(lm=task_lm, adapter=ProjectionAdapter(stats))
        metric = ExactMatchMetric()
        default = ProjectionProgram()
        t1 = time.perf_counter()
        before = evaluate(default, devset, cfg.num_threads)
        s = est["settings"]
        mipro = FilteredMIPROv2(metric=metric, prompt_model=prompt_lm, task_model=task_lm, auto=cfg.auto,
                                  num_candidates=None if cfg.auto else cfg.candidates,
                                  max_bootstrapped_demos=s["bootstrapped"], max_labeled_demos=cfg.demos,
                                  num_threads=cfg.num_threads, max_errors=max(len(devset), len(trainset)) + 1,
                                  seed=cfg.seed, init_temperature=cfg.init_temperature,
                                  metric_threshold=cfg.metric_threshold, verbose=False, track_stats=True)
        kw: dict[str, Any] = dict(trainset=trainset, valset=devset, minibatch=s["minibatch"],
                                  minibatch_full_eval_steps=cfg.full_eval_steps,
                                  program_aware_proposer=cfg.program_aware, data_aware_proposer=cfg.data_aware)
        if s["minibatch"]:
            kw["minibatch_size"] = s["minibatch_size"]
        if not cfg.auto:
            kw["num_trials"] = cfg.trials
        optimized = mipro.compile(default, **kw)
        after = evaluate(optimized, devset, cfg.num_threads)
        better = after["em"] > before["em"]
        res: dict[str, Any] = {
            "task": "projection",
            "dev": {"before": {"em": before["em"]}, "after": {"em": after["em"]}},
            "lm_calls": stats.as_dict(),
            "seconds": round(time.perf_counter() - t0, 1),
            "seconds_server_start": round(server_secs, 1),
            "seconds_optimize_and_eval": round(time.perf_counter() - t1, 1),
            "kept": "optimized" if better else "default",
            "note": ("the optimized program beats the default on dev" if better else
                     f"the optimized program did not beat the default on dev ({after['em']:.2f} vs "
                     f"{before['em']:.2f} EM)"),
            "parse_failures": stats.parse_failures,
            "dev_failed": {"before": before["failed"], "after": after["failed"]},
            "metric": {"calls": metric.calls, "scored_predictions": metric.scored_predictions,
                       "seen": metric.seen},
            "instruction": optimized.project.signature.instructions,
            "default_instruction": default.project.signature.instructions,
            "n_demos": len(optimized.project.demos),
            "proposals": getattr(mipro, "proposals", []),
            "data": info,
            "settings": {**cfg.settings(drop=("out", "labels", "template")), "mipro": s},
            "lm_calls_max": est,
            "model": {"api_base": api_base if not handle else "embedded server (stopped)", "name": name,
                      "served": handle.model_path if handle else None},
        }
        if out:
            from llmie.io import write_json_atomic
            from llmie.io.atomic import write_jsonl_atomic

            optimized.save(str(out / "program.json"))
            for tag, r in (("dev_before", before), ("dev_after", after)):
                write_jsonl_atomic(r["_preds"], out / "predictions" / f"{tag}.jsonl")
            write_json_atomic(res, out / "results.json")
        return res
    finally:
        if handle is not None:
            handle.stop()


def _langs(cfg: Any) -> list[str] | None:
    return None if cfg.langs == ["eng"] else list(cfg.langs)


def load_program(path: str | Path) -> ProjectionProgram:
    """A saved program (`DIR/program.json`) back as a module."""
    prog = ProjectionProgram()
    prog.load(str(path))
    return prog


__all__ = ["ProjectSpan", "ProjectionAdapter", "ProjectionProgram", "ExactMatchMetric", "allowed_answers",
           "read_points", "split_points", "run_projection", "load_program"]
