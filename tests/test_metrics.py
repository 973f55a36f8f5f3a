"""Metric definitions (DESIGN.md §3), with the MASSIE Fig. 2 example and hand-computed EXP cases."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmie.metrics import (adversarial_rate, corpus_projection, corpus_score, items_from_dict, score_items,
                           score_projection, seqeval_scores, span_similarity, token_weighted_f1, weighted_average)
from tests.conftest import REPO

GOLD = {"PERSON": ["Bure", "Galley", "Brian Burke"], "ORGANIZATION": ["NHL"]}


def pct(x: float) -> float:
    return round(100 * x, 1)


def test_fig2_partially_correct():
    s = score_items(items_from_dict(GOLD), items_from_dict({"PERSON": ["Mr Bure", "Mr Galley", "Brian Burke"]}))
    assert pct(s.lf1) == 63.9
    assert s.lf1 == pytest.approx(94 / 147)
    c = corpus_score([s])
    assert pct(c.f1) == 28.6 and c.f1 == pytest.approx(2 / 7)
    assert pct(s.lf1_macro) == 37.3  # the literal per-label average does not reproduce the paper


def test_fig2_wrong_structure_and_invalid():
    wrong = score_items(items_from_dict(GOLD), items_from_dict({"ORGANIZATION": ["Bure", "Galley"]}))
    assert wrong.lf1 == 0 and corpus_score([wrong]).f1 == 0
    # {"PERSON": [{"Mr Bure", ...}]} is not JSON (a set inside a list): the parser gives no dict
    assert items_from_dict({"PERSON": [["Mr Bure", "Mr Galley"]]}) is None
    invalid = score_items(items_from_dict(GOLD), None)
    assert invalid.lf1 == 0 and corpus_score([invalid]).f1 == 0


@pytest.mark.parametrize("name,lf1,f1", [("partial", 63.9, 28.6), ("wrong_label", 0.0, 0.0), ("invalid", 0.0, 0.0)])
def test_score_cli_reproduces_fig2_from_files(name, lf1, f1):
    ex = REPO / "eval" / "examples" / "massie_fig2"
    out = subprocess.run([sys.executable, "-m", "llmie.cli", "score", "--pred", str(ex / f"pred_{name}.jsonl"),
                          "--gold", str(ex / "gold.jsonl")], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout)
    assert round(res["lf1"], 1) == lf1 and round(res["f1"], 1) == f1
    assert res["missing"] == 0 and res["extra"] == 0


def test_lf1_conventions():
    assert score_items([], []).lf1 == 1.0                       # both empty
    assert score_items([("PER", ("a",))], []).lf1 == 0.0       # nothing predicted
    assert score_items([], [("PER", ("a",))]).lf1 == 0.0       # nothing to find
    assert span_similarity("abc", "abc") == 1.0
    assert span_similarity("NHL", "nhl") == 0.0                # case-sensitive
    assert span_similarity("Mr Bure", "Bure") == pytest.approx(4 / 7)


def test_re_routes_by_relation_and_averages_head_tail():
    gold = [("founded_by", ("Apple", "Steve Jobs"))]
    s = score_items(gold, [("founded_by", ("Apple", "Jobs"))])
    assert s.lf1 == pytest.approx((1 + span_similarity("Jobs", "Steve Jobs")) / 2)
    assert score_items(gold, [("ceo_of", ("Apple", "Steve Jobs"))]).lf1 == 0.0


def test_ee_routes_trigger_and_role():
    gold = [(("trigger", "Attack"), ("fired",)), (("arg", "Attack", "Attacker"), ("the army",))]
    same = score_items(gold, list(gold))
    assert same.lf1 == 1.0
    wrong_role = score_items(gold, [(("trigger", "Attack"), ("fired",)), (("arg", "Attack", "Target"), ("the army",))])
    assert wrong_role.lf1 == pytest.approx(0.5)


def test_weighted_average_by_instances():
    assert weighted_average({("d1", "hau"): (0.5, 100), ("d1", "yor"): (1.0, 300)}) == pytest.approx(0.875)


labels = st.sampled_from(["PER", "ORG", "LOC"])
items = st.lists(st.tuples(labels, st.tuples(st.text(min_size=0, max_size=12))), max_size=8)


@settings(max_examples=200, deadline=None)
@given(items)
def test_lf1_of_gold_is_100(gold):
    s = score_items(gold, list(gold))
    assert s.lf1 == pytest.approx(1.0) and s.lf1_macro == pytest.approx(1.0)
    assert corpus_score([s]).f1 == pytest.approx(1.0)


@settings(max_examples=200, deadline=None)
@given(items, items, st.randoms())
def test_lf1_bounded_and_order_free(gold, pred, rnd):
    s = score_items(gold, pred)
    for v in (s.lf1, s.lf1_macro, s.lf1_p, s.lf1_r):
        assert 0.0 <= v <= 1.0 + 1e-12
    shuffled_g, shuffled_p = list(gold), list(pred)
    rnd.shuffle(shuffled_g)
    rnd.shuffle(shuffled_p)
    t = score_items(shuffled_g, shuffled_p)
    assert t.lf1 == pytest.approx(s.lf1) and t.tp == s.tp


# ---- EXP: EM / SM / EP ----------------------------------------------------------------------------------------

def test_projection_failed_sample_scores_zero():
    s = score_projection(None, ["Berlin"])
    assert s.failed and s.em == 0 and s.sm == 0


def test_projection_two_spans_one_off_by_a_word():
    gold = ["Angela Merkel", "Parlament"]
    pred = ["Angela Merkel", "dem Parlament"]  # one extra word on the second span
    s = score_projection(pred, gold)
    assert s.em == 0.0
    assert s.sm == pytest.approx(1.0 * (1 - 4 / 13))  # Levenshtein("dem Parlament","Parlament") = 4, max len 13
    exact = score_projection(gold, gold)
    c = corpus_projection([s, exact, score_projection(None, gold)])
    assert c.em == pytest.approx(1 / 3) and c.failures == 1
    assert c.ep == pytest.approx(1 / 2)                        # EM over the two non-failed samples
    assert c.sm == pytest.approx((1 - 4 / 13 + 1 + 0) / 3)


def test_adversarial_rate():
    assert adversarial_rate([True, True, False, True]) == 0.25


# ---- sequence labelling -----------------------------------------------------------------------------------------

def test_seqeval_strict_and_token_f1_are_different_numbers():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "O", "B-LOC"]]            # PER boundary wrong
    s = seqeval_scores(gold, pred)
    assert s["seqeval_f1"] == pytest.approx(0.5)     # 1 of 2 entities
    assert 0.5 < token_weighted_f1(gold, pred) < 1.0  # 3 of 4 tokens right
    # strict mode does not accept an I- without B- as an entity
    assert seqeval_scores([["B-PER", "I-PER"]], [["I-PER", "I-PER"]])["seqeval_f1"] == 0.0
