"""PVP: worst-group loss, pair augmentation labels, gold-alignment phrases, a real short training run, inference."""
from __future__ import annotations

import json
import random

import pytest
import torch

from llmie.projection.train_pvp import DEFAULTS, Point, make_examples, worst_group_loss


def test_wgl_averages_the_top_half_and_only_they_get_gradients():
    losses = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.7, 0.2], requires_grad=True)
    wgl = worst_group_loss(losses, 0.5)
    assert wgl.item() == pytest.approx((0.9 + 0.7 + 0.5) / 3)
    wgl.backward()
    assert losses.grad.tolist() == pytest.approx([0, 1 / 3, 1 / 3, 0, 1 / 3, 0])
    assert worst_group_loss(torch.tensor([0.4]), 0.5).item() == pytest.approx(0.4)  # at least one point
    assert worst_group_loss(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), 0.5).item() == pytest.approx(4.5)  # floor(2.5)=2


@pytest.fixture(scope="module")
def tok():
    from llmie.projection.binary import load_base

    return load_base("embedded")[0]


def _pt(src, s_sub, tgt, t_sub, lang="deu"):
    a = src.index(s_sub)
    b = tgt.index(t_sub)
    return Point(src, (a, a + len(s_sub)), tgt, (b, b + len(t_sub)), lang)


def _labelled_text(tok, ex, text_ids_all):
    ids, pos, lab = ex
    return tok.decode([ids[p] for p, y in zip(pos, lab) if y]).strip()


def test_augmentation_labels(tok):
    marker = tok.mask_token_id
    p = _pt("Angela Merkel visited Paris .", "Paris", "Angela Merkel besuchte Paris gestern .", "Paris")
    q = _pt("The cat sleeps .", "cat", "Die Katze schläft .", "Katze")
    cfg = {**DEFAULTS, "p_swap": 0.0, "p_neg": 0.0}
    ex = make_examples(tok, [p], [p, q], marker, cfg, random.Random(0))[0]
    assert ex[0].count(marker) == 2                      # span wrapped in two markers
    assert _labelled_text(tok, ex, None) == "Paris"      # labels: the gold target span's tokens only
    swapped = make_examples(tok, [p], [p, q], marker, {**cfg, "p_swap": 1.0}, random.Random(0))[0]
    assert tok.decode(swapped[0][: swapped[0].index(tok.sep_token_id)]).count("besuchte") == 1  # roles swapped
    assert _labelled_text(tok, swapped, None) == "Paris"
    neg = make_examples(tok, [p], [p, q], marker, {**cfg, "p_neg": 1.0}, random.Random(0))[0]
    assert neg[2].sum() == 0 and "Katze" in tok.decode(neg[0])  # another pair's target, all-zero labels


def test_phrases_from_gold_alignment_are_consistent(data_dir):
    from llmie.io import read_alignment
    from llmie.projection.synth import phrases_from_alignment

    wa = data_dir / "word_alignment"
    sents = list(read_alignment(wa / "zhen.src-tgt", wa / "zhen.gold"))[:40]
    pairs = phrases_from_alignment(sents)
    assert pairs
    for p in pairs:
        for s, t in zip(p.src.spans, p.gold_tgt_spans):
            assert p.src.text[s.start:s.end] == s.text and p.tgt_text[t.start:t.end] == t.text
    assert " " not in pairs[0].src.text[:10]  # Chinese side joined without spaces
    from llmie.projection.synth import ENGLISH_FUNCTION_WORDS

    content = phrases_from_alignment(sents, english="tgt")   # zh-en: English is the target side
    edges = [w.lower() for p in content for t in p.gold_tgt_spans for w in (t.text.split()[0], t.text.split()[-1])]
    assert content and not set(edges) & ENGLISH_FUNCTION_WORDS
    assert set(w.lower() for p in pairs for t in p.gold_tgt_spans for w in t.text.split()[:1]) & ENGLISH_FUNCTION_WORDS


