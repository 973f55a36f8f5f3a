"""TOPRO: decomposition round-trip, verbalizer single-token check, restricted scoring, a real short
training run on the embedded encoder, save/load, native MLM heads, CLI smoke."""
from __future__ import annotations

import json

import pytest

from llmie.topro import VerbalizerError, decompose, load_template, recompose, resolve_verbalizer
from llmie.topro.decompose import Template, encoder_pair, llm_parts

SENTS = [["Works", "as", "stated", "!"], ["He", "went", "to", "Paris", "to", "see", "Anna", "Smith", "."]]
TAGS_NER = [["O"] * 4, ["O", "O", "O", "B-LOC", "O", "O", "B-PER", "I-PER", "O"]]


@pytest.fixture(scope="module")
def e5_tok():
    from transformers import AutoTokenizer

    from llmie.models.embedded import resolve_encoder

    return AutoTokenizer.from_pretrained(resolve_encoder("embedded"))


# --------------------------------------------------------------------------- decomposition


def test_decompose_roundtrip_and_mark():
    ps = decompose(SENTS)
    assert len(ps) == sum(len(s) for s in SENTS)  # one prompt per word
    assert [p.word for p in ps if p.sent == 1] == SENTS[1]
    assert all(p.sentence == " ".join(SENTS[p.sent]) for p in ps)  # whole sentence in every prompt
    gold = {(s, i): t for s, row in enumerate(TAGS_NER) for i, t in enumerate(row)}
    shuffled = list(reversed(ps))  # answers may arrive in any order
    assert recompose(shuffled, [gold[(p.sent, p.idx)] for p in shuffled], [len(s) for s in SENTS]) == TAGS_NER
    # repeated word "to": identical prompts without marking, different with the paper's suggested fix
    t = load_template("topro.pos.v1")
    plain = [encoder_pair(t, p, "<mask>") for p in ps if p.sent == 1 and p.word == "to"]
    assert plain[0] == plain[1]
    marked = [p for p in decompose(SENTS, mark=True) if p.sent == 1 and p.word == "to"]
    assert marked[0].sentence != marked[1].sentence and "[to]" in marked[0].sentence
    a, b = llm_parts(load_template("topro.ner.v1"), ps[0], ["location", "other"])
    assert a.startswith("Named entity type: location other\nSentence: Works as stated !") and b.endswith("is")
    with pytest.raises(ValueError, match="no answer"):
        recompose(ps[:-1], ["O"] * (len(ps) - 1), [len(s) for s in SENTS])
    with pytest.raises(ValueError, match="answered twice"):
        recompose(ps + ps[:1], ["O"] * (len(ps) + 1), [len(s) for s in SENTS])


# --------------------------------------------------------------------------- verbalizers


def test_verbalizer_single_token_check(e5_tok):
    pos = resolve_verbalizer(load_template("topro.pos.v1"), e5_tok)
    assert len(pos.labels) == 17 and len(set(pos.token_ids)) == 17
    assert all(len(e5_tok(" " + w, add_special_tokens=False)["input_ids"]) == 1 for w in pos.words)
    # XLM-R pieces: "auxiliary" = ▁auxiliar + y -> the documented substitution (the authors' code word)
    assert pos.words[pos.labels.index("AUX")] == "auxiliar" and "AUX" in pos.substitutions
    with pytest.raises(VerbalizerError, match=r"AUX.*auxiliary"):
        resolve_verbalizer(load_template("topro.pos.v1"), e5_tok, strict=True)
    ner = resolve_verbalizer(load_template("topro.ner.v1"), e5_tok, strict=True)
    assert ner.words == ["location", "organization", "person", "place", "body", "name", "other"]
    bad = Template("t.bad", "ner", {"O": ["other"], "B-PER": ["personhood"]}, {}, {})
    with pytest.raises(VerbalizerError, match="B-PER"):
        resolve_verbalizer(bad, e5_tok)
    clash = Template("t.clash", "ner", {"O": ["other"], "B-PER": ["other"]}, {}, {})
    with pytest.raises(VerbalizerError, match="bijective"):
        resolve_verbalizer(clash, e5_tok)


