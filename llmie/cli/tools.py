"""Small commands: score, report, serve, models prepare."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from llmie.cli.common import app, fail

models_app = typer.Typer(help="Embedded default models shipped through PyPI packages.", no_args_is_help=True)


@app.command("score")
def score_cmd(pred: Path = typer.Option(..., "--pred", help="Predictions: llmie JSONL (or EXP JSONL)."),
          gold: Path = typer.Option(..., "--gold", help="Gold: llmie JSONL, EXP JSONL, .iob2, .conllu or CoNLL."),
          metric: Optional[str] = typer.Option(None, "--metric", help="lf1 | f1 | em | sm | seqeval (default: all "
                                                                      "that apply)"),
          task: str = typer.Option("ner", "--task", help="ner | re | ee: how items are routed for LF1/F1.")) -> None:
    """Score predictions against gold, matched by id; prints one JSON object."""
    from llmie.metrics.score import score_files
    from llmie.schema import LlmieDataError

    for p in (pred, gold):
        if not p.exists():
            fail(f"{p}: no such file")
    try:
        out = score_files(pred, gold, metric, task)
    except (LlmieDataError, ValueError) as e:
        fail(str(e))
    typer.echo(json.dumps(out, ensure_ascii=False))
    if out["missing"] or out["extra"]:
        typer.secho(f"note: {out['missing']} gold ids have no prediction (scored as empty), "
                    f"{out['extra']} predictions have no gold (ignored)", err=True, fg=typer.colors.YELLOW)


@app.command("serve")
def serve_cmd(model: str = typer.Option("embedded", "--model", help="embedded or a model folder."),
          port: Optional[int] = typer.Option(None, "--port"),
          host: str = typer.Option("127.0.0.1", "--host", help="Bind address (127.0.0.1 unless you mean it)."),
          lora: list[str] = typer.Option([], "--lora", help="NAME=DIR adapters to serve (repeatable; default for "
                                                          "embedded: its IE adapter as NAME-ie)."),
          name: str = typer.Option("llmie", "--name", help="Served model name."),
          timeout: float = typer.Option(240, "--timeout", help="Seconds to wait until the server is healthy.")) -> None:
    """Start a vLLM OpenAI-compatible server on 127.0.0.1; Ctrl-C stops it."""
    from llmie.backends.serve import serve_forever
    from llmie.models import ie_adapter

    # `embedded` also serves its shipped IE adapter as the LoRA model `<name>-ie` (what `llmie extract` uses)
    ie = ie_adapter(model)
    adapters = {f"{name}-ie": ie} if ie and not lora else {}
    for item in lora:
        if "=" not in item:
            fail(f"--lora expects NAME=DIR, got {item!r}")
        k, v = item.split("=", 1)
        adapters[k] = v
    serve_forever(model=model, port=port, host=host, lora=adapters or None, served_name=name, timeout=timeout,
                  allow_remote=host not in ("127.0.0.1", "localhost"))


@app.command("report")
def report_cmd(dirs: list[Path] = typer.Argument(..., help="Run folders (each with results.json), or folders of runs."),
           out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write."),
           per_file: int = typer.Option(40, "--per-file", help="Predictions shown per prediction file."),
           title: str = typer.Option("llmie report", "--title")) -> None:
    """One static, offline HTML page: tables per dataset/language/method, the runs' plots, a prediction viewer."""
    from llmie.report import write_report

    try:
        path = write_report(dirs, out, per_file=per_file, title=title)
    except FileNotFoundError as e:
        fail(str(e))
    typer.echo(f"wrote {path} ({path.stat().st_size // 1024} KB)")


@models_app.command("prepare")
def models_prepare(force: bool = typer.Option(False, "--force", help="Rebuild even if cached."),
                   which: str = typer.Option("all", "--which", help="all | llm | encoder")) -> None:
    """Build the cached Hugging Face folders of the embedded models (once; later calls are no-ops)."""
    from llmie.models import prepare_encoder, prepare_llm

    if which not in ("all", "llm", "encoder"):
        fail("--which must be all, llm or encoder")
    try:
        if which in ("all", "encoder"):
            typer.echo(f"encoder: {prepare_encoder(force=force)}")
        if which in ("all", "llm"):
            typer.echo(f"llm: {prepare_llm(force=force)}")
    except (FileNotFoundError, RuntimeError) as e:
        fail(str(e))
