"""The IE adapter of the embedded LLM: how `--model embedded` picks it, how a trained adapter becomes the small shipped
folder, and (real, slow) the shipped adapter extracting through both in-process engines, vLLM LoRA and hf peft."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmie.massie.extract import default_adapter
from llmie.models import IE_ADAPTER, adapter_prompt, ie_adapter
from llmie.train.config import load_config, parse_value

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LLMIE_DATA_DIR", REPO.parent / "shared" / "data"))
UNER_TEST = DATA / "ner" / "uner_en_ewt" / "en_ewt-ud-test.iob2"
MIN_F1 = 0.10  # measured 0.22 here (8 sentences); on UNER test 300: adapter 21.6 exact F1, raw model 12.3 (README)


def test_recipe_yaml_reads_yaml12_booleans():
    """`save_strategy: no` is trl's string choice, not YAML 1.1's False; true/false stay booleans."""
    from llmie.train.sft import SFTRecipe

    assert parse_value("no") == "no" and parse_value("off") == "off" and parse_value("yes") == "yes"
    assert parse_value("true") is True and parse_value("False") is False and parse_value("1e-3") == 0.001
    cfg = load_config(SFTRecipe, REPO / "recipes/massie_sft.yaml", ["--save_strategy", "no", "--bf16", "false"])
    assert cfg.trainer["save_strategy"] == "no" and cfg.trainer["bf16"] is False
    assert cfg.data["demo_share"] == 0.0  # the shipped adapter's layout: asked without demos


def test_which_adapter_extraction_uses():
    shipped = (IE_ADAPTER / "adapter_config.json").is_file()
    assert shipped, f"{IE_ADAPTER}: the IE adapter must ship with the package"
    assert ie_adapter("embedded") == str(IE_ADAPTER) == default_adapter("embedded", "vllm")
    assert default_adapter("embedded", "hf") == str(IE_ADAPTER)
    for spec, backend in (("embedded-base", "vllm"), ("embedded", "openai"), ("openai:http://x/v1#m", "vllm"),
                          (str(REPO), "hf"), ("org/name", "vllm")):
        assert default_adapter(spec, backend) is None, (spec, backend)
    assert adapter_prompt(str(IE_ADAPTER))["demos"] is False  # trained on zero-shot rows
    assert adapter_prompt(None) == {} and adapter_prompt(str(REPO)) == {}


def test_slim_adapter_from_a_tiny_lora(tmp_path):
    """`llmie export --slim`: bf16 weights (half the bytes), portable base name, prompt settings from the recipe."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    from safetensors.torch import load_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmie.train.export import ExportError, slim_adapter

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    pm = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"))
    src = tmp_path / "sft"
    pm.save_pretrained(str(src))
    (src / "llmie_sft.json").write_text(json.dumps({"global_steps": 7, "rows": 9, "recipe": {
        "data": {"builder": "llmie.massie.sft_data:build_rows", "demo_share": 0.0}}}), encoding="utf-8")
    info = slim_adapter(src, tmp_path / "slim")
    out = Path(info["out"])
    w_src, w_out = load_file(str(src / "adapter_model.safetensors")), load_file(str(out / "adapter_model.safetensors"))
    assert set(w_src) == set(w_out) and all(v.dtype == torch.bfloat16 for v in w_out.values())
    assert all(torch.allclose(w_src[k].float(), w_out[k].float(), rtol=1e-2, atol=1e-3) for k in w_src)
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "embedded"
    assert adapter_prompt(str(out)) == {"demos": False, "template": None} and info["prompt"]["demos"] is False
    # the training run folder itself (no llmie_ie.json yet) is asked as it was trained, not with demos it never saw
    assert adapter_prompt(str(src)) == {"demos": False, "template": None}
    (src / "llmie_sft.json").write_text(json.dumps({"recipe": {"data": {"demo_share": 0.8}}}), encoding="utf-8")
    assert adapter_prompt(str(src))["demos"] is True
    (src / "llmie_sft.json").write_text(json.dumps({"recipe": {"data": {"builder": "x:y"}}}), encoding="utf-8")
    assert adapter_prompt(str(src)) == {}  # not extract-layout rows: nothing to say
    assert json.loads((out / "llmie_ie.json").read_text())["trained"]["global_steps"] == 7
    peft.PeftModel.from_pretrained(model, str(out))  # loads back as an adapter
    with pytest.raises(ExportError, match="adapter_config.json"):
        slim_adapter(tmp_path / "nothing", tmp_path / "x")