# --------------------------------------------------------------------------- LLM restricted scoring


@pytest.mark.slow
def test_llm_scoring_restricted_and_prefix_reuse():
    from llmie.backends.hf import HFBackend
    from llmie.models.embedded import resolve_llm
    from llmie.topro.llm import NONE, LLMTopro

    be = HFBackend(resolve_llm("embedded"))
    lt = LLMTopro(load_template("topro.ner.v1"), be)
    tags, cost, lp = lt.score(SENTS, reuse_prefix=True)
    assert lp.shape == (13, 7) and all(t in lt.labels for row in tags for t in row)
    assert [len(r) for r in tags] == [4, 9]
    # the label word with the highest full-vocabulary probability is the one picked
    full = be.score_next_token([a + b for a, b in lt.prompts(SENTS[:1])[1]], lt.verb.token_ids)
    assert [lt.labels[i] for i in full.argmax(-1)] == tags[0]
    tags2, cost2, lp2 = lt.score(SENTS, reuse_prefix=False)
    assert tags2 == tags and float((lp - lp2).abs().max()) < 1e-3
    assert cost.tokens < cost2.tokens and cost.extra["shared_prefix_tokens"] > 0
    assert lt.match("It is a location, or a person.") == "B-PER"  # last label in verbalizer order wins
    assert lt.match("I do not know") == NONE
    gtags, gcost = lt.generate(SENTS[:1], max_new_tokens=4)
    assert all(t in lt.labels or t == NONE for t in gtags[0]) and gcost.prompts == 4
    be.close()


# --------------------------------------------------------------------------- encoder


@pytest.mark.slow
def test_encoder_topro_training_lowers_loss(data_dir):
    from llmie.topro.train import ToproTrainConfig, default_file, evaluate, train

    t = train(ToproTrainConfig(task="pos", method="topro", n_train=3, epochs=50, max_steps=10, batch_size=8, lr=2e-4,
                               log_every=0), data_dir)
    assert len(t.losses) >= 10
    first, last = sum(t.losses[:3]) / 3, sum(t.losses[-3:]) / 3
    assert last < first, t.losses
    assert t.model.head_kind == "tied-built"
    # the built head is tied: its decoder is the input embedding matrix itself
    assert t.model.head.embeddings.weight.data_ptr() == t.model.encoder.get_input_embeddings().weight.data_ptr()
    assert t.verbalizer.substitutions["AUX"]["used"] == "auxiliar"
    en = evaluate(t, {"en": default_file("pos", "test", data_dir)}, limit=2)["langs"]["en"]
    assert en["cost"]["prompts"] == en["cost"]["words"] and 0 <= en["token_weighted_f1"] <= 100


def test_class_weights_rules():
    from llmie.topro.train import class_weights

    counts = {"B-PER": 10, "I-PER": 0, "O": 90}
    assert class_weights(counts, "none") == [1.0, 1.0, 1.0]
    bal = class_weights(counts, "balanced")  # n/(k*c): 100/20=5, 100/180=0.556; mean over seen labels = 1
    assert bal[0] == pytest.approx(5 / ((5 + 100 / 180) / 2)) and bal[2] == pytest.approx((100 / 180) / ((5 + 100 / 180) / 2))
    assert bal[1] == max(bal)  # a label never seen in training gets the largest weight, not a division by zero
    sq = class_weights(counts, "sqrt")
    assert sq[0] / sq[2] == pytest.approx((bal[0] / bal[2]) ** 0.5)  # milder than balanced
    with pytest.raises(ValueError, match="class_weight"):
        class_weights(counts, "inverse")


