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


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmie {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """llmie: multilingual information extraction with LLMs."""


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