def test_short_real_training_lowers_the_loss_and_projects(tmp_path, data_dir):
    from llmie.io import read_alignment, write_exp
    from llmie.projection.pvp import PVPProjector
    from llmie.projection.project import project
    from llmie.projection.synth import phrases_from_alignment
    from llmie.projection.train_pvp import train_projector

    wa = data_dir / "word_alignment"
    sents = list(read_alignment(wa / "enfr.src-tgt", wa / "enfr.gold"))
    pairs = phrases_from_alignment(sents[:60], english="src")
    write_exp(pairs, tmp_path / "train.jsonl")
    write_exp(phrases_from_alignment(sents[60:100], english="src"), tmp_path / "dev.jsonl")  # other sentences
    torch.manual_seed(0)
    out = train_projector({"train": [str(tmp_path / "train.jsonl")], "dev": [str(tmp_path / "dev.jsonl")],
                           "max_steps": 40, "batch_size": 8,
                           "lr": 5e-4, "head_lr": 3e-3, "p_swap": 0.0, "p_neg": 0.0, "wgl_k": 1.0,
                           "lora_dropout": 0.0, "eval_every": 20,
                           "out": str(tmp_path / "proj")})
    import json

    summary = json.loads((out / "aligner.json").read_text())["training"]
    assert summary["final_loss"] < sum(summary["first_losses"]) / len(summary["first_losses"]), summary
    evals = {e["step"]: e["dev_em"] for e in summary["evals"]}
    assert set(evals) == {0, 20, 40}
    scores = {e["step"]: e["dev_score"] for e in summary["evals"]}   # EM + abstentions on mismatched dev pairs
    assert summary["best_dev_score"] == max(scores.values()) and summary["best_step"] == max(scores, key=scores.get)
    assert all(0 <= e["dev_adversarial_rate"] <= 100 for e in summary["evals"])
    assert max(evals[20], evals[40]) > evals[0], evals   # training improves dev EM over the untrained head
    proj = PVPProjector(adapter=str(out))
    docs = list(project(pairs[:4], "pvp", adapter=str(out)))
    assert len(docs) == 4 and all(d.meta["status"] in ("ok", "failed") for d in docs)
    assert proj.meta["format"] == "llmie-pvp-projector"


def test_shipped_projector_on_real_exp_pairs(data_dir):
    """The packaged CPU projector (no training step) projects real EXP test pairs; measured EM on all of EXP
    is 92.18, so 30 Europarl en-de pairs (94.08 there) must mostly come out exactly right."""
    from llmie.io import read_exp
    from llmie.metrics.projection import corpus_projection, score_projection
    from llmie.projection.project import project

    pairs = list(read_exp(data_dir / "exp/europarl/en-de.test.jsonl"))[:30]
    docs = list(project(pairs, "pvp"))
    assert [d.id for d in docs] == [p.id for p in pairs]
    samples = [score_projection(None if d.meta["status"] == "failed" else [s.text for s in d.spans],
                                [s.text for s in p.gold_tgt_spans or []]) for d, p in zip(docs, pairs)]
    em = corpus_projection(samples).as_percent()["em"]
    assert em >= 80, em
    for d, p in zip(docs, pairs):  # every projected span is a piece of its own target sentence
        assert all(p.tgt_text[s.start:s.end] == s.text for s in d.spans)


def test_synth_batch_statuses_and_point_files(tmp_path):
    """One synthesis unit (real awesome proposer + verifier, given translations) and the file writer:
    a good pair is kept, an untranslatable one fails with its reason, a rejected one goes to rejected.*."""
    from llmie.mt import get_translator
    from llmie.projection.project import get_aligner
    from llmie.projection.synth import seed_records, synth_batch, write_points
    from llmie.schema import Document, Span

    def doc(i, text, sub):
        a = text.index(sub)
        return Document(id=i, text=text, spans=[Span(start=a, end=a + len(sub), label="LOC", text=sub)])

    docs = [doc("d1", "Angela Merkel visited Paris yesterday.", "Paris"), doc("d2", "Ada lives in London.", "London")]
    seeds = seed_records(docs, ["deu"], n_train=1, n_dev=1, seed=3)
    assert sorted(s.id for s in seeds) == ["d1>deu", "d2>deu"] and {s.meta["split"] for s in seeds} == {"train", "dev"}
    tr = get_translator("pretranslated", mapping={docs[0].text: "Angela Merkel besuchte gestern Paris.",
                                                  docs[1].text: "!!!"})
    outs = synth_batch(seeds, tr, get_aligner("awesome"), verify=True)
    by = {o.id: o for o in outs}
    assert [o.id for o in outs] == [s.id for s in seeds]
    assert by["d1>deu"].meta["status"] == "ok" and [s.text for s in by["d1>deu"].spans] == ["Paris"]
    assert by["d2>deu"].meta["status"] == "failed" and by["d2>deu"].meta["reason"]
    # a rejected proposal (the verifier's verdict, here written by hand) is routed to rejected.* with its spans
    rej = by["d1>deu"].model_copy(update={"meta": {**by["d1>deu"].meta, "status": "rejected", "reason": "back"}})
    counts = write_points(seeds, [rej if o.id == "d1>deu" else o for o in outs], tmp_path)
    assert counts["deu"] == {"seeds": 2, "proposed": 1, "failed": 1, "rejected": 1, "kept": 0, "points": 0}
    rows = [json.loads(x) for x in (tmp_path / "rejected.deu.jsonl").read_text().splitlines()]
    assert sorted(r["meta"]["status"] for r in rows) == ["failed", "rejected"]
    assert [r["tgt_spans"] for r in rows if r["meta"]["status"] == "rejected"][0][0]["text"] == "Paris"
    counts = write_points(seeds, outs, tmp_path)
    split = by["d1>deu"].meta["split"]
    kept = [json.loads(x) for x in (tmp_path / f"{split}.deu.jsonl").read_text().splitlines()]
    assert counts["deu"]["kept"] == 1 and kept[0]["tgt_spans"][0]["text"] == "Paris"
    assert kept[0]["src_lang"] and kept[0]["meta"] == {"split": split, "verified": True}
    with pytest.raises(RuntimeError, match="no synthesis output"):
        write_points(seeds, outs[:1], tmp_path)