@pytest.mark.slow
def test_ner_o_subsampling_and_weights_recorded(tmp_path, data_dir):
    """o_keep draws every entity prompt and that share of O prompts per epoch; the model folder records it."""
    from llmie.topro.train import ToproTrainConfig, load, train

    out = tmp_path / "m"
    t = train(ToproTrainConfig(task="ner", n_train=40, max_steps=2, batch_size=8, o_keep=0.2, class_weight="sqrt",
                               log_every=0, out=str(out)), data_dir)
    imb = t.log["imbalance"]
    n_o = imb["tag_counts"]["O"]
    n_ent = sum(v for k, v in imb["tag_counts"].items() if k != "O")
    assert n_o > 5 * n_ent > 0  # the imbalance is real in UNER English
    assert t.log["examples"] == n_o + n_ent
    assert t.log["examples_per_epoch"] == n_ent + round(0.2 * n_o)
    w = dict(zip(t.labels, imb["weights"]))
    assert w["O"] < min(v for k, v in w.items() if k != "O")
    meta = json.loads((out / "topro.json").read_text())
    assert meta["imbalance"]["o_keep"] == 0.2 and meta["imbalance"]["class_weight"] == "sqrt"
    assert load(out, device="cpu").method == "topro"
    with pytest.raises(ValueError, match="o_keep"):
        train(ToproTrainConfig(task="ner", n_train=2, max_steps=1, o_keep=0.0), data_dir)


@pytest.mark.slow
def test_native_masked_lm_head_used_as_is(tmp_path, e5_tok):
    """Any *ForMaskedLM checkpoint keeps its own head (tiny random BERT: a unit test, not a result)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from llmie.topro.encoder import ToproMLM, encode_prompts, predict_topro

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(e5_tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=160)
    BertForMaskedLM(cfg).save_pretrained(tmp_path)
    e5_tok.save_pretrained(tmp_path)
    t = load_template("topro.ner.v1")
    verb = resolve_verbalizer(t, e5_tok)
    m = ToproMLM(str(tmp_path), verb.token_ids)
    assert m.native and m.head_kind == "native"
    ps = decompose(SENTS)
    enc = encode_prompts(e5_tok, t, ps)
    got = m(**enc)
    full = m.mlm(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    want = full[torch.arange(len(ps)), enc["mask_pos"]][:, m.label_ids]
    assert torch.allclose(got, want, atol=1e-5)
    idx, n_fw = predict_topro(m, e5_tok, t, ps, batch_size=8)
    assert len(idx) == len(ps) and all(0 <= i < 7 for i in idx) and n_fw == 2


# --------------------------------------------------------------------------- vanilla + CLI


@pytest.mark.slow
def test_cli_train_eval_smoke(tmp_path, data_dir, monkeypatch):
    from typer.testing import CliRunner

    from llmie.cli import app

    monkeypatch.setenv("LLMIE_DATA_DIR", str(data_dir))
    r = CliRunner()
    res = r.invoke(app, ["topro", "train", "--task", "ner", "--method", "vanilla", "--n-train", "8",
                         "--max-steps", "2", "--batch-size", "4", "--out", str(tmp_path / "v")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["steps"] == 2
    assert (tmp_path / "v" / "weights.pt").stat().st_size < 150e6  # frozen word embeddings are not copied
    res = r.invoke(app, ["topro", "train", "--task", "ner", "--n-train", "2", "--max-steps", "1",
                         "--out", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    res = r.invoke(app, ["topro", "eval", "--task", "ner", "--model", str(tmp_path / "t"), "--langs", "en,hau",
                         "--limit", "2", "--out", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "e" / "results.json").read_text())
    assert set(out["langs"]) == {"en", "hau"}
    assert {"seqeval_f1", "token_weighted_f1", "cost"} <= set(out["langs"]["hau"])
    assert (tmp_path / "e" / "predictions" / "hau.jsonl").exists()
    res = r.invoke(app, ["eval", "--bench", "masakhaner", "--method", "topro", "--model", str(tmp_path / "v"),
                         "--langs", "swa", "--limit", "2", "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "b" / "results.json").read_text())["method"] == "vanilla"
    res = r.invoke(app, ["eval", "--bench", "udpos", "--method", "topro", "--model", str(tmp_path / "v")])
    assert res.exit_code == 2 and "pos" in res.output  # an NER model cannot run the POS bench
    res = r.invoke(app, ["topro", "train", "--task", "pos", "--template", "topro.ner.v1", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "template" in res.output
