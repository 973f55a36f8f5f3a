"""IE adapter data (llmie/massie/sft_data.py): rows in exactly the `llmie extract` layout, and a real 2-step SFT
on recipes/massie_sft.yaml with the embedded model."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_rows_are_the_extract_requests_with_gold_answers(data_dir, monkeypatch):
    from llmie.bench.ner import load_schema
    from llmie.io import read_iob2
    from llmie.massie.extract import build_requests
    from llmie.massie.sft_data import rows_for

    monkeypatch.setenv("LLMIE_DATA_DIR", str(data_dir))
    docs = [d for d in read_iob2(data_dir / "ner/uner_en_ewt/en_ewt-ud-dev.iob2", lang="eng") if d.spans][:3]
    schema = load_schema("uner")
    rows = rows_for(docs, schema, demo_share=1.0, source="eng")
    _, _, reqs = build_requests(docs, schema)
    assert [r["prompt"] for r in rows] == [q.messages for q in reqs]  # what extraction sends, turn for turn
    for r, d in zip(rows, docs):
        ans = json.loads(r["completion"][0]["content"])
        assert set(ans) == {lab.name for lab in schema.labels}
        assert sorted(t for v in ans.values() for t in v) == sorted({s.text for s in d.spans})
        assert r["completion"][0]["role"] == "assistant" and r["kind"] == "eng+demos"
    plain = rows_for(docs, schema, demo_share=0.0, source="eng")
    assert all(len(r["prompt"]) == 1 for r in plain)  # no demo turns


def test_build_rows_mixes_sources_and_caps_empty_rows(data_dir, monkeypatch):
    from llmie.massie.sft_data import build_rows

    monkeypatch.setenv("LLMIE_DATA_DIR", str(data_dir))
    rows = build_rows(True, ["hau"], n_english=40, n_per_lang=20, empty_share=0.25, demo_share=0.5)
    langs = [r["lang"] for r in rows]
    assert langs.count("eng") == 40 and langs.count("hau") == 20
    empty = [r for r in rows if r["lang"] == "eng" and not any(json.loads(r["completion"][0]["content"]).values())]
    assert len(empty) == 10
    assert {r["kind"].split("+")[0] for r in rows} == {"eng", "hau"}
    assert rows == build_rows(True, ["hau"], n_english=40, n_per_lang=20, empty_share=0.25, demo_share=0.5)


@pytest.mark.slow
@pytest.mark.skipif(not importlib.util.find_spec("trl"), reason="trl not installed")
def test_llmie_sft_massie_recipe_two_steps(tmp_path):
    """`llmie sft recipes/massie_sft.yaml --max_steps 2` trains the embedded model on the extract-layout rows."""
    import os
    import subprocess
    import sys

    from llmie.models import ModelSourceMissing, resolve_llm

    try:
        resolve_llm("embedded")
    except ModelSourceMissing as e:
        pytest.skip(str(e))
    out = tmp_path / "adapter"
    cmd = [sys.executable, "-m", "llmie.cli", "sft", str(REPO / "recipes/massie_sft.yaml"), "--max_steps", "2",
           "--per_device_train_batch_size", "2", "--output_dir", str(out), "data.n_english=8", "data.masakhaner=[hau]",
           "data.n_per_lang=4"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((out / "llmie_sft.json").read_text())
    assert info["global_steps"] == 2 and info["rows"] == 12 and info["completion_only_loss"]
    assert (out / "adapter_model.safetensors").exists()
    assert all(x > 0 for x in info["logged_losses"]) or info["train_loss"] > 0


@pytest.mark.slow
def test_translate_train_rows_are_projected_and_grounded(data_dir, monkeypatch, tmp_path):
    """Translate-train rows: English dev gold -> offline MT (Bergamot en->pt) -> pvp projection -> extract-layout rows
    in Portuguese whose answers are all strings of the translated sentence; the pairs are cached and reused."""
    from llmie.mt import get_translator
    from llmie.massie.sft_data import build_rows

    monkeypatch.setenv("LLMIE_DATA_DIR", str(data_dir))
    try:
        get_translator("bergamot").translate(["Hello."], "en", "por")
    except Exception as e:  # noqa: BLE001 - the optional engine is missing here
        pytest.skip(f"bergamot en->pt unavailable: {e}")
    cache = tmp_path / "pairs.jsonl"
    rows = build_rows(True, [], n_english=10, translate=["por"], n_translate=6, empty_share=0.2, demo_share=0.0,
                      cache=str(cache))
    por = [r for r in rows if r["lang"] == "por"]
    assert len([r for r in rows if r["lang"] == "eng"]) == 10 and 4 <= len(por) <= 6
    labelled = 0
    for r in por:
        text = r["prompt"][-1]["content"]
        ans = json.loads(r["completion"][0]["content"])
        assert set(ans) == {"PER", "ORG", "LOC"}
        for spans in ans.values():
            labelled += bool(spans)
            assert all(s in text for s in spans), (s, text)  # projected spans are substrings of the translation
    assert labelled >= 2
    # most labelled dev sentences are English rows at recipe scale; the translated ones still carry entities
    big = build_rows(True, [], n_english=1500, translate=["por"], n_translate=5, empty_share=0.2, demo_share=0.0,
                     translator="bergamot")
    assert sum(any(json.loads(r["completion"][0]["content"]).values()) for r in big if r["lang"] == "por") >= 3
    assert cache.exists() and build_rows(True, [], n_english=10, translate=["por"], n_translate=6, empty_share=0.2,
                                         demo_share=0.0, cache=str(cache)) == rows
    # the cache is keyed by (language, translator, projector, sentence): asking for another language extends it
    # (a cache made for Portuguese once gave no Spanish rows, silently)
    try:
        get_translator("apertium").translate(["Hello."], "en", "spa")
    except Exception:  # noqa: BLE001 - apertium eng-spa is optional
        return
    both = build_rows(True, [], n_english=10, translate=["por", "spa"], n_translate=6, empty_share=0.2, demo_share=0.0,
                      cache=str(cache))
    rowset = lambda rs: sorted(json.dumps(r, sort_keys=True) for r in rs)  # noqa: E731
    assert rowset(r for r in both if r["lang"] == "por") == rowset(por) and 4 <= sum(r["lang"] == "spa" for r in both) <= 6
    keys = {json.loads(x)["key"]["lang"] for x in cache.read_text(encoding="utf-8").splitlines()}
    assert keys == {"por", "spa"}


@pytest.mark.slow
@pytest.mark.skipif(not importlib.util.find_spec("trl"), reason="trl not installed")
def test_sft_init_adapter_goes_on_training_the_shipped_adapter(tmp_path):
    """`--init_adapter DIR` continues an adapter (a later stage of a long run): its first loss is the trained
    adapter's (lower than a fresh LoRA's on the same rows), and the result is still a LoRA adapter."""
    import os
    import subprocess
    import sys

    from llmie.models import IE_ADAPTER, ModelSourceMissing, resolve_llm

    try:
        resolve_llm("embedded")
    except ModelSourceMissing as e:
        pytest.skip(str(e))
    if not (IE_ADAPTER / "adapter_config.json").exists():
        pytest.skip("no shipped IE adapter")
    first = {}
    for name, extra in (("fresh", []), ("init", ["--init_adapter", str(IE_ADAPTER)])):
        out = tmp_path / name
        cmd = [sys.executable, "-m", "llmie.cli", "sft", str(REPO / "recipes/massie_sft.yaml"), "--max_steps", "1",
               "--per_device_train_batch_size", "2", "--logging_steps", "1", "--save_strategy", "no",
               "--output_dir", str(out), "data.n_english=2", "data.masakhaner=[]", *extra]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert res.returncode == 0, res.stderr[-3000:]
        info = json.loads((out / "llmie_sft.json").read_text())
        first[name] = info["logged_losses"][0]
        assert (out / "adapter_config.json").exists() and info["peft"]
    assert info["init_adapter"] == str(IE_ADAPTER)
    assert first["init"] < 0.7 * first["fresh"], first
