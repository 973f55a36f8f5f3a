"""Trainer commands: sft, dpo (trl + peft), train-projector (PVP), train-aligner (BinaryAlign), export.

Every trainer takes one recipe shape (llmie.train.config): `llmie CMD RECIPE.yaml [key=value | --key value ...]`,
the fields of its config dataclass, typed from it; a bad key or value is one error line and exit code 2.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer

from llmie.cli.common import app, fail

T = TypeVar("T")

# a trainer command hands every argument after RECIPE to the recipe parser (trl's `--key value` habit)
RECIPE_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}
RECIPE_HELP = "Recipe YAML; then overrides: key=value, --key value, --key=value, --flag / --no-flag."


def recipe_config(cls: type[T], recipe: Path | None, args: list[str]) -> T:
    """The recipe `cls` of a command (defaults < RECIPE < overrides); a bad recipe ends the command in one line."""
    import logging

    import yaml

    from llmie.train.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if recipe is not None and not recipe.is_file():
        fail(f"{recipe}: no such file")
    try:
        return load_config(cls, recipe, list(args))
    except (ValueError, TypeError, yaml.YAMLError) as e:
        msg = " ".join(str(e).split())          # a YAML error spans lines: one line here
        fail(f"{recipe or 'recipe'}: {msg}" if isinstance(e, yaml.YAMLError) else msg)
    raise AssertionError("unreachable")


def run_recipe(cls: type[T], train: Callable[[T], Any], recipe: Path | None, args: list[str],
               errors: tuple[type[BaseException], ...] = ()) -> Any:
    """Load the recipe, then train; bad input (a ValueError, a missing file, `errors`) is one line, exit 2."""
    cfg = recipe_config(cls, recipe, args)
    try:
        return train(cfg)
    except (ValueError, FileNotFoundError, *errors) as e:
        fail(str(e))


def _summary(out: Path, name: str, keys: tuple[str, ...]) -> str:
    info: dict[str, Any] = json.loads((out / name).read_text())
    return json.dumps({k: info[k] for k in keys} | {"out": str(out)})


@app.command("train-aligner", context_settings=RECIPE_ARGS)
def train_aligner_cmd(ctx: typer.Context, recipe: Path = typer.Argument(..., help="e.g. recipes/binary_aligner.yaml. "
                                                                           + RECIPE_HELP)) -> None:
    """Train the BinaryAlign-style word aligner on gold alignments (AlignerTrainConfig fields)."""
    from llmie.projection.train_binary import AlignerTrainConfig, train_binary_aligner

    typer.echo(str(run_recipe(AlignerTrainConfig, train_binary_aligner, recipe, ctx.args)))


@app.command("train-projector", context_settings=RECIPE_ARGS)
def train_projector_cmd(ctx: typer.Context, recipe: Path = typer.Argument(..., help="e.g. recipes/pvp_encoder.yaml. "
                                                                             + RECIPE_HELP)) -> None:
    """Train the PVP span projector, WGL + pair augmentation (PVPTrainConfig fields)."""
    from llmie.projection.train_pvp import PVPTrainConfig, train_projector

    typer.echo(str(run_recipe(PVPTrainConfig, train_projector, recipe, ctx.args)))


@app.command("sft", context_settings=RECIPE_ARGS)
def sft_cmd(ctx: typer.Context, recipe: Path = typer.Argument(..., help="e.g. recipes/transfusion.yaml. "
                                                               + RECIPE_HELP)) -> None:
    """Supervised fine-tuning: trl SFTTrainer + LoRA, QLoRA with load_in_4bit (SFTRecipe + trl SFTConfig fields)."""
    from llmie.train.sft import SFTRecipe, train_sft

    out = run_recipe(SFTRecipe, train_sft, recipe, ctx.args)
    typer.echo(_summary(out, "llmie_sft.json", ("global_steps", "train_loss", "logged_losses", "linear4bit_layers",
                                                "rows", "row_kinds", "seconds")))


@app.command("dpo", context_settings=RECIPE_ARGS)
def dpo_cmd(ctx: typer.Context, recipe: Path = typer.Argument(..., help="e.g. recipes/pvp_dpo.yaml. "
                                                               + RECIPE_HELP)) -> None:
    """Preference training: trl DPOTrainer + LoRA, from an SFT adapter (DPORecipe + trl DPOConfig fields)."""
    from llmie.schema import LlmieDataError
    from llmie.train.dpo import DPORecipe, train_dpo

    out = run_recipe(DPORecipe, train_dpo, recipe, ctx.args, (LlmieDataError,))
    typer.echo(_summary(out, "llmie_dpo.json", ("global_steps", "train_loss", "logged_losses", "reward_accuracies",
                                                "rows", "row_kinds", "reference", "seconds")))


@app.command("export")
def export_cmd(adapter: Path = typer.Option(..., "--adapter", help="peft LoRA adapter folder (llmie sft output)."),
           out: Path = typer.Option(..., "--out", help="Output folder."),
           merge: bool = typer.Option(False, "--merge/--keep-adapter", help="Merge into the full-precision base, "
                                                                            "or keep the adapter for vLLM LoRA."),
           base: Optional[str] = typer.Option(None, "--base", help="Base model (default: the adapter's base)."),
           load_in_4bit: bool = typer.Option(False, "--load-in-4bit", help="(refused with --merge)"),
           slim: bool = typer.Option(False, "--slim", help="Keep the adapter as a small folder to ship (bf16 "
                                                           "weights, portable base name, llmie_ie.json prompt "
                                                           "settings): how llmie/data/adapters/smollm2-ie is made.")
           ) -> None:
    """Merge a LoRA adapter into its base model, or keep it as an adapter for vLLM LoRA serving."""
    from llmie.train.export import ExportError, export_adapter, slim_adapter

    try:
        if slim:
            info = slim_adapter(adapter, out, base=base or "embedded")
        else:
            info = export_adapter(adapter, out, merge=merge, base=base, load_in_4bit=load_in_4bit)
    except ExportError as e:
        fail(str(e))
    typer.echo(json.dumps(info))
