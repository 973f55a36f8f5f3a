"""The `llmie` command line (DESIGN.md §5). Thin: parses options, calls the modules, prints a summary."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from llmie import __version__

# Two cores shared with other work collapse torch 15-25x; one thread unless the user says otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")

app = typer.Typer(help="llmie: multilingual information extraction with LLMs.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Embedded default models shipped through PyPI packages.", no_args_is_help=True)
app.add_typer(models_app, name="models")
from llmie.topro.cli import app as topro_app  # noqa: E402  (cheap: no torch at import)

app.add_typer(topro_app, name="topro")
from llmie.projection.llm_cli import app as data_app  # noqa: E402  (cheap: no torch at import)

app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmie {__version__}")
        raise typer.Exit()


@app.callback()
def main(ctx: typer.Context,
         version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """llmie: multilingual information extraction with LLMs."""
    from llmie.manifest import start_from_argv  # manifest.json in every --out (llmie/manifest.py)

    run = start_from_argv(sys.argv, ctx.invoked_subcommand)
    if run is not None:
        ctx.call_on_close(run.finish)


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command()
def score(pred: Path = typer.Option(..., "--pred", help="Predictions: llmie JSONL (or EXP JSONL)."),
          gold: Path = typer.Option(..., "--gold", help="Gold: llmie JSONL, EXP JSONL, .iob2, .conllu or CoNLL."),
          metric: Optional[str] = typer.Option(None, "--metric", help="lf1 | f1 | em | sm | seqeval (default: all "
                                                                      "that apply)"),
          task: str = typer.Option("ner", "--task", help="ner | re | ee: how items are routed for LF1/F1.")) -> None:
    """Score predictions against gold, matched by id; prints one JSON object."""
    from llmie.metrics.score import score_files
    from llmie.schema import LlmieDataError

    for p in (pred, gold):
        if not p.exists():
            _fail(f"{p}: no such file")
    try:
        out = score_files(pred, gold, metric, task)
    except (LlmieDataError, ValueError) as e:
        _fail(str(e))
    typer.echo(json.dumps(out, ensure_ascii=False))
    if out["missing"] or out["extra"]:
        typer.secho(f"note: {out['missing']} gold ids have no prediction (scored as empty), "
                    f"{out['extra']} predictions have no gold (ignored)", err=True, fg=typer.colors.YELLOW)


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def _projector(method: str, model: str, batch_size: int, adapter: Optional[str] = None, best_run: bool = True,
               elision: bool = False, llm_backend: str = "hf"):
    """A function pairs -> target Documents, with the aligner loaded now (so timings exclude the load)."""
    from llmie.projection.project import METHODS, get_aligner, project

    if method not in METHODS:
        _fail(f"unknown method {method!r}; available: {', '.join(METHODS)}")
    kw = {"adapter": adapter} if adapter and method in ("binary", "binary-w", "pvp", "llm") else {}
    if method == "llm":  # --model embedded = the embedded LLM (SmolLM2-135M-Instruct) here
        kw["backend"] = llm_backend
    try:
        get_aligner(method, model, **kw)
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as e:
        _fail(f"cannot load the {method} projector ({model}): {e}")
    return lambda pairs: list(project(pairs, method, model, batch_size=batch_size, best_run=best_run,
                                      elision=elision, **kw))


BEST_RUN_HELP = ("binary/pvp: when a span's aligned words split into runs (a repeated name), keep the best "
                 "run (llmie's default) or fail the sample (--strict-runs, the paper's rule).")


ELISION_HELP = ("Take an elided article glued to a span's first word into the span (l'atmosphère): "
                "a dataset convention (ABSA-EXP fr: yes; RELX/Europarl: no).")


# `--engine ray` options, shared by project, extract and synth (llmie/scale/)
ENGINE_OPT = typer.Option("local", "--engine", help="local | ray (extra: scale): a Ray Data actor pool, one model "
                                                    "load per actor, resumable shards in OUT.shards/")
ADDRESS_OPT = typer.Option(None, "--address", help="ray: auto | ray://head:10001 | head:6379; none = start a "
                                                   "local cluster")
WORKERS_OPT = typer.Option(2, "--workers", help="ray: actors (one model load each, 1 CPU each).")
GPUS_OPT = typer.Option(0.0, "--gpus-per-worker", help="ray: GPUs per actor (0.25: four share a GPU; 1 for vLLM).")


def _scale_run(fn: str, inp: Path, out: Path, engine: str, **kw) -> dict:
    """`--engine ray`: the body lives in llmie/scale/cli.py; errors become one clear line."""
    if engine != "ray":
        _fail(f"unknown --engine {engine!r}; choose local or ray")
    try:
        from llmie.scale import cli as scale_cli

        return getattr(scale_cli, fn)(inp, out, **kw)
    except (ImportError, RuntimeError, ValueError, FileNotFoundError, OSError) as e:
        _fail(str(e))
    return {}


@app.command()
def project(inp: Path = typer.Option(..., "--in", help="EXP-style pairs JSONL (tgt_spans optional)."),
            out: Path = typer.Option(..., "--out", help="Output llmie JSONL: target documents with spans + status."),
            method: str = typer.Option("awesome", "--method", help="awesome | binary | binary-w | pvp | llm"),
            model: str = typer.Option("embedded", "--model", help="Encoder (llm: the LLM): embedded, a local "
                                                                  "folder or a hub id."),
            backend: str = typer.Option("hf", "--backend", help="llm: hf | vllm | openai (with --model "
                                                                "openai:<url>#<name>)."),
            batch_size: int = typer.Option(32, "--batch-size"),
            threads: int = typer.Option(1, "--threads", help="torch threads (1 is fastest on a shared 2-core box)."),
            adapter: Optional[str] = typer.Option(None, "--adapter", help="binary/pvp: trained folder (default: "
                                                                          "the one shipped with llmie); llm: a "
                                                                          "LoRA adapter (llmie sft/dpo output)."),
            best_run: bool = typer.Option(True, "--best-run/--strict-runs", help=BEST_RUN_HELP),
            elision: bool = typer.Option(False, "--elision", help=ELISION_HELP),
            chunk: int = typer.Option(256, "--chunk", help="Pairs per step (each step is appended to --out); ray: "
                                                           "pairs per shard."),
            engine: str = ENGINE_OPT, address: Optional[str] = ADDRESS_OPT, workers: int = WORKERS_OPT,
            gpus: float = GPUS_OPT,
            ) -> None:
    """Project source spans onto target texts; each output record has meta.status ok|failed (+ reason).

    Resumable: rerun with the same --out and finished records are kept and skipped."""
    from rich.progress import track

    from llmie.io import write_jsonl
    from llmie.io.exp import read_exp_records
    from llmie.schema import Document

    if not inp.exists():
        _fail(f"{inp}: no such file")
    _threads(threads)
    if engine != "local":  # same records, same project(), run as a Ray Data actor pool (llmie/scale/)
        typer.echo(json.dumps(_scale_run("project_ray", inp, out, engine, method=method, model=model,
                                         batch_size=batch_size, adapter=adapter, best_run=best_run, elision=elision,
                                         backend=backend, chunk=chunk, workers=workers, address=address,
                                         num_gpus=gpus)))
        return
    fn = _projector(method, model, batch_size, adapter, best_run, elision, backend)
    records = list(read_exp_records(inp))
    from llmie.io.atomic import resume_jsonl

    keys = [str(r.record if isinstance(r, Exception) else r.id) for r in records]
    # a killed or earlier run: keep its finished records of this input (torn tail and stale records dropped)
    prev = resume_jsonl(out, set(keys).__contains__)
    n_all = len(records)
    records = [r for r, k in zip(records, keys) if k not in prev]
    n_ok, n_bad = sum(d.meta.get("status") == "ok" for d in prev.values()), 0
    step = max(1, chunk)
    for b in track(range(0, len(records), step), description=f"projecting ({method})", transient=True):
        part = records[b:b + step]
        done = iter(fn([r for r in part if not isinstance(r, Exception)]))
        docs = []
        for r in part:  # bad input lines get a failed record in place; the run goes on
            if isinstance(r, Exception):
                n_bad += 1
                docs.append(Document(id=str(r.record), text=getattr(r, "tgt_text", "") or "",
                                     meta={"status": "failed", "reason": f"bad input: {r}"}))
            else:
                docs.append(next(done))
        write_jsonl(docs, out, append=True)
        n_ok += sum(d.meta["status"] == "ok" for d in docs)
    n = n_all
    typer.echo(json.dumps({"n": n, "ok": n_ok, "failed": n - n_ok, "bad_input": n_bad, "resumed": len(prev),
                           "out": str(out)}))


@app.command("eval")
def eval_(bench: str = typer.Option(..., "--bench", help="exp | align | masakhaner | uner"),
          method: str = typer.Option("awesome", "--method", help="exp: awesome | binary | binary-w | pvp | llm; "
                                                                 "align: awesome | binary"),
          data: Optional[Path] = typer.Option(None, "--data", help="Data folder (default: $LLMIE_DATA_DIR/<bench>)."),
          pairs: Optional[str] = typer.Option(None, "--pairs", help="Comma-separated language pairs, e.g. en-de,en-es."),
          limit: Optional[int] = typer.Option(None, "--limit", help="At most N pairs per file."),
          out: Optional[Path] = typer.Option(None, "--out", help="Write results.json, results.md, predictions, plots."),
          model: str = typer.Option("embedded", "--model", help="Encoder: embedded, a local folder or a hub id."),
          adversarial: bool = typer.Option(False, "--adversarial", help="Also measure the adversarial projection rate."),
          files: Optional[str] = typer.Option(None, "--files", help="Glob of files under --data (default *.test.jsonl)."),
          batch_size: int = typer.Option(32, "--batch-size"),
          threads: int = typer.Option(1, "--threads"),
          langs: Optional[str] = typer.Option(None, "--langs", help="masakhaner: languages, e.g. hau,swa."),
          split: str = typer.Option("test", "--split", help="masakhaner/uner split: train | dev | test."),
          backend: Optional[str] = typer.Option(None, "--backend", help="LLM backend: masakhaner/uner (default "
                                                                        "vllm); exp --method llm (default hf)."),
          api_base: Optional[str] = typer.Option(None, "--api-base", help="OpenAI-compatible server URL."),
          adapter: Optional[str] = typer.Option(None, "--adapter", help="binary/pvp: trained folder; masakhaner/uner "
                                                                        "plain|transfusion: a LoRA adapter folder."),
          translator: str = typer.Option("auto", "--translator", help="transfusion: MT engine for translate-test."),
          translations: Optional[Path] = typer.Option(None, "--translations", help="transfusion: pre-translated "
                                                      "JSONL ({source, translation} rows) instead of MT."),
          max_tokens: int = typer.Option(256, "--max-tokens", help="plain/transfusion: generation budget."),
          best_run: bool = typer.Option(True, "--best-run/--strict-runs", help=BEST_RUN_HELP),
          elision: bool = typer.Option(False, "--elision", help=ELISION_HELP)) -> None:
    """Run a benchmark and print its summary; --out writes machine-readable results."""
    from llmie.config import data_dir

    _threads(threads)
    llm_backend, backend = backend or "hf", backend or "vllm"
    if bench == "exp":
        from llmie.bench.exp import markdown_table, run_exp

        root = data or data_dir() / "exp"
        if not root.exists():
            _fail(f"{root}: no such folder (pass --data or set LLMIE_DATA_DIR)")
        if out and (out / "results.json").exists():
            prev = json.loads((out / "results.json").read_text(encoding="utf-8"))
            if prev.get("method") != method:
                _fail(f"{out} holds results of method {prev.get('method')!r}; use another --out")
        fn = _projector(method, model, batch_size, adapter, best_run, elision, llm_backend)
        from rich.progress import Progress

        with Progress(transient=True) as prog:
            task = prog.add_task(f"EXP ({method})", total=None)
            res = run_exp(fn, method, root, out, pairs.split(",") if pairs else None, limit, adversarial, files,
                          progress=lambda key, n: prog.update(task, advance=n, description=f"EXP {key}"))
        typer.echo(markdown_table(res))
        if out:
            typer.echo(f"wrote {out / 'results.json'}")
    elif bench == "align":
        from llmie.bench.align import PAIRS, run_align_bench
        from llmie.projection.project import get_aligner

        root = data or data_dir() / "word_alignment"
        res = run_align_bench(get_aligner(method, model, **({"adapter": adapter} if adapter else {})), root, tuple(pairs.split(",")) if pairs else PAIRS, limit,
                              split="heldout")
        summary = {"bench": "align", "method": method, "split": "heldout (last 20% of each file)", "pairs": res}
        typer.echo(json.dumps(summary))
        if out:
            from llmie.io import write_json_atomic
            write_json_atomic(summary, out / "results.json")
    elif bench == "udpos" or (bench in ("masakhaner", "uner") and method in ("topro", "topro-llm")):
        from llmie.topro.cli import bench_eval  # --model: a `llmie topro train` folder, or an LLM for topro-llm

        bench_eval(bench, method, model, data or data_dir(), langs, split, limit, out, backend)
    elif bench in ("masakhaner", "uner") and method in ("plain", "transfusion", "transfusion-wo-annotate"):
        from llmie.bench.ner import markdown
        from llmie.mt import UnsupportedDirection
        from llmie.transfusion.bench import run_tf_bench, translator_for

        try:  # refuse languages without MT before the model loads
            translator_for(method, langs.split(",") if langs else ["eng"] if bench == "uner" else [], translator,
                           translations) if method != "plain" and langs else None
        except UnsupportedDirection as e:
            _fail(str(e))
        be = _backend(backend, model, api_base)
        from rich.progress import Progress

        with Progress(transient=True) as prog:
            task = prog.add_task(bench, total=None)
            try:
                res = run_tf_bench(bench, method, be, data or data_dir(), out, langs.split(",") if langs else None,
                                   split, limit, model=model, adapter=adapter, translator=translator,
                                   translations=translations, max_tokens=max_tokens,
                                   progress=lambda lang, n: prog.update(task, advance=n, description=f"{bench} {lang}"))
            except (UnsupportedDirection, FileNotFoundError) as e:
                be.close()
                _fail(str(e))
        be.close()
        typer.echo(markdown(res))
    elif bench in ("masakhaner", "uner"):
        from llmie.bench.ner import load_schema, markdown, run_ner_bench
        from llmie.massie import extract as run_extract

        root = data or data_dir()
        schema = load_schema(bench)
        be = _backend(backend, model, api_base)
        from rich.progress import Progress

        with Progress(transient=True) as prog:
            task = prog.add_task(bench, total=None)
            res = run_ner_bench(bench, lambda docs: run_extract(docs, schema, backend=be), root, out,
                                langs.split(",") if langs else None, split, limit, method="massie", model=model,
                                progress=lambda lang, n: prog.update(task, advance=n, description=f"{bench} {lang}"))
        be.close()
        typer.echo(markdown(res))
    else:
        _fail(f"unknown bench {bench!r}; available: exp, align, masakhaner, uner")


def _backend(backend: str, model: str, api_base: Optional[str], cache: bool = True):
    from llmie.backends import get_backend

    kw = {"api_base": api_base} if api_base else {}
    try:
        return get_backend(backend, model, cache=cache, **kw)
    except (FileNotFoundError, ValueError, RuntimeError, OSError, ImportError) as e:
        _fail(f"cannot start the {backend} backend for {model!r}: {e}")


@app.command()
def extract(task: str = typer.Option("ner", "--task", help="ner | re | sf | ed | ee"),
            labels: str = typer.Option(..., "--labels", help="Comma-separated labels, or a schema YAML file."),
            inp: Path = typer.Option(..., "--in", help="llmie JSONL (or .txt, one text per line)."),
            out: Path = typer.Option(..., "--out", help="Output llmie JSONL with grounded spans."),
            model: str = typer.Option("embedded", "--model", help="embedded, a folder, a .gguf, a hub id, or "
                                                                  "openai:<url>#<name>"),
            backend: str = typer.Option("vllm", "--backend", help="vllm | openai | hf"),
            api_base: Optional[str] = typer.Option(None, "--api-base", help="OpenAI-compatible server URL."),
            template: Optional[str] = typer.Option(None, "--template", help="Prompt template, e.g. massie.ner.v1."),
            prompt: Optional[Path] = typer.Option(None, "--prompt", help="An `llmie optimize --out` folder (uses its "
                                                                         "template.yaml) or a template YAML."),
            constrained: bool = typer.Option(True, "--constrained/--no-constrained",
                                             help="JSON-schema constrained decoding."),
            chunk: int = typer.Option(64, "--chunk", help="Documents per backend call (results saved per chunk); "
                                                          "ray: documents per shard."),
            engine: str = ENGINE_OPT, address: Optional[str] = ADDRESS_OPT, workers: int = WORKERS_OPT,
            gpus: float = GPUS_OPT,
            ) -> None:
    """Extract with batched-schema prompts; resumable (ids already in --out are skipped)."""
    from llmie.io import read_documents, write_jsonl
    from llmie.massie import extract as run_extract
    from llmie.massie.prompt import schema_for
    from llmie.schema import Document, LlmieDataError

    if labels.endswith((".yaml", ".yml")):
        from llmie.bench.ner import load_schema
        schema = load_schema(labels)
    else:
        try:
            schema = schema_for(task, labels)
        except ValueError as e:
            _fail(str(e))
    if not inp.exists():
        _fail(f"{inp}: no such file")
    try:
        if inp.suffix == ".txt":
            lines = inp.read_text(encoding="utf-8-sig").splitlines()
            docs = [Document(id=str(i), text=t) for i, t in enumerate(lines)]
        else:
            docs = list(read_documents(inp))
    except LlmieDataError as e:
        _fail(str(e))
    if prompt is not None:
        template = str(prompt / "template.yaml" if prompt.is_dir() else prompt)
        if not Path(template).exists():
            _fail(f"{template}: no such prompt template")
    if engine != "local":  # same documents, same extract(), one backend per Ray actor (llmie/scale/)
        typer.echo(json.dumps(_scale_run("extract_ray", inp, out, engine, schema=schema, backend=backend, model=model,
                                         api_base=api_base, template=template, constrained=constrained, chunk=chunk,
                                         workers=workers, address=address, num_gpus=gpus)))
        return
    from llmie.io.atomic import resume_jsonl

    done = set(resume_jsonl(out))  # a killed run's torn last line is dropped, finished ids are skipped
    todo = [d for d in docs if d.id not in done]
    be = _backend(backend, model, api_base)
    n_spans = n_unaligned = n_invalid = 0
    from rich.progress import track

    for b in track(range(0, len(todo), chunk), description="extracting", transient=True):
        preds = run_extract(todo[b:b + chunk], schema, backend=be, template=template, constrained=constrained)
        write_jsonl(preds, out, append=True)
        for p in preds:
            n_spans += len(p.spans)
            n_unaligned += p.meta["counts"]["unaligned"]
            n_invalid += p.meta["parse_status"] == "invalid"
    be.close()
    typer.echo(json.dumps({"n": len(docs), "skipped_done": len(done), "spans": n_spans, "unaligned": n_unaligned,
                           "invalid_answers": n_invalid, "out": str(out)}))


@app.command()
def optimize(task: str = typer.Option("ner", "--task", help="ner | re (also sf, ed, ee with --train) | "
                                                          "projection (PVP synthetic data, EM)"),
             train: Optional[Path] = typer.Option(None, "--train", help="llmie JSONL/.iob2/CoNLL (default: UNER "
                                                                        "English dev; RE: RELX English)."),
             dev: Optional[Path] = typer.Option(None, "--dev", help="Dev file (default: a disjoint slice of --train)."),
             langs: Optional[str] = typer.Option(None, "--langs", help="eng and/or MasakhaNER codes, e.g. eng,hau."),
             labels: Optional[str] = typer.Option(None, "--labels", help="Comma-separated labels or a schema YAML."),
             n_train: Optional[int] = typer.Option(None, "--n-train"), n_dev: Optional[int] = typer.Option(None, "--n-dev"),
             n_test: int = typer.Option(0, "--n-test", help="Held-out slice scored at the end (never optimised on)."),
             nonempty: Optional[float] = typer.Option(None, "--nonempty", help="Share of documents with gold items "
                                                                               "per slice (default: as sampled)."),
             auto: Optional[str] = typer.Option(None, "--auto", help="light | medium | heavy (DSPy budgets)."),
             trials: Optional[int] = typer.Option(None, "--trials", help="BO trials (paper: 50)."),
             candidates: Optional[int] = typer.Option(None, "--candidates", help="m candidate sets (paper: 12)."),
             demos: Optional[int] = typer.Option(None, "--demos", help="K demos per set (paper: 3)."),
             minibatch: Optional[int] = typer.Option(None, "--minibatch", help="Minibatch size (paper: 25; 0 = off)."),
             seed: int = typer.Option(13, "--seed"),
             model: str = typer.Option("embedded", "--model", help="Model to serve when no --api-base."),
             api_base: Optional[str] = typer.Option(None, "--api-base", help="OpenAI-compatible server, e.g. "
                                                                             "http://127.0.0.1:8000/v1"),
             model_name: Optional[str] = typer.Option(None, "--model-name", help="Served model name there."),
             task_model: Optional[str] = typer.Option(None, "--task-model", help="Served name or openai:<url>#<name>."),
             prompt_model: Optional[str] = typer.Option(None, "--prompt-model", help="Served name or openai:<url>#<name>."),
             template: Optional[str] = typer.Option(None, "--template", help="Base prompt (default massie.<task>.v1)."),
             preset: Optional[str] = typer.Option(None, "--preset", help="smoke: a CI-sized run."),
             dry_run: bool = typer.Option(False, "--dry-run", help="Print the LM calls the settings imply and stop."),
             out: Optional[Path] = typer.Option(None, "--out", help="Writes results.json, program.json, template.yaml.")
             ) -> None:
    """Optimise the MASSIE prompt (instruction + demos) with DSPy MIPROv2 on dev LF1."""
    import logging

    from llmie.optimize import OptimizeConfig, run_optimize
    from llmie.schema import LlmieDataError

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    if auto and (trials or candidates):
        _fail("--auto and --trials/--candidates are exclusive")
    cfg = OptimizeConfig(task=task, train=str(train) if train else None, dev=str(dev) if dev else None,
                         labels=labels, auto=auto, seed=seed, model=model, api_base=api_base, model_name=model_name,
                         task_model=task_model, prompt_model=prompt_model, template=template, preset=preset,
                         out=str(out) if out else None, n_test=n_test, nonempty=nonempty)
    if langs:
        cfg.langs = [x.strip() for x in langs.split(",") if x.strip()]
    try:
        cfg.apply_preset()
        cfg.preset = None
        for k, v in (("n_train", n_train), ("n_dev", n_dev), ("trials", trials), ("candidates", candidates),
                     ("demos", demos)):
            if v is not None:
                setattr(cfg, k, v)
        if demos is not None:
            cfg.bootstrapped = demos
        if minibatch is not None:
            cfg.minibatch_size = minibatch or None
        if auto:
            cfg.auto = auto
        res = run_optimize(cfg, dry_run=dry_run, echo=lambda m: typer.echo(m, err=True))
    except (LlmieDataError, ValueError, FileNotFoundError, RuntimeError, TimeoutError) as e:
        _fail(str(e))
    if dry_run:
        typer.echo(json.dumps(res, ensure_ascii=False, indent=1))
        typer.echo(f"at most {res['lm_calls_max']['task']['total_max']} task-model calls and "
                   f"{res['lm_calls_max']['prompt']['total_max']} prompt-model calls", err=True)
        return
    summary = {k: res[k] for k in ("task", "dev", "lm_calls", "seconds", "kept", "parse_failures")}
    if res.get("test"):
        summary["test"] = {k: {"lf1": v["lf1"], "f1": v["f1"]} for k, v in res["test"].items()}
    typer.echo(json.dumps(summary, ensure_ascii=False))
    typer.echo(res["note"], err=True)
    if out:
        typer.echo(f"wrote {out / 'results.json'}, {out / 'program.json'}"
                   + ("" if task == "projection" else f", {out / 'template.yaml'}"), err=True)


@app.command()
def serve(model: str = typer.Option("embedded", "--model", help="embedded or a model folder."),
          port: Optional[int] = typer.Option(None, "--port"),
          host: str = typer.Option("127.0.0.1", "--host", help="Bind address (127.0.0.1 unless you mean it)."),
          lora: list[str] = typer.Option([], "--lora", help="NAME=DIR adapters to serve (repeatable)."),
          name: str = typer.Option("llmie", "--name", help="Served model name."),
          timeout: float = typer.Option(240, "--timeout", help="Seconds to wait until the server is healthy.")) -> None:
    """Start a vLLM OpenAI-compatible server on 127.0.0.1; Ctrl-C stops it."""
    from llmie.backends.serve import serve_forever

    adapters = {}
    for item in lora:
        if "=" not in item:
            _fail(f"--lora expects NAME=DIR, got {item!r}")
        k, v = item.split("=", 1)
        adapters[k] = v
    serve_forever(model=model, port=port, host=host, lora=adapters or None, served_name=name, timeout=timeout,
                  allow_remote=host not in ("127.0.0.1", "localhost"))


@app.command("train-aligner", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_aligner(ctx: typer.Context, recipe: Path = typer.Argument(..., help="e.g. recipes/binary_aligner.yaml")) -> None:
    """Train the BinaryAlign-style word aligner on gold alignments; extra args are key=value overrides."""
    import logging

    from llmie.projection.train_binary import load_recipe, train_binary_aligner

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        cfg = load_recipe(recipe, ctx.args)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    typer.echo(str(train_binary_aligner(cfg)))


@app.command("train-projector", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_projector(ctx: typer.Context,
                    recipe: Path = typer.Argument(..., help="e.g. recipes/pvp_encoder.yaml")) -> None:
    """Train the PVP span projector (WGL + pair augmentation); extra args are key=value overrides."""
    import logging

    from llmie.projection.train_pvp import load_recipe, train_projector as run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        cfg = load_recipe(recipe, ctx.args)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    typer.echo(str(run(cfg)))


@app.command("sft", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sft(ctx: typer.Context, recipe: Path = typer.Argument(..., help="e.g. recipes/transfusion.yaml")) -> None:
    """Supervised fine-tuning (trl SFTTrainer + LoRA, QLoRA with load_in_4bit); extra args: key=value overrides."""
    import logging

    from llmie.train.sft import load_sft_recipe, train_sft

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if not recipe.exists():
        _fail(f"{recipe}: no such file")
    try:
        cfg = load_sft_recipe(recipe, ctx.args)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    out = train_sft(cfg)
    info = json.loads((out / "llmie_sft.json").read_text())
    typer.echo(json.dumps({k: info[k] for k in ("global_steps", "train_loss", "logged_losses", "linear4bit_layers",
                                                "rows", "row_kinds", "seconds")} | {"out": str(out)}))


@app.command("dpo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def dpo(ctx: typer.Context, recipe: Path = typer.Argument(..., help="e.g. recipes/pvp_dpo.yaml")) -> None:
    """Preference training (trl DPOTrainer + LoRA, from an SFT adapter); extra args: key=value overrides."""
    import logging

    from llmie.schema import LlmieDataError
    from llmie.train.dpo import load_dpo_recipe, train_dpo

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if not recipe.exists():
        _fail(f"{recipe}: no such file")
    try:
        out = train_dpo(load_dpo_recipe(recipe, ctx.args))
    except (ValueError, FileNotFoundError, LlmieDataError) as e:
        _fail(str(e))
    info = json.loads((out / "llmie_dpo.json").read_text())
    typer.echo(json.dumps({k: info[k] for k in ("global_steps", "train_loss", "logged_losses", "reward_accuracies",
                                                "rows", "row_kinds", "reference", "seconds")} | {"out": str(out)}))


@app.command("export")
def export(adapter: Path = typer.Option(..., "--adapter", help="peft LoRA adapter folder (llmie sft output)."),
           out: Path = typer.Option(..., "--out", help="Output folder."),
           merge: bool = typer.Option(False, "--merge/--keep-adapter", help="Merge into the full-precision base, "
                                                                            "or keep the adapter for vLLM LoRA."),
           base: Optional[str] = typer.Option(None, "--base", help="Base model (default: the adapter's base)."),
           load_in_4bit: bool = typer.Option(False, "--load-in-4bit", help="(refused with --merge)")) -> None:
    """Merge a LoRA adapter into its base model, or keep it as an adapter for vLLM LoRA serving."""
    from llmie.train.export import ExportError, export_adapter

    try:
        info = export_adapter(adapter, out, merge=merge, base=base, load_in_4bit=load_in_4bit)
    except ExportError as e:
        _fail(str(e))
    typer.echo(json.dumps(info))


@app.command()
def synth(out: Path = typer.Option(..., "--out", help="Folder for train/dev/rejected EXP-style JSONL."),
          langs: str = typer.Option("por,spa", "--langs", help="Target languages (MT must support en->X)."),
          src: Optional[Path] = typer.Option(None, "--src", help="English llmie JSONL/.iob2 with spans (default: "
                                                                 "UNER English-EWT dev)."),
          translator: str = typer.Option("auto", "--translator", help="auto | bergamot | apertium | nllb"),
          proposer: str = typer.Option("binary", "--proposer", help="binary | awesome"),
          n_train: int = typer.Option(1000, "--n-train"), n_dev: int = typer.Option(100, "--n-dev"),
          verify: bool = typer.Option(True, "--verify/--no-verify", help="Back-projection verifier (Alg. 2)."),
          seed: int = typer.Option(13, "--seed"), threads: int = typer.Option(1, "--threads"),
          chunk: int = typer.Option(256, "--chunk", help="Seeds per step (one MT batch per language + one "
                                                         "proposer batch; saved per step); ray: seeds per shard."),
          engine: str = ENGINE_OPT, address: Optional[str] = ADDRESS_OPT, workers: int = WORKERS_OPT,
          gpus: float = GPUS_OPT,
          mt_cache: Optional[str] = typer.Option(None, "--mt-cache", help="Translation cache (sqlite path; "
                                                                          "'none' = off; default CACHE/mt.sqlite)."),
          ) -> None:
    """PVP synthetic data: translate English spans, propose (Alg. 1), verify (Alg. 2), write points.

    Resumable: rerun the same command and finished seeds (local) or shards (ray) are skipped."""
    from llmie.config import data_dir
    from llmie.io import read_documents, write_json_atomic
    from llmie.projection.synth import synthesize

    _threads(threads)
    if engine not in ("local", "ray"):
        _fail(f"unknown --engine {engine!r}; choose local or ray")
    path = src or data_dir() / "ner/uner_en_ewt/en_ewt-ud-dev.iob2"
    if not path.exists():
        _fail(f"{path}: no such file")
    if "exp" in str(path) and "test" in path.name:
        _fail("refusing to build training data from EXP test pairs")
    docs = list(read_documents(path, lang="en"))
    try:
        res = synthesize(docs, langs.split(","), out, translator=translator, proposer=proposer, n_train=n_train,
                         n_dev=n_dev, seed=seed, verify=verify, engine=engine, chunk=max(1, chunk), workers=workers,
                         address=address, mt_cache=mt_cache, num_gpus=gpus)
    except (ImportError, RuntimeError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    write_json_atomic({"src": str(path), "proposer": proposer, "verify": verify, "counts": res["counts"],
                       "run": res["run"]}, out / "counts.json")
    typer.echo(json.dumps(res["counts"]))


@app.command()
def report(dirs: list[Path] = typer.Argument(..., help="Run folders (each with results.json), or folders of runs."),
           out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write."),
           per_file: int = typer.Option(40, "--per-file", help="Predictions shown per prediction file."),
           title: str = typer.Option("llmie report", "--title")) -> None:
    """One static, offline HTML page: tables per dataset/language/method, the runs' plots, a prediction viewer."""
    from llmie.report import write_report

    try:
        path = write_report(dirs, out, per_file=per_file, title=title)
    except FileNotFoundError as e:
        _fail(str(e))
    typer.echo(f"wrote {path} ({path.stat().st_size // 1024} KB)")


@models_app.command("prepare")
def models_prepare(force: bool = typer.Option(False, "--force", help="Rebuild even if cached."),
                   which: str = typer.Option("all", "--which", help="all | llm | encoder")) -> None:
    """Build the cached Hugging Face folders of the embedded models (once; later calls are no-ops)."""
    from llmie.models import prepare_encoder, prepare_llm

    if which not in ("all", "llm", "encoder"):
        _fail("--which must be all, llm or encoder")
    try:
        if which in ("all", "encoder"):
            typer.echo(f"encoder: {prepare_encoder(force=force)}")
        if which in ("all", "llm"):
            typer.echo(f"llm: {prepare_llm(force=force)}")
    except (FileNotFoundError, RuntimeError) as e:
        _fail(str(e))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
