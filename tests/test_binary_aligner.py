"""BinaryAlign-style aligner: a short real training run learns, the shipped adapter aligns, the interface holds."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from llmie.models import ModelSourceMissing  # noqa: E402
from llmie.projection.words import segment  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shipped():
    from llmie.projection.binary import BinaryAligner

    try:
        return BinaryAligner()
    except ModelSourceMissing as e:
        pytest.skip(str(e))


def _align(aligner, pairs):
    sw, tw = [segment(s) for s, _ in pairs], [segment(t) for _, t in pairs]
    return aligner.word_alignments(pairs, sw, tw), sw, tw


def test_short_training_run_lowers_loss_and_round_trips(tmp_path, data_dir):
    pytest.importorskip("peft")
    from llmie.projection.binary import BinaryAligner, load_binary_model
    from llmie.projection.train_binary import (
        batch_loss,
        build_examples,
        collate,
        load_recipe,
        split_sentences,
        train_binary_aligner,
    )

    out = tmp_path / "aligner"
    cfg = load_recipe(None, ["pairs=[enfr]", "limit_sents=3", "eval_sents=0", "eval_every=0", "batch_size=4",
                             "max_steps=10", "lr=2e-3", "log_every=5", "max_length=96",
                             f"data={data_dir / 'word_alignment'}", f"out={out}"])
    try:
        folder = train_binary_aligner(cfg)
    except ModelSourceMissing as e:
        pytest.skip(str(e))
    meta = json.loads((folder / "aligner.json").read_text())
    tr = meta["training"]
    assert meta["lora"] and meta["marker_id"] == 250001 and meta["layers"] == 12
    assert {p.name for p in folder.iterdir()} == {"aligner.json", "adapter_config.json",
                                                 "adapter_model.safetensors", "head.safetensors"}
    assert len(tr["losses"]) == 10 and tr["train_sentences"] == 3
    # a fixed batch (the first training batch, eval mode) before vs after the 10 steps
    assert tr["probe_loss_end"] < 0.9 * tr["probe_loss_start"], tr

    # the saved folder (LoRA merged at load, no peft) reproduces the trained model's loss on that batch
    tok, net, marker_id, _ = load_binary_model(adapter=str(folder), dtype="float32")
    train, _ = split_sentences(cfg)
    ex, _ = build_examples(tok, train, marker_id, cfg["max_length"], cfg["swap_prob"], random.Random(cfg["seed"]))
    with torch.no_grad():
        loss = batch_loss(net, *collate(ex[:cfg["batch_size"]], tok.pad_token_id)).item()
    assert loss == pytest.approx(tr["probe_loss_end"], abs=1e-3)
    # the inference default (bf16 encoder where native) stays close
    aligner = BinaryAligner(adapter=str(folder))
    with torch.no_grad():
        loss16 = batch_loss(aligner.model, *collate(ex[:cfg["batch_size"]], tok.pad_token_id)).item()
    assert loss16 == pytest.approx(tr["probe_loss_end"], abs=0.05)


def test_shipped_adapter_aligns_names(shipped):
    (a,), sw, tw = _align(shipped, [("Angela Merkel visited Paris .", "Angela Merkel besuchte Paris .")])
    assert a.shape == (5, 5) and a.dtype == bool
    assert a[1, 1] and a[3, 3]          # Merkel -> Merkel, Paris -> Paris
    assert a[0, 0]                      # Angela -> Angela
    p = shipped.word_probabilities([("Angela Merkel visited Paris .", "Angela Merkel besuchte Paris .")], sw, tw)[0]
    assert p.dtype == np.float32 and ((p > 0.5) == a).all()


def test_shapes_and_overlong_pair(shipped):
    pairs = [("The cat sleeps .", "Le chat dort ."),
             ("word " * 300, "mot " * 10),                                 # > max_length tokens
             ("我喜欢在公园里散步。", "I like walking in the park ."),
             ("", "nothing on the source side")]
    out, sw, tw = _align(shipped, pairs)
    assert isinstance(out[1], ValueError) and "max_length" in str(out[1])
    for k in (0, 2, 3):
        assert isinstance(out[k], np.ndarray) and out[k].shape == (len(sw[k]), len(tw[k]))
    assert out[3].shape[0] == 0                                            # empty source: no rows
    probs = shipped.word_probabilities(pairs, sw, tw)
    assert isinstance(probs[1], ValueError)
    assert all(((probs[k] > shipped.threshold) == out[k]).all() for k in (0, 2, 3))


def test_rows_limit_forward_passes_to_span_words(shipped):
    pairs = [("Angela Merkel visited Paris .", "Angela Merkel besuchte Paris .")]
    _, sw, tw = _align(shipped, pairs)
    full = shipped.word_probabilities(pairs, sw, tw)[0]
    part = shipped.word_probabilities(pairs, sw, tw, rows=[{1, 3}])[0]
    np.testing.assert_allclose(part[[1, 3]], full[[1, 3]], atol=1e-5)
    assert not part[[0, 2, 4]].any()


def test_binary_projection_end_to_end(shipped):
    from llmie.projection.project import project
    from llmie.schema import Document, ProjectionPair, Span

    text = "Angela Merkel visited Paris ."
    src = Document(id="x", text=text, lang="en", spans=[Span(start=0, end=13, label="PER", text="Angela Merkel"),
                                                         Span(start=22, end=27, label="LOC", text="Paris")])
    (doc,) = project([ProjectionPair(id="x", src=src, tgt_text="Angela Merkel besuchte Paris .", tgt_lang="de")],
                     method="binary")
    assert doc.meta["status"] == "ok", doc.meta
    assert [s.text for s in doc.spans] == ["Angela Merkel", "Paris"]
