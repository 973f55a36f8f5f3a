"""What every command module shares: the typer app, the one-line error exit, shared options."""
from __future__ import annotations

import sys

import typer

from llmie import __version__

app = typer.Typer(help="llmie: multilingual information extraction with LLMs.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)


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


def fail(msg: str) -> None:
    """One red line on stderr and exit code 2: bad input or settings, never a traceback."""
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def split_list(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


BEST_RUN_HELP = ("binary/pvp: when a span's aligned words split into runs (a repeated name), keep the best "
                 "run (llmie's default) or fail the sample (--strict-runs, the paper's rule).")

ELISION_HELP = ("Take an elided article glued to a span's first word into the span (l'atmosphère): "
                "a dataset convention (ABSA-EXP fr: yes; RELX/Europarl: no).")

# engine options, shared by project, extract and synth (llmie/scale/)
ENGINE_OPT = typer.Option("local", "--engine", help="local | ray (extra: scale): a Ray Data actor pool, one model "
                                                    "load per actor, resumable shards in OUT.shards/")
ADDRESS_OPT = typer.Option(None, "--address", help="ray: auto | ray://head:10001 | head:6379; none = start a "
                                                   "local cluster")
WORKERS_OPT = typer.Option(2, "--workers", help="ray: actors (one model load each, 1 CPU each).")
GPUS_OPT = typer.Option(0.0, "--gpus-per-worker", help="ray: GPUs per actor (0.25: four share a GPU; 1 for vLLM).")
DEVICE_OPT = typer.Option("auto", "--device", help="Encoders (awesome/binary/pvp): auto (CUDA when present) | "
                                                        "cpu | cuda | cuda:N.")
