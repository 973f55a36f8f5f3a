"""The `llmie` command line (DESIGN.md §5): thin command modules that parse options and call the library.

- corpus.py: project, extract, synth (one engine API, llmie.scale.run, over one reader, llmie.io.records)
- evaluate.py: eval (benches from llmie.bench.BENCHES)
- train.py: sft, dpo, train-projector, train-aligner, export (one config parser, llmie.train.config)
- optimize.py: optimize; tools.py: score, report, serve, models; topro.py / data.py: sub-apps

Importing this package is cheap (no torch): every command imports what it runs inside its body.
"""
from __future__ import annotations

import os

# Two cores shared with other work collapse torch 15-25x; one thread unless the user says otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from llmie.cli import corpus, data, evaluate, optimize, tools, topro, train  # noqa: E402,F401  (registers commands)
from llmie.cli.common import app  # noqa: E402

app.add_typer(tools.models_app, name="models")
app.add_typer(topro.app, name="topro")
app.add_typer(data.app, name="data")


def run() -> None:
    """The console script: a busy --out or an OS error of writing (disk full, read-only) ends with one
    `error:` line and exit code 2; manifest.json says `failed` with the reason; a rerun resumes."""
    from llmie.io.outdir import one_line_errors

    with one_line_errors():
        app()


__all__ = ["app", "run"]
