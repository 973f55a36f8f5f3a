"""One config shape (llmie.train.config): defaults < YAML < key=value < --key value, values typed from the
dataclass, one-line errors with a suggestion, trl fields passed through; every shipped recipe loads.

All fast (no model) except the one real `llmie sft` smoke run at the end.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from llmie.train.config import as_dict, load_config, parse_args

REPO = Path(__file__).resolve().parents[1]
HAVE_TRL = all(importlib.util.find_spec(m) for m in ("trl", "peft"))


@dataclass
class Toy:
    lr: float = 0.1
    steps: int = 10
    flag: bool = False
    limit: int | None = 5
    name: str = "a"
    max_len: int = 8
    tags: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def _yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_precedence_defaults_yaml_keyvalue_flags(tmp_path):
    assert load_config(Toy, None) == Toy()
    y = _yaml(tmp_path, "lr: 1e-3\nsteps: 20\nname: b\ndata: {n: 1, m: 2}\n")
    cfg = load_config(Toy, y)
    assert cfg.lr == 1e-3 and isinstance(cfg.lr, float)  # YAML 1.1 would read '1e-3' as a string
    assert (cfg.steps, cfg.name, cfg.limit) == (20, "b", 5)
    cfg = load_config(Toy, y, ["steps=30", "name=c", "data.n=5"])
    assert (cfg.steps, cfg.name, cfg.data) == (30, "c", {"n": 5, "m": 2})
    # --key value beats key=value whatever the order
    cfg = load_config(Toy, y, ["--steps", "40", "steps=30", "--name=d", "--data.m", "7"])
    assert (cfg.steps, cfg.name, cfg.data) == (40, "d", {"n": 1, "m": 7})


def test_values_typed_from_the_dataclass():
    got = parse_args(Toy, ["--lr", "1e-4", "--flag", "--limit", "none", "--steps=3", "--name", "1e-4",
                           "--tags", "x"])
    assert got == {"lr": 1e-4, "flag": True, "limit": None, "steps": 3, "name": "1e-4", "tags": ["x"]}
    assert isinstance(got["lr"], float)
    assert parse_args(Toy, ["--no-flag"]) == {"flag": False}
    assert parse_args(Toy, ["--flag", "false", "--limit", "7"]) == {"flag": False, "limit": 7}
    assert parse_args(Toy, ["--tags", "[a, b]", "lr=2E-5"]) == {"tags": ["a", "b"], "lr": 2e-5}
    assert parse_args(Toy, ["--max-len", "9", "max_len=8"]) == {"max_len": 9}  # dashes read as underscores


@pytest.mark.parametrize("args, msg", [
    (["--lrr", "1"], r"unknown recipe keys: lrr \(did you mean lr\?\)"),
    (["stepz=1"], r"did you mean steps"),
    (["--steps", "abc"], r"--steps: expected int, got 'abc'"),
    (["--lr", "fast"], r"--lr: expected float"),
    (["--flag", "maybe"], r"--flag: expected bool"),
    (["--steps"], r"--steps: expected a value"),
    (["lonely"], r"expected key=value or --key value"),
])
def test_errors_are_one_clear_line(args, msg):
    with pytest.raises(ValueError, match=msg) as e:
        load_config(Toy, None, args)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(not HAVE_TRL, reason="trl/peft not installed")
def test_trl_fields_pass_through_and_only_set_keys_reach_the_trainer():
    from llmie.train.dpo import DPORecipe, dpo_args
    from llmie.train.sft import SFTRecipe, sft_args

    cfg = load_config(SFTRecipe, None, ["--learning_rate", "1e-4", "max_steps=3", "--lora_r", "4",
                                        "--gradient_checkpointing"])
    assert cfg.trainer == {"learning_rate": 1e-4, "max_steps": 3, "gradient_checkpointing": True}
    assert cfg.lora_r == 4 and "lora_r" not in cfg.trainer
    kw = sft_args(cfg)
    assert set(kw) - {"output_dir", "report_to", "use_cpu", "bf16"} == set(cfg.trainer)
    assert as_dict(cfg)["max_steps"] == 3  # the flat view the trainers index
    d = load_config(DPORecipe, REPO / "recipes/pvp_dpo.yaml", ["--beta", "0.3", "--sft_adapter", "none"])
    assert d.trainer["beta"] == 0.3 and d.sft_adapter is None and "beta" in dpo_args(d)
    with pytest.raises(ValueError, match="did you mean beta"):
        load_config(DPORecipe, None, ["--bta", "1"])
    with pytest.raises(ValueError, match="max_steps"):
        load_config(SFTRecipe, None, ["--max_step", "1"])


def _recipe_classes() -> dict[str, str]:
    """Recipe name prefix -> its config dataclass ("module:Class"); a new recipe needs a line here."""
    return {"transfusion": "llmie.train.sft:SFTRecipe", "massie_sft": "llmie.train.sft:SFTRecipe", "pvp_sft": "llmie.train.sft:SFTRecipe",
            "pvp_dpo": "llmie.train.dpo:DPORecipe", "pvp_encoder": "llmie.projection.train_pvp:PVPTrainConfig",
            "binary_aligner": "llmie.projection.train_binary:AlignerTrainConfig",
            "topro_": "llmie.topro.train:ToproTrainConfig"}


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads_into_its_dataclass(path):
    import importlib

    target = next((t for pre, t in _recipe_classes().items() if path.name.startswith(pre)), None)
    assert target, f"{path.name}: no config class in _recipe_classes()"
    mod, _, name = target.partition(":")
    if mod.startswith("llmie.train.") and not HAVE_TRL:
        pytest.skip("trl/peft not installed")
    cls = getattr(importlib.import_module(mod), name)
    cfg = load_config(cls, path)
    assert isinstance(cfg, cls)
    for k, v in as_dict(cfg).items():  # YAML floats such as 5.0e-4 / 1e-4 arrive as numbers
        if k in ("lr", "head_lr", "learning_rate") and v is not None:
            assert isinstance(v, float), (k, v)


def test_topro_train_cli_reads_recipe_and_flags(monkeypatch, tmp_path):
    """`llmie topro train [RECIPE] --key value`: the old typer flags (dashes) still map onto the fields."""
    from typer.testing import CliRunner

    import llmie.topro.train as tt
    from llmie.cli import app

    seen = []

    def fake_train(cfg):
        seen.append(cfg)
        return tt.Trained(method=cfg.method, model=None, tokenizer=None, template=None, labels=[],
                          log={k: 0 for k in ("sentences", "examples", "steps", "seconds", "loss_first10",
                                              "loss_last10")})

    monkeypatch.setattr(tt, "train", fake_train)
    r = CliRunner()
    res = r.invoke(app, ["topro", "train", "--task", "ner", "--method", "vanilla", "--n-train", "0", "--max-steps",
                         "2", "--lr", "2e-4", "--head-lr", "0", "--mark", "--out", str(tmp_path / "v")])
    assert res.exit_code == 0, res.output
    c = seen[-1]
    assert (c.task, c.method, c.n_train, c.max_steps, c.lr, c.head_lr, c.mark) == ("ner", "vanilla", None, 2, 2e-4,
                                                                                  None, True)
    res = r.invoke(app, ["topro", "train", str(REPO / "recipes/topro_pos.yaml"), "--max_steps", "1",
                         f"out={tmp_path / 'p'}"])
    assert res.exit_code == 0, res.output
    c = seen[-1]
    assert (c.task, c.max_steps, c.lr, c.out) == ("pos", 1, 1e-4, str(tmp_path / "p"))
    assert tt.ToproTrainConfig().lr == 1e-4  # one default: the dataclass's (README / bench numbers)
    res = r.invoke(app, ["topro", "train", "--n-trian", "3", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "did you mean n_train" in res.output


@pytest.mark.parametrize("argv, msg", [
    (["train-projector", "recipes/pvp_encoder.yaml", "--lrr", "1"], "did you mean lr"),
    (["train-aligner", "recipes/binary_aligner.yaml", "--max_steps", "abc"], "expected int"),
    (["train-projector", "no/such.yaml"], "no such file"),
])
def test_trainer_cli_errors_exit_2(argv, msg, monkeypatch):
    from typer.testing import CliRunner

    from llmie.cli import app

    monkeypatch.chdir(REPO)
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2 and msg in res.output and "Traceback" not in res.output


@pytest.mark.slow
@pytest.mark.skipif(not (HAVE_TRL and importlib.util.find_spec("bitsandbytes")), reason="trl/peft/bitsandbytes")
def test_llmie_sft_transfusion_recipe_one_step(tmp_path):
    """The issue's acceptance line: `llmie sft recipes/transfusion.yaml --max_steps 1 --output_dir X` runs
    (the recipe's own data builder, 195 rows; ~40 s on one core with the MT cache warm)."""
    import os
    import subprocess
    import sys

    from llmie.models import ModelSourceMissing, resolve_llm

    try:
        resolve_llm("embedded")
    except ModelSourceMissing as e:
        pytest.skip(str(e))
    out = tmp_path / "adapter"
    cmd = [sys.executable, "-m", "llmie.cli", "sft", str(REPO / "recipes/transfusion.yaml"), "--max_steps", "1",
           "--output_dir", str(out), "--data.cache", str(tmp_path / "tf_pairs.jsonl")]  # the cache: not in runs/
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((out / "llmie_sft.json").read_text())
    assert info["global_steps"] == 1 and (out / "adapter_model.safetensors").exists()
    assert json.loads(res.stdout.strip().splitlines()[-1])["global_steps"] == 1



def test_bf16_auto_follows_native_bf16_support(monkeypatch):
    """`bf16: auto` autocasts only where bf16 is native: a CPU without AVX512-BF16/AMX runs torch's reference gemm
    in bf16 (a SmolLM2 step did not finish in 11 minutes on an AMD EPYC; 103 s in fp32), so it must train in fp32."""
    import torch

    import llmie.device as device
    from llmie.train.sft import SFTRecipe, sft_args

    cfg = load_config(SFTRecipe, REPO / "recipes/massie_sft.yaml", [])
    assert cfg.trainer["bf16"] == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for native, want in ((torch.bfloat16, True), (torch.float32, False)):
        monkeypatch.setattr(device, "fast_dtype", lambda dev=None, _d=native: _d)
        assert sft_args(cfg)["bf16"] is want
    assert sft_args(load_config(SFTRecipe, REPO / "recipes/massie_sft.yaml", ["--bf16", "true"]))["bf16"] is True
