"""Grounding of predicted strings: exact, normalised, fuzzy, unaligned; CJK and combining marks."""
from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from llmie.grounding import Grounder, ground_all


def test_exact_leftmost_unused_occurrence():
    t = "Adé met Adé in Lagos."
    g = ground_all(t, [("PER", "Adé"), ("PER", "Adé")])
    assert [(x.span.start, x.status) for x in g] == [(0, "exact"), (8, "exact")]


def test_yoruba_tone_marks_in_another_normal_form_or_dropped():
    t = "Ọjọ́ àìkú ni Adé lọ sí Èkó."
    nfd = unicodedata.normalize("NFD", "Èkó")
    g = ground_all(t, [("LOC", nfd)])[0]
    assert g.status == "normalised" and g.span.text == "Èkó" and t[g.span.start:g.span.end] == "Èkó"
    bare = ground_all(t, [("LOC", "Eko")])[0]      # the model dropped the tone marks
    assert bare.status == "normalised" and bare.span.text == "Èkó"
    sun = ground_all(t, [("DATE", "Ọjọ́ àìkú")])[0]
    assert sun.status == "exact" and sun.span.start == 0


def test_text_without_spaces():
    t = "李明在北京工作。東京タワーへ行った。สวัสดีกรุงเทพ"
    g = ground_all(t, [("PER", "李明"), ("LOC", "北京"), ("LOC", "東京タワー"), ("LOC", "กรุงเทพ")])
    assert all(x.status == "exact" for x in g)
    assert [t[x.span.start:x.span.end] for x in g] == ["李明", "北京", "東京タワー", "กรุงเทพ"]


def test_case_whitespace_fuzzy_and_unaligned():
    t = "Angela  Merkel visited PARIS with the Federal Foreign Office."
    g = ground_all(t, [("PER", "Angela Merkel"), ("LOC", "Paris"), ("ORG", "Federal Foriegn Office"), ("LOC", "Rome")])
    assert [x.status for x in g] == ["normalised", "normalised", "fuzzy", "unaligned"]
    assert g[2].span.text == "Federal Foreign Office"   # snapped to word edges
    assert g[3].span.start is None and g[3].span.text == "Rome"  # kept, not dropped


def test_reuse_mode_for_relation_arguments():
    gr = Grounder("Apple hired Jobs. Apple grew.", reuse=True)
    a, b = gr.ground("head", "Apple"), gr.ground("head", "Apple")
    assert a.span.start == b.span.start == 0


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1, max_size=60), st.data())
def test_grounded_spans_always_match_the_text(text, data):
    i = data.draw(st.integers(0, len(text) - 1))
    j = data.draw(st.integers(i + 1, len(text)))
    pred = data.draw(st.sampled_from([text[i:j], text[i:j].upper(), text[i:j] + "x", "zzz"]))
    g = ground_all(text, [("X", pred)])[0]
    if g.span.start is not None:
        assert text[g.span.start:g.span.end] == g.span.text
    else:
        assert g.status == "unaligned"
