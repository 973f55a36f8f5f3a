"""`llmie data pvp-sft|pvp-dpo`: training data for the LLM projector from PVP synthetic folders.

Cheap at import (no torch): the builders are imported inside the commands.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from llmie.cli.common import fail

app = typer.Typer(help="Build training data sets (JSONL, loadable with `datasets`).", no_args_is_help=True)

DIRS_HELP = "A `llmie synth --out` folder (repeatable; an id verified in an earlier folder wins)."


def _dirs(data: list[Path]) -> list[str]:
    from llmie.projection.llm_data import DEFAULT_DIRS

    return [str(d) for d in data] or list(DEFAULT_DIRS)


@app.command("pvp-sft")
def pvp_sft(out: Path = typer.Option(..., "--out", help="Output JSONL (conversational prompt/completion rows)."),
            data: list[Path] = typer.Option([], "--data", help=DIRS_HELP + " Default: runs/pvp-data, "
                                                                "runs/pvp-data-binary."),
            langs: Optional[str] = typer.Option(None, "--langs", help="Target languages, e.g. por,spa (default: all)."),
            split: str = typer.Option("train", "--split", help="train | dev"),
            template: str = typer.Option("projection.v1", "--template", help="Projection prompt template."),
            limit: Optional[int] = typer.Option(None, "--limit"), seed: int = typer.Option(13, "--seed")) -> None:
    """SFT rows for `llmie sft`: one per span of each verified synthetic pair, in the `--method llm` prompt."""
    from llmie.projection.llm_data import build_sft_rows, write_rows
    from llmie.schema import LlmieDataError

    try:
        rows = build_sft_rows(_dirs(data), langs.split(",") if langs else None, split, template, limit, seed)
    except (FileNotFoundError, LlmieDataError, ValueError) as e:
        fail(str(e))
    typer.echo(json.dumps(write_rows(rows, out)))


@app.command("pvp-dpo")
def pvp_dpo(out: Path = typer.Option(..., "--out", help="Output JSONL (prompt/chosen/rejected rows)."),
            data: list[Path] = typer.Option([], "--data", help=DIRS_HELP),
            langs: Optional[str] = typer.Option(None, "--langs"),
            split: str = typer.Option("train", "--split"),
            template: str = typer.Option("projection.v1", "--template"),
            boundary: int = typer.Option(2, "--boundary", help="Boundary-perturbed negatives per point (0 = none)."),
            sft_predictions: Optional[Path] = typer.Option(None, "--sft-predictions", help="`llmie project --method "
                                                           "llm --adapter SFT` output on the train pairs: its wrong "
                                                           "answers become negatives."),
            limit: Optional[int] = typer.Option(None, "--limit"), seed: int = typer.Option(13, "--seed")) -> None:
    """DPO pairs for `llmie dpo`: chosen = verified projection; rejected = proposer/boundary/SFT negatives."""
    from llmie.projection.llm_data import build_dpo_pairs, check_pairs, write_rows
    from llmie.schema import LlmieDataError

    if sft_predictions is not None and not sft_predictions.exists():
        fail(f"{sft_predictions}: no such file")
    try:
        rows = build_dpo_pairs(_dirs(data), langs.split(",") if langs else None, split, template, boundary,
                               str(sft_predictions) if sft_predictions else None, limit, seed)
        check_pairs(rows)
    except (FileNotFoundError, LlmieDataError, ValueError) as e:
        fail(str(e))
    typer.echo(json.dumps(write_rows(rows, out)))
