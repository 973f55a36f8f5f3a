"""`llmie sft`, `llmie dpo` and `llmie train-projector` unchanged under `accelerate launch --multi_gpu --num_processes 2` on a
CPU-only machine (torchrun, gloo; accelerate 1.15's `--cpu` runs one process unless mpirun is used): 2 real LoRA
steps of the embedded model; both ranks must end with the same trainable weights (each writes a hash) and rank 0
saves."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_sft import _rows

REPO = Path(__file__).resolve().parents[1]


def _launch_2(*args: str) -> list[str]:
    """`accelerate launch` of the installed `llmie` console script with 2 CPU processes (torchrun + gloo)."""
    return [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            str(Path(sys.executable).with_name("llmie")), *args]


def _run_2_ranks_agree(out: Path, *args: str) -> None:
    """Run `llmie ARGS` on 2 ranks; it must succeed and both ranks must end with the same trainable weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    res = subprocess.run(_launch_2(*args), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    h0, h1 = (out / "rank0.sha256").read_text(), (out / "rank1.sha256").read_text()
    assert h0 == h1 and len(h0) == 64 and all(c in "0123456789abcdef" for c in h0)


def _need(resolve) -> None:
    from llmie.models import ModelSourceMissing

    try:
        resolve("embedded")
    except ModelSourceMissing as e:
        pytest.skip(str(e))


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("trl", "peft", "accelerate")),
                    reason="the train extra is not installed")
def test_sft_two_ranks_agree(tmp_path):
    from llmie.models import resolve_llm

    _need(resolve_llm)
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    out = tmp_path / "adapter"
    _run_2_ranks_agree(out, "sft", str(REPO / "recipes/transfusion.yaml"), "load_in_4bit=false", "max_steps=2",
                       "per_device_train_batch_size=1", "lora_r=8", "max_length=256", "logging_steps=1",
                       f"output_dir={out}", f"data.train_file={tmp_path / 'rows.jsonl'}")
    info = json.loads((out / "llmie_sft.json").read_text())
    assert info["global_steps"] == 2 and (out / "adapter_model.safetensors").exists()


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("trl", "peft", "accelerate")),
                    reason="the train extra is not installed")
def test_dpo_two_ranks_agree(tmp_path):
    """`llmie dpo` (trl DPOTrainer, fresh LoRA, reference = adapters disabled) on 2 ranks: same weights, one save."""
    from llmie.models import resolve_llm
    from llmie.projection.llm_data import build_dpo_pairs, write_rows
    from tests.test_llm_projection import _synth_dir

    _need(resolve_llm)
    write_rows(build_dpo_pairs([str(_synth_dir(tmp_path))]), tmp_path / "dpo.jsonl")
    out = tmp_path / "dpo"
    _run_2_ranks_agree(out, "dpo", str(REPO / "recipes/pvp_dpo.yaml"), "max_steps=2",
                       "per_device_train_batch_size=1", "logging_steps=1", "lora_r=4", "sft_adapter=null",
                       f"output_dir={out}", f"data.train_file={tmp_path / 'dpo.jsonl'}", "data.limit=4")
    info = json.loads((out / "llmie_dpo.json").read_text())
    assert info["global_steps"] == 2 and info["rows"] == 4 and (out / "adapter_model.safetensors").exists()
    assert not (out / "ref").exists() and info["reference"].startswith("base model")


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("peft", "accelerate")),
                    reason="the train extra is not installed")
def test_train_projector_two_ranks_agree(tmp_path, data_dir):
    """PVP projector training on 2 ranks (16 real Europarl EXP pairs with gold target spans): same weights on
    both ranks, rank 0 saves an aligner that records the world size, and the adapter projects."""
    from llmie.io import read_exp
    from llmie.models import resolve_encoder
    from llmie.projection.project import project

    _need(resolve_encoder)
    src = data_dir / "exp/europarl/en-de.test.jsonl"
    lines = src.read_text(encoding="utf-8").splitlines()[:16]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "proj"
    _run_2_ranks_agree(out, "train-projector", str(REPO / "recipes/pvp_encoder.yaml"), "max_steps=2",
                       "batch_size=4", "eval_every=2", f"train={tmp_path / 'train.jsonl'}",
                       f"dev={tmp_path / 'train.jsonl'}", f"out={out}")
    training = json.loads((out / "aligner.json").read_text())["training"]
    assert training["steps"] == 2 and training["world_size"] == 2 and training["global_batch_size"] == 4
    assert len(training["first_losses"]) == 2 and (out / "adapter_model.safetensors").exists()
    # dev EM: each rank scored half of the 16 pairs, the hits were summed into one decision
    assert training["dev_pairs"] == 16 and [e["step"] for e in training["evals"]] == [0, 2]
    hits = training["best_dev_em"] * 16 / 100
    assert training["best_step"] in (0, 2) and abs(hits - round(hits)) < 1e-6 and 0 <= hits <= 16
    pairs = list(read_exp(src))[:3]
    docs = list(project(pairs, "pvp", adapter=str(out)))
    assert [d.id for d in docs] == [p.id for p in pairs]
    assert all(d.meta["status"] in ("ok", "failed") for d in docs)


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="the train extra is not installed")
def test_shipped_accelerate_configs_load():
    """Every recipes/accelerate/*.yaml parses with accelerate's own loader into the intended setup (the GPU
    ones cannot run here; this catches typos and wrong keys before a user's cluster does)."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType

    want = {"single_gpu": (DistributedType.NO, 1), "ddp": (DistributedType.MULTI_GPU, 8),
            "fsdp": (DistributedType.FSDP, 8), "deepspeed_zero3": (DistributedType.DEEPSPEED, 8),
            "cpu_2proc": (DistributedType.MULTI_GPU, 2)}
    got = {p.stem: load_config_from_file(str(p)) for p in sorted((REPO / "recipes/accelerate").glob("*.yaml"))}
    assert set(got) == set(want)
    for name, cfg in got.items():
        assert (cfg.distributed_type, cfg.num_processes) == want[name], name
    assert got["fsdp"].fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # rank 0 saves a whole adapter
    assert got["deepspeed_zero3"].deepspeed_config["zero_stage"] == 3
