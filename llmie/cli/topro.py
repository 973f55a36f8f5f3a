"""`llmie topro train|eval`: TOPRO token-level prompt decomposition (llmie.topro)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from llmie.cli.common import fail
from llmie.cli.train import RECIPE_ARGS, recipe_config

app = typer.Typer(help="TOPRO: token-level prompt decomposition (encoder MLM verbalizers, LLM zero-shot).",
                  no_args_is_help=True)


def _check_task(task: str) -> None:
    if task not in ("ner", "pos"):
        fail(f"--task must be ner or pos, got {task!r}")


@app.command("train", context_settings=RECIPE_ARGS)
def train_cmd(ctx: typer.Context,
              eval_limit: int = typer.Option(0, "--eval-limit", help="Also score the English test set "
                                                                     "(first N sentences; 0: skip).")) -> None:
    """Train encoder TOPRO (or the vanilla baseline) on English; prints a JSON summary.

    `llmie topro train [RECIPE.yaml] [--key value | key=value ...]` over the ToproTrainConfig fields
    (recipes/topro_ner.yaml, recipes/topro_pos.yaml): e.g. `--task ner --method vanilla --n-train 8
    --max-steps 2 --lr 1e-4 --mark --out DIR`; `--n-train 0` = all sentences, `--head-lr 0` = same as lr.
    """
    from dataclasses import replace

    from llmie.topro.train import ToproTrainConfig, default_file, evaluate, train as run_train
    from llmie.topro.verbalizer import VerbalizerError

    args = list(ctx.args)
    recipe = Path(args.pop(0)) if args and not args[0].startswith("-") and "=" not in args[0] else None
    cfg = recipe_config(ToproTrainConfig, recipe, args)
    _check_task(cfg.task)
    if not cfg.out:
        fail("topro train needs --out DIR (or out: in the recipe)")
    cfg = replace(cfg, n_train=cfg.n_train or None, head_lr=cfg.head_lr or None)  # 0 = all / same as lr
    out = Path(cfg.out)
    try:
        t = run_train(cfg)
    except (VerbalizerError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    summary: dict[str, Any] = {k: t.log[k] for k in ("sentences", "examples", "steps", "seconds", "loss_first10",
                                                     "loss_last10")}
    summary.update(method=cfg.method, task=cfg.task, out=str(out))
    if t.verbalizer is not None and t.verbalizer.substitutions:
        summary["verbalizer_substitutions"] = t.verbalizer.substitutions
    if eval_limit:
        from llmie.settings import data_dir

        res = evaluate(t, {"en": default_file(cfg.task, "test", data_dir())}, limit=eval_limit, out=out / "eval")
        summary["eval"] = res["langs"]["en"]
    typer.echo(json.dumps(summary))


@app.command("eval")
def eval_cmd(task: str = typer.Option(..., "--task", help="ner | pos"),
             model: str = typer.Option(..., "--model", help="Folder from `llmie topro train`, or with --llm an LLM "
                                                            "(embedded, a folder, a hub id)."),
             llm: bool = typer.Option(False, "--llm", help="Zero-shot LLM TOPRO (next-token scoring)."),
             mode: str = typer.Option("score", "--mode", help="LLM: score (restricted next token) | generate "
                                                              "(generate, then match label words)"),
             backend: str = typer.Option("hf", "--backend", help="LLM backend: hf (KV prefix reuse) | vllm"),
             reuse_prefix: bool = typer.Option(True, "--reuse-prefix/--no-reuse-prefix",
                                               help="LLM: share the sentence prefix across the m prompts."),
             mark: bool = typer.Option(False, "--mark/--no-mark", help="LLM: bracket the target word."),
             langs: Optional[str] = typer.Option(None, "--langs", help="ner: en (UNER) and MasakhaNER codes, e.g. "
                                                                      "en,hau,swa; pos: en (UD-EWT) or other UD."),
             test: list[str] = typer.Option([], "--test", help="Extra test file LANG=PATH (repeatable)."),
             data: Optional[Path] = typer.Option(None, "--data", help="Data folder (default $LLMIE_DATA_DIR)."),
             split: str = typer.Option("test", "--split"),
             limit: Optional[int] = typer.Option(None, "--limit", help="First N sentences per language."),
             out: Optional[Path] = typer.Option(None, "--out", help="Write results.json + predictions."),
             batch_size: int = typer.Option(64, "--batch-size"),
             threads: int = typer.Option(1, "--threads")) -> None:
    """Score TOPRO per language: seqeval F1 (NER), token weighted F1, and cost (prompts, passes, seconds)."""
    import torch

    from llmie.settings import data_dir
    from llmie.topro.bench import run_topro, test_files
    from llmie.topro.train import markdown
    from llmie.topro.verbalizer import VerbalizerError

    _check_task(task)
    torch.set_num_threads(max(1, threads))
    try:
        files = test_files(task, data or data_dir(), langs.split(",") if langs else None, split, test)
        res = run_topro(task, model, files, llm=llm, mode=mode, backend=backend, reuse_prefix=reuse_prefix, mark=mark,
                  limit=limit, out=out, batch_size=batch_size)
    except (VerbalizerError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    typer.echo(markdown(res))
    if out:
        from llmie.io.atomic import atomic_write_text

        atomic_write_text(out / "results.md", markdown(res))
        typer.echo(f"wrote {out / 'results.json'}")