@pytest.mark.skipif(not UNER_TEST.exists(), reason=f"{UNER_TEST} not found (set LLMIE_DATA_DIR)")
def test_shipped_adapter_extracts_through_vllm_lora_and_hf():
    """The shipped adapter on 8 real UNER English test sentences with entities, through vLLM (a LoRA request, served
    merged on CPU) and hf (peft): every answer parses, it finds gold entities and copies nothing from elsewhere, and the two engines agree
    (same greedy answers, up to bf16 vs fp32 arithmetic)."""
    import itertools

    from llmie.backends import get_backend
    from llmie.bench.ner import load_schema
    from llmie.io import read_iob2
    from llmie.massie import extract

    docs = [d for d in itertools.islice(read_iob2(UNER_TEST, lang="eng"), 400) if d.spans][:8]
    gold = {(d.id, s.label, s.text) for d in docs for s in d.spans}
    spans = {}
    for name in ("vllm", "hf"):
        be = get_backend(name, "embedded", cache=False)
        try:
            preds = extract(docs, load_schema("uner"), backend=be, adapter=ie_adapter("embedded"))
        finally:
            be.close()
        assert [p.meta["parse_status"] for p in preds] == ["ok"] * len(docs), name
        got = {(p.id, s.label, s.text) for p in preds for s in p.spans}
        f1 = 2 * len(got & gold) / (len(got) + len(gold))
        assert f1 >= MIN_F1, (name, f1, sorted(got), sorted(gold))
        # the raw model copies demo entities (771 dropped on 300 UNER sentences); the zero-shot adapter does not
        assert sum(len(p.meta["dropped_unaligned"]) for p in preds) <= 2, name
        spans[name] = [sorted((s.label, s.text) for s in p.spans) for p in preds]
    same = sum(a == b for a, b in zip(spans["vllm"], spans["hf"]))
    assert same >= len(docs) - 2, spans


def test_masakhaner_bench_reads_a_folder_of_language_subfolders(tmp_path):
    """`--data DIR` may name a MasakhaNER-format folder itself (a resampled test set), with or without --langs."""
    from llmie.bench.ner import MASAKHANER, bench_files

    for lang in ("hau", "yor"):
        (tmp_path / lang).mkdir()
        (tmp_path / lang / "test.txt").write_text("Musa B-PER\nya I-PER\n\n", encoding="utf-8")
    files = dict(bench_files("masakhaner", tmp_path, None, "test"))
    assert list(files) == MASAKHANER and files["hau"] == tmp_path / "hau" / "test.txt"
    assert dict(bench_files("masakhaner", tmp_path, ["yor"], "test")) == {"yor": tmp_path / "yor" / "test.txt"}
    shared = tmp_path / "shared"  # a data root keeps its ner/masakhaner2 layout
    assert bench_files("masakhaner", shared, ["hau"], "test")[0][1] == shared / "ner/masakhaner2/hau/test.txt"


def test_mk_sample_pairs_two_runs_on_the_same_random_sentences(data_dir, tmp_path):
    """eval/mk_sample.py: the seeded sample re-keys a run on the sample folder to the original test index, so a
    full run and a sample run are compared sentence by sentence (gold as B: 100 on each language, A empty: 0)."""
    import importlib.util
    import json

    from llmie.datasets import masakhaner
    from llmie.io.conll import read_conll

    spec = importlib.util.spec_from_file_location("mk_sample", REPO / "eval" / "mk_sample.py")
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    mk.sample(30, 7, tmp_path / "s", data_dir)
    mk.sample(30, 8, tmp_path / "s8", data_dir)
    index = json.loads((tmp_path / "s" / "index.json").read_text())["index"]
    assert len(index) == 20 and all(len(v) == 30 and v == sorted(set(v)) for v in index.values())
    assert index != json.loads((tmp_path / "s8" / "index.json").read_text())["index"]  # the seed matters
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for lang in ("hau", "yor"):
        sampled = list(read_conll(tmp_path / "s" / lang / "test.txt", lang=lang))
        full = list(read_conll(masakhaner(lang, "test", data_dir), lang=lang))
        assert [d.text for d in sampled] == [full[k].text for k in index[lang]]
        (b / f"{lang}.jsonl").write_text("".join(json.dumps({"id": d.id, "text": d.text, "spans": [
            s.model_dump() for s in d.spans]}) + "\n" for d in sampled))  # B ran on the sample: gold answers
        (a / f"{lang}.jsonl").write_text("".join(json.dumps({"id": d.id, "text": d.text, "spans": []}) + "\n"
                                                 for d in full))  # A ran on the full set: no answers
    (tmp_path / "s" / "index.json").write_text(json.dumps({"index": {k: index[k] for k in ("hau", "yor")}}))
    r = mk.compare(tmp_path / "s", a, b, n_boot=20, data=data_dir)
    assert r["a_macro"] == 0 and r["b_macro"] == 100 and r["diff"] == 100 and r["ci95"] == [100, 100]
