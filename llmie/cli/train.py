"""Trainer commands: sft, dpo (trl + peft), train-projector (PVP), train-aligner (BinaryAlign), export."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from llmie.cli.common import app, fail


@app.command("train-aligner", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_aligner_cmd(ctx: typer.Context, recipe: Path = typer.Argument(..., help="e.g. recipes/binary_aligner.yaml")) -> None:
    """Train the BinaryAlign-style word aligner on gold alignments; extra args are key=value overrides."""
    import logging

    from llmie.projection.train_binary import load_recipe, train_binary_aligner

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        cfg = load_recipe(recipe, ctx.args)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    typer.echo(str(train_binary_aligner(cfg)))


@app.command("train-projector", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_projector_cmd(ctx: typer.Context,
                    recipe: Path = typer.Argument(..., help="e.g. recipes/pvp_encoder.yaml")) -> None:
    """Train the PVP span projector (WGL + pair augmentation); extra args are key=value overrides."""
    import logging

    from llmie.projection.train_pvp import load_recipe, train_projector

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        cfg = load_recipe(recipe, ctx.args)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    typer.echo(str(train_projector(cfg)))


@app.command("sft", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sft_cmd(ctx: typer.Context, recipe: Path = typer.Argument(..., help="e.g. recipes/transfusion.yaml")) -> None:
    """Supervised fine-tuning (trl SFTTrainer + LoRA, QLoRA with load_in_4bit); extra args: key=value overrides."""
    import logging

    from llmie.train.sft import load_sft_recipe, train_sft

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if not recipe.exists():
        fail(f"{recipe}: no such file")
    try:
        cfg = load_sft_recipe(recipe, ctx.args)
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    out = train_sft(cfg)
    info = json.loads((out / "llmie_sft.json").read_text())
    typer.echo(json.dumps({k: info[k] for k in ("global_steps", "train_loss", "logged_losses", "linear4bit_layers",
                                                "rows", "row_kinds", "seconds")} | {"out": str(out)}))


@app.command("dpo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def dpo_cmd(ctx: typer.Context, recipe: Path = typer.Argument(..., help="e.g. recipes/pvp_dpo.yaml")) -> None:
    """Preference training (trl DPOTrainer + LoRA, from an SFT adapter); extra args: key=value overrides."""
    import logging

    from llmie.schema import LlmieDataError
    from llmie.train.dpo import load_dpo_recipe, train_dpo

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if not recipe.exists():
        fail(f"{recipe}: no such file")
    try:
        out = train_dpo(load_dpo_recipe(recipe, ctx.args))
    except (ValueError, FileNotFoundError, LlmieDataError) as e:
        fail(str(e))
    info = json.loads((out / "llmie_dpo.json").read_text())
    typer.echo(json.dumps({k: info[k] for k in ("global_steps", "train_loss", "logged_losses", "reward_accuracies",
                                                "rows", "row_kinds", "reference", "seconds")} | {"out": str(out)}))


@app.command("export")
def export_cmd(adapter: Path = typer.Option(..., "--adapter", help="peft LoRA adapter folder (llmie sft output)."),
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
        fail(str(e))
    typer.echo(json.dumps(info))