def _untrained(head: str):
    from llmie.projection.binary import default_marker, load_base
    from llmie.projection.pvp import PVPModel, PVPProjector

    tok, enc = load_base("embedded", 8)
    net = PVPModel(enc, default_marker(tok), head=head, special_ids=tok.all_special_ids).eval()
    return PVPProjector(net=net, tokenizer=tok, marker_id=default_marker(tok), device="cpu")


def _projected(projector, pairs):
    from llmie.projection.project import prepare

    prepped = [prepare(p) for p in pairs]
    out = []
    for p, r in zip(prepped, projector.project_batch(prepped)):
        out.append([p.pair.tgt_text[p.tgt_words[a].start:p.tgt_words[z].end] for a, z in r.spans]
                   if getattr(r, "ok", False) else None)
    return out


def test_align_head_untrained_is_an_awesome_like_span_aligner():
    """The `align` head (both softmax directions) starts as awesome's threshold rule: before any training it
    keeps the article next to a span out and the edge word of a long span above 0.5, where the mean-similarity
    head loses the edge word (measured on 200 gold-alignment phrases: untrained EM 40.5 vs 16.0)."""
    from llmie.schema import Document, ProjectionPair, Span

    def pair(src, s_sub, tgt, t_sub):
        a = src.index(s_sub)
        return ProjectionPair(id=t_sub, src=Document(id=t_sub, text=src, spans=[
            Span(start=a, end=a + len(s_sub), label="X", text=s_sub)]), tgt_text=tgt,
            gold_tgt_spans=[Span(start=tgt.index(t_sub), end=tgt.index(t_sub) + len(t_sub), label="X", text=t_sub)])

    pairs = [pair("The Commission has adopted the proposal .", "Commission",
                  "La Comisión ha adoptado la propuesta .", "Comisión"),
             pair("The staff was extremely friendly .", "staff", "Le personnel était extrêmement aimable .",
                  "personnel"),
             pair("I thank the Health and Safety Committee for its work .", "Health and Safety Committee",
                  "Agradezco al Comité de Sanidad y Seguridad su trabajo .", "Comité de Sanidad y Seguridad")]
    from llmie.projection.project import prepare

    align, sim = _untrained("align"), _untrained("sim")
    gold = [[p.gold_tgt_spans[0].text] for p in pairs[:2]]
    assert _projected(align, pairs[:2]) == gold          # no article ("La", "Le") joins the span
    long_span = prepare(pairs[2])            # the edge word of a 4-word span: above 0.5 only with `align`
    comite = [pairs[2].tgt_text[w.start:w.end] for w in long_span.tgt_words].index("Comité")
    assert align.span_probabilities([long_span])[0][0, comite] > 0.5
    assert sim.span_probabilities([long_span])[0][0, comite] < 0.5


def test_align_head_needs_the_target_mask_and_ignores_special_tokens():
    from llmie.projection.binary import SpanAlignHead

    head = SpanAlignHead(4, marker_id=9, special_ids=[0, 2])
    ids = torch.tensor([[0, 9, 5, 9, 6, 2, 2, 7, 8, 2]])     # <s> [m] span [m] src </s></s> tgt tgt </s>
    tgt = torch.tensor([[False] * 7 + [True, True, False]])
    h = torch.randn(1, 10, 4)
    z = head(h, ids, tgt)
    assert z.shape == (1, 10) and torch.isfinite(z[tgt]).all()
    with pytest.raises(ValueError, match="target-token mask"):
        head(h, ids, None)
    h2 = h.clone()
    h2[0, [0, 5, 6, 9]] = torch.randn(4, 4)                   # special tokens are no source words
    assert torch.allclose(head(h2, ids, tgt)[tgt], z[tgt])


