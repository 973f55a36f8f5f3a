"""`llmie optimize`: MIPROv2 over the MASSIE prompt (or the projection program), llmie.optimize."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from llmie.cli.common import app, fail


@app.command("optimize")
def optimize_cmd(task: str = typer.Option("ner", "--task", help="ner | re (also sf, ed, ee with --train) | "
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
             dev_caps: Optional[str] = typer.Option(None, "--dev-caps", help="EMPTY,LABELLED: M-LIGHT caps per language "
                                                    "for dev (and test with --n-test), e.g. 100,30 (--preset mlight)."),
             auto: Optional[str] = typer.Option(None, "--auto", help="light | medium | heavy (DSPy budgets)."),
             trials: Optional[int] = typer.Option(None, "--trials", help="BO trials (paper: 50)."),
             candidates: Optional[int] = typer.Option(None, "--candidates", help="m candidate sets (paper: 12)."),
             demos: Optional[int] = typer.Option(None, "--demos", help="K demos per set (paper: 3)."),
             minibatch: Optional[int] = typer.Option(None, "--minibatch", help="Minibatch size (paper: 25; 0 = off)."),
             max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Answer budget per task-model call "
                                                      "(default 256; a rambling small model costs up to this per call)."),
             seed: int = typer.Option(13, "--seed"),
             model: str = typer.Option("embedded", "--model", help="Model to serve when no --api-base."),
             api_base: Optional[str] = typer.Option(None, "--api-base", help="OpenAI-compatible server, e.g. "
                                                                             "http://127.0.0.1:8000/v1"),
             model_name: Optional[str] = typer.Option(None, "--model-name", help="Served model name there."),
             task_model: Optional[str] = typer.Option(None, "--task-model", help="Served name or openai:<url>#<name>."),
             prompt_model: Optional[str] = typer.Option(None, "--prompt-model", help="Served name or openai:<url>#<name>."),
             template: Optional[str] = typer.Option(None, "--template", help="Base prompt (default massie.<task>.v1)."),
             preset: Optional[str] = typer.Option(None, "--preset", help="smoke: a CI-sized run; mlight: dev caps "
                                                  "100 empty / 30 labelled per language; balanced: 30 / 30."),
             dry_run: bool = typer.Option(False, "--dry-run", help="Print the LM calls the settings imply and stop."),
             out: Optional[Path] = typer.Option(None, "--out", help="Writes results.json, program.json, template.yaml.")
             ) -> None:
    """Optimise the MASSIE prompt (instruction + demos) with DSPy MIPROv2 on dev LF1."""
    import logging

    from llmie.optimize import OptimizeConfig, run_optimize
    from llmie.schema import LlmieDataError

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    if auto and (trials or candidates):
        fail("--auto and --trials/--candidates are exclusive")
    cfg = OptimizeConfig(task=task, train=str(train) if train else None, dev=str(dev) if dev else None,
                         labels=labels, auto=auto, seed=seed, model=model, api_base=api_base, model_name=model_name,
                         task_model=task_model, prompt_model=prompt_model, template=template, preset=preset,
                         out=str(out) if out else None, n_test=n_test, nonempty=nonempty)
    if langs:
        cfg.langs = [x.strip() for x in langs.split(",") if x.strip()]
    try:
        if max_tokens is not None and max_tokens < 1:
            fail(f"--max-tokens {max_tokens}: must be at least 1")
        cfg.apply_preset()
        cfg.preset = None
        for k, v in (("n_train", n_train), ("n_dev", n_dev), ("trials", trials), ("candidates", candidates),
                     ("demos", demos), ("max_tokens", max_tokens)):
            if v is not None:
                setattr(cfg, k, v)
        if demos is not None:
            cfg.bootstrapped = demos
        if dev_caps:
            try:
                e, l = (int(x) for x in dev_caps.split(","))
            except ValueError:
                fail(f"--dev-caps {dev_caps!r}: expected EMPTY,LABELLED, e.g. 100,30")
            cfg.dev_caps = (e, l)
        if minibatch is not None:
            cfg.minibatch_size = minibatch or None
        if auto:
            cfg.auto = auto
        res = run_optimize(cfg, dry_run=dry_run, echo=lambda m: typer.echo(m, err=True))
    except (LlmieDataError, ValueError, FileNotFoundError, RuntimeError, TimeoutError) as e:
        fail(str(e))
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
