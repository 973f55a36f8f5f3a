"""LLM projector (`--method llm`), its SFT/DPO data, and SFT -> DPO with real trl trainers on the embedded model.

- The constrained projector (hf backend, token-trie decoding) can only answer contiguous word n-grams of
  the target: checked on real model outputs, including a target whose right answer is not in the
  candidate set, a Chinese target, and repeated words.
- The DPO pair builder never makes chosen == rejected, even when a proposer alternative, a boundary variant
  or an SFT prediction equals the chosen answer.
- SFT (trl SFTTrainer) then DPO (trl DPOTrainer, reference = frozen copy of the SFT adapter), 2 steps each
  on CPU; both LoRA adapters are saved and reloaded by the projector.
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from llmie.backends.constraints import TokenTrie as _Trie
from llmie.projection.llm import answer_text, candidates, parse_answer
from llmie.projection.llm_data import boundary_variants, build_dpo_pairs, build_sft_rows, check_pairs
from llmie.projection.words import segment
from llmie.schema import Document, LlmieDataError, ProjectionPair, Span

REPO = Path(__file__).resolve().parents[1]
HAVE_TRAIN = all(importlib.util.find_spec(m) for m in ("trl", "peft"))


def _pair(pid: str, src: str, src_spans: list[str], tgt: str, tgt_spans: list[str] | None, lang: str = "por",
          label: str = "LOC") -> dict:
    def spans(text, items):
        return [{"start": text.index(t), "end": text.index(t) + len(t), "label": label, "text": t} for t in items]

    return {"id": pid, "dataset": "synthetic", "src_lang": "eng", "tgt_lang": lang, "src_text": src,
            "tgt_text": tgt, "src_spans": spans(src, src_spans),
            "tgt_spans": spans(tgt, tgt_spans) if tgt_spans is not None else None}


def _sp(text: str, sub: str, label: str = "LOC") -> Span:
    i = text.index(sub)
    return Span(start=i, end=i + len(sub), label=label, text=sub)


def _pp(pid: str, src: str, subs: list[str], tgt: str, lang: str) -> ProjectionPair:
    return ProjectionPair(id=pid, src=Document(id=pid, text=src, lang="en", spans=[_sp(src, x) for x in subs]),
                          tgt_text=tgt, tgt_lang=lang)


def _synth_dir(root: Path) -> Path:
    """A tiny `llmie synth` folder: verified train points, a rejected proposal, an unverified row."""
    d = root / "synth"
    d.mkdir()
    train = [
        _pair("a>por", "Maria lives in New York City.", ["New York City"], "Maria mora em Nova Iorque.",
              ["Nova Iorque"]),
        _pair("b>por", "The Red Cross office in Lisbon opened.", ["Red Cross", "Lisbon"],
              "O escritório da Cruz Vermelha em Lisboa abriu.", ["Cruz Vermelha", "Lisboa"]),
        _pair("c>por", "I flew to Madrid yesterday.", ["Madrid"], "Voei para Madrid ontem.", ["Madrid"]),
        _pair("d>por", "Pedro works at Siemens in Berlin.", ["Siemens"], "Pedro trabalha na Siemens em Berlim.",
              ["Siemens"], label="ORG"),
    ]
    for r in train:
        r["meta"] = {"split": "train", "verified": True}
    unverified = _pair("e>por", "Paris is big.", ["Paris"], "Paris é grande.", ["Paris"])
    unverified["meta"] = {"split": "train", "verified": False}
    (d / "train.por.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in train + [unverified])
                                       + "\n", encoding="utf-8")
    rej = [_pair("a>por", "Maria lives in New York City.", ["New York City"], "Maria mora em Nova Iorque.",
                 ["Iorque"]),                                            # a real alternative
           _pair("c>por", "I flew to Madrid yesterday.", ["Madrid"], "Voei para Madrid ontem.", ["Madrid"]),  # == chosen
           _pair("x>por", "Nothing verified here.", ["Nothing"], "Nada verificado aqui.", None)]  # failed proposal
    for r in rej:
        r["meta"] = {"split": "train", "status": "rejected", "reason": "verifier: differs"}
    (d / "rejected.por.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rej) + "\n",
                                          encoding="utf-8")
    return d


# ----------------------------------------------------------------------------- no model


def test_candidates_are_word_ngrams_and_trie_only_allows_them():
    tgt = "O escritório da Cruz Vermelha, em Lisboa, abriu."
    words = segment(tgt)
    cands = candidates(tgt, words, n_src_words=2)
    assert "Cruz Vermelha" in cands and "Lisboa" in cands
    for text, occ in cands.items():
        assert text in tgt and text == text.strip()
        for a, b in occ:
            assert tgt[words[a].start:words[b].end] == text
            assert not words[a].punct and not words[b].punct  # no edge punctuation unless the source has it
        assert len(segment(text)) <= 2 * 2 + 3
    trie = _Trie([[1, 2, 9], [1, 3, 9], [4, 9]])
    assert sorted(trie.allowed([])) == [1, 4] and sorted(trie.allowed([1])) == [2, 3]
    assert trie.allowed([1, 5]) is None and trie.allowed([1, 2, 9]) is None
    assert parse_answer(answer_text('Rua "A", 5')) == 'Rua "A", 5'
    assert parse_answer("not json") is None and parse_answer('{"span": 3}') is None


def test_dpo_pairs_never_chosen_equals_rejected(tmp_path):
    d = _synth_dir(tmp_path)
    preds = tmp_path / "sft_pred.jsonl"
    docs = [  # SFT predictions: one wrong (a), one equal to chosen (c), one failed (d)
        Document(id="a>por", text="Maria mora em Nova Iorque.", spans=[Span(start=6, end=10, label="LOC", text="mora")],
                 meta={"status": "ok"}),
        Document(id="c>por", text="Voei para Madrid ontem.", spans=[Span(start=10, end=16, label="LOC", text="Madrid")],
                 meta={"status": "ok"}),
        Document(id="d>por", text="Pedro trabalha na Siemens em Berlim.", meta={"status": "failed"}),
    ]
    preds.write_text("\n".join(x.model_dump_json() for x in docs) + "\n", encoding="utf-8")
    rows = build_dpo_pairs([str(d)], boundary=4, sft_predictions=str(preds))
    check_pairs(rows)
    assert rows and all(r["chosen"] != r["rejected"] for r in rows)
    assert len({(r["id"], r["rejected"][0]["content"]) for r in rows}) == len(rows)  # no duplicate pairs
    by_kind = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(r)
    assert [json.loads(r["rejected"][0]["content"])["span"] for r in by_kind["proposer"]] == ["Iorque"]
    assert [json.loads(r["rejected"][0]["content"])["span"] for r in by_kind["sft"]] == ["mora"]
    assert not any(r["id"].startswith(("e>", "x>")) for r in rows)  # unverified / failed rows give no points
    b = [r for r in by_kind["boundary"] if r["id"] == "b>por#0"]
    assert {json.loads(r["rejected"][0]["content"])["span"] for r in b} == {"da Cruz Vermelha", "Cruz Vermelha em",
                                                                          "Vermelha", "Cruz"}
    with pytest.raises(LlmieDataError, match="chosen equals rejected"):
        check_pairs([{**rows[0], "rejected": rows[0]["chosen"]}])
    sft = build_sft_rows([str(d)])
    assert len(sft) == 5 and all(r["completion"][0]["content"].startswith('{"span": ') for r in sft)
    assert "<span>Red Cross</span>" in next(r for r in sft if r["id"] == "b>por#0")["prompt"][1]["content"]


def test_boundary_variants_skip_punctuation():
    p = ProjectionPair(id="1", src=Document(id="1", text="in Lisbon.", spans=[_sp("in Lisbon.", "Lisbon")]),
                       tgt_text="em Lisboa.", gold_tgt_spans=[_sp("em Lisboa.", "Lisboa")])
    assert boundary_variants(p, 0) == ["em Lisboa"]  # "Lisboa." (punctuation only) is not a negative


# ----------------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def projector():
    from llmie.projection.llm import LLMProjector

    return LLMProjector("embedded", batch_size=8)


def test_constrained_projector_only_returns_target_substrings(projector):
    from llmie.projection.project import project

    pairs = [
        _pp("p1", "The Red Cross office in Lisbon opened.", ["Red Cross", "Lisbon"],
            "O escritório da Cruz Vermelha em Lisboa abriu.", "pt"),
        # the "right" answer (Paris) is not in the target: the model must still pick a target n-gram
        _pp("p2", "She moved to Paris.", ["Paris"], "Ela gosta de café e de chá.", "pt"),
        _pp("p3", "I live in Beijing.", ["Beijing"], "我住在北京。", "zh"),
        _pp("p4", "Sacramento Heatwave plays in Sacramento.", ["in Sacramento"],
            "Sacramento Heatwave spielt in Sacramento.", "de"),
    ]
    docs = list(project(pairs, "llm", "embedded", backend="hf", batch_size=8))
    assert [d.meta["status"] for d in docs] == ["ok"] * 4
    for p, d in zip(pairs, docs):
        words = segment(p.tgt_text)
        starts, ends = {w.start for w in words}, {w.end for w in words}
        assert len(d.spans) == len(p.src.spans)
        for s in d.spans:
            assert s.text and s.text in p.tgt_text and p.tgt_text[s.start:s.end] == s.text
            assert s.start in starts and s.end in ends  # whole words only
    assert projector.stats["outside"] == 0


# ----------------------------------------------------------------------------- SFT -> DPO (real trl)


@pytest.mark.skipif(not HAVE_TRAIN, reason="trl/peft not installed")
def test_sft_then_dpo_on_cpu_adapters_saved_and_reloaded(tmp_path):
    import torch
    from safetensors.torch import load_file

    from llmie.projection.llm import LLMProjector
    from llmie.projection.llm_data import write_rows
    from llmie.train.dpo import load_dpo_recipe, train_dpo
    from llmie.train.sft import load_sft_recipe, train_sft

    d = _synth_dir(tmp_path)
    write_rows(build_sft_rows([str(d)]), tmp_path / "sft.jsonl")
    write_rows(build_dpo_pairs([str(d)]), tmp_path / "dpo.jsonl")
    sft_dir, dpo_dir = tmp_path / "sft", tmp_path / "dpo"
    cfg = load_sft_recipe(REPO / "recipes/pvp_sft.yaml", [
        "max_steps=2", "per_device_train_batch_size=2", "lora_r=4", "lora_alpha=8", "logging_steps=1",
        f"output_dir={sft_dir}", f"data.train_file={tmp_path / 'sft.jsonl'}"])
    train_sft(cfg)
    info = json.loads((sft_dir / "llmie_sft.json").read_text())
    assert info["global_steps"] == 2 and info["completion_only_loss"] and (sft_dir / "adapter_config.json").exists()

    dcfg = load_dpo_recipe(REPO / "recipes/pvp_dpo.yaml", [
        "max_steps=2", "per_device_train_batch_size=2", "logging_steps=1", "learning_rate=1.0e-3",
        f"sft_adapter={sft_dir}", f"output_dir={dpo_dir}", f"data.train_file={tmp_path / 'dpo.jsonl'}",
        "data.limit=4"])
    train_dpo(dcfg)
    dinfo = json.loads((dpo_dir / "llmie_dpo.json").read_text())
    assert dinfo["global_steps"] == 2 and dinfo["rows"] == 4 and dinfo["reference"].startswith("sft adapter")
    assert all(math.isfinite(x) for x in dinfo["logged_losses"]) and dinfo["logged_losses"]
    assert abs(dinfo["logged_losses"][0] - math.log(2)) < 1e-3  # step 1: policy == reference (the SFT adapter)
    assert not (dpo_dir / "ref").exists()  # only the trained adapter is saved
    a, b = load_file(str(sft_dir / "adapter_model.safetensors")), load_file(str(dpo_dir / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a if "lora_B" in k)

    for adapter in (sft_dir, dpo_dir):  # both adapters load in the projector and answer from the candidates
        pr = LLMProjector("embedded", adapter=str(adapter))
        from llmie.projection.project import prepare

        pairs = [_pp("t", "We met in Porto.", ["Porto"], "Encontrámo-nos no Porto.", "pt")]
        [proj] = pr.project_batch([prepare(p) for p in pairs])
        assert proj.ok and pr.stats["outside"] == 0
    with pytest.raises(FileNotFoundError, match="adapter_config"):
        LLMProjector("embedded", adapter=str(tmp_path))