def test_align_head_fills_holes_of_unaligned_target_words():
    """Algorithm 1's hole rule for the `align` head: a hole of <= 2 target words that align to no source word
    (awesome's both-directions test) is part of the span ("Universidad [de] Indiana"); an article aligned to
    "the" is not."""
    from llmie.projection.project import prepare
    from llmie.schema import Document, ProjectionPair, Span

    def pair(src, s_sub, tgt):
        a = src.index(s_sub)
        return ProjectionPair(id=s_sub, src=Document(id=s_sub, text=src, spans=[
            Span(start=a, end=a + len(s_sub), label="X", text=s_sub)]), tgt_text=tgt)

    pairs = [pair("He studied at Indiana University in 1990 .", "Indiana University",
                  "Estudió en la Universidad de Indiana en 1990 ."),
             pair("The Green Tea creme brulee is a must !", "Green Tea creme brulee",
                  "La crème brûlée au thé vert est un incontournable !"),
             pair("The wine list is long .", "wine list", "La liste de vins est longue .")]
    align = _untrained("align")
    assert _projected(align, pairs) == [["Universidad de Indiana"], ["crème brûlée au thé vert"], ["liste de vins"]]
    prepped = [prepare(p) for p in pairs]
    b, strength = align._probabilities(prepped[:1])[0]
    words = [pairs[0].tgt_text[w.start:w.end] for w in prepped[0].tgt_words]
    assert strength[words.index("de")] < 0.3 < strength[words.index("Universidad")]
    assert b[0, words.index("de")] < 0.5                      # the hole rule, not the span pass, adds "de"
    no_bridge = align.project_batch(prepped[:1], bridge=False)[0]
    assert not no_bridge.ok or no_bridge.spans != ((words.index("Universidad"), words.index("Indiana")),)


def test_align_head_folder_without_gate_weights_loads_with_gate_zero(tmp_path):
    """A projector folder saved before the absolute-similarity gate existed loads as gate 0 (same logits);
    a head file with weights of another head kind is refused."""
    from safetensors.torch import load_file, save_file

    from llmie.projection.binary import save_aligner
    from llmie.projection.pvp import FORMAT, PVPProjector

    pr = _untrained("align")
    out = save_aligner(tmp_path / "p", pr.model, base_model="embedded", marker_id=pr.marker_id, lora=False,
                       fmt=FORMAT)
    head = load_file(str(out / "head.safetensors"))
    assert {"gate", "offset"} <= set(head)
    save_file({k: v for k, v in head.items() if k not in ("gate", "offset")}, str(out / "head.safetensors"))
    loaded = PVPProjector(adapter=str(out), device="cpu")
    assert loaded.model.head_kind == "align" and float(loaded.model.head.gate) == 0.0
    save_file({"bogus": torch.zeros(1)}, str(out / "head.safetensors"))
    with pytest.raises(ValueError, match="head weights do not match"):
        PVPProjector(adapter=str(out), device="cpu")


def test_train_projector_goes_on_from_an_init_folder(tmp_path, data_dir):
    """`init`: a later stage starts from a projector folder's LoRA and head weights (checked: a 0-lr step
    saves them unchanged); a folder of another shape is refused with a clear error."""
    from safetensors.torch import load_file

    from llmie.io import read_alignment, write_exp
    from llmie.projection.synth import phrases_from_alignment
    from llmie.projection.train_pvp import train_projector

    wa = data_dir / "word_alignment"
    write_exp(phrases_from_alignment(list(read_alignment(wa / "enfr.src-tgt", wa / "enfr.gold"))[:20],
                                     english="src"), tmp_path / "train.jsonl")
    base = {"train": [str(tmp_path / "train.jsonl")], "dev": [], "batch_size": 4, "eval_every": 0,
            "head": "align", "lora_dropout": 0.0}
    a = train_projector({**base, "max_steps": 3, "lr": 1e-3, "head_lr": 1e-2, "out": str(tmp_path / "a")})
    b = train_projector({**base, "max_steps": 1, "lr": 0.0, "head_lr": 0.0, "init": str(a), "out": str(tmp_path / "b")})
    for name in ("adapter_model.safetensors", "head.safetensors"):
        wa_, wb = load_file(str(a / name)), load_file(str(b / name))
        assert wa_.keys() == wb.keys() and all(torch.equal(wa_[k], wb[k]) for k in wa_), name
    assert any(v.abs().sum() > 0 for k, v in load_file(str(a / "adapter_model.safetensors")).items() if "lora_B" in k)
    with pytest.raises(ValueError, match="does not match this recipe"):
        train_projector({**base, "max_steps": 1, "layers": 6, "init": str(a), "out": str(tmp_path / "c")})
