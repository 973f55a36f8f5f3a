"""Seed span kinds from real UD English-EWT train trees, and the English->X apertium pairs on a real sentence."""
from __future__ import annotations

import pytest

from llmie.datasets import ud_en


def _trees(n: int = 30):
    from llmie.projection.seeds import read_trees

    p = ud_en("train")
    if not p.exists():
        pytest.skip(f"{p} missing (set LLMIE_DATA_DIR)")
    trees = read_trees(p, limit=n)
    return {t.id.rsplit("-", 1)[-1]: t for t in trees[:40]}, trees


def _spans(t):
    from llmie.projection.seeds import candidates

    return {(k, t.text[t.offsets[a][0]:t.offsets[b][1]]) for (a, b), k in candidates(t).items()}


def test_seed_kinds_on_real_train_sentences():
    trees = _trees()[0]
    assert {("ARG", "American forces"), ("COMPOUND", "mosque"), ("NP", "Syrian border")} <= _spans(trees["0001"])
    assert ("NUM", "2 officials") in _spans(trees["0004"])
    assert ("COMPOUND", "investment firm") in _spans(trees["0006"])
    assert {("NUM", "80 percent"), ("COMPOUND", "police commander")} <= _spans(trees["0012"])
    assert ("NUM", "Two hundred members") in _spans(trees["0024"])
    assert ("ARG", "Iraqi High Electoral Commission") in _spans(trees["0026"])  # "The" left out


def test_no_seed_span_starts_with_an_article_or_possessive():
    """NER, ABSA and relation-argument annotation leave the article out ("sushi", not "the sushi")."""
    for t in _trees(300)[1]:
        for (a, _b), kind in _spans_idx(t).items():
            assert t.deprels[a] not in ("det", "det:poss", "nmod:poss"), (t.id, kind, t.words[a])
    assert ("COMPOUND", "an investment firm") not in _spans(_trees()[0]["0006"])


def _spans_idx(t):
    from llmie.projection.seeds import candidates

    return candidates(t)


def test_seed_docs_offsets_kinds_and_no_overlap():
    from llmie.projection.seeds import KINDS, mix, seeds_from_tree

    docs = [d for d in (seeds_from_tree(t) for t in _trees(200)[1]) if d]
    assert len(docs) > 150
    for d in docs:
        assert 1 <= len(d.spans) <= 2
        assert all(d.text[s.start:s.end] == s.text and s.label in KINDS for s in d.spans)
        assert all(a.end <= b.start for a, b in zip(d.spans, d.spans[1:]))
    m = mix(docs)
    assert set(m) >= {"NP", "COMPOUND", "NUM", "ARG"}, m


def test_test_file_is_refused():
    from llmie.projection.seeds import ud_seed_docs

    p = ud_en("test")
    if not p.exists():
        pytest.skip(f"{p} missing")
    with pytest.raises(ValueError, match="test split"):
        ud_seed_docs(p)


@pytest.mark.parametrize("tgt,word", [("cat", "factura"), ("glg", "factura"), ("epo", "marto"), ("spa", "factura")])
def test_apertium_english_pairs(tgt, word):
    from llmie.mt import ApertiumTranslator

    tr = ApertiumTranslator()
    if not tr.available():
        pytest.skip("the `apertium` binary is missing (apt-get install -y apertium)")
    if ("eng", tgt) not in tr.pairs():
        pytest.skip(f"apertium eng->{tgt} not installed (scripts/setup.sh installs it as an optional extra)")
    out = tr.translate(["The service charge was added to the bill on 12 March 2004."], "en", tgt)
    assert word in out[0].lower(), out


def test_kind_mix_counts_seed_spans_by_language_kind_and_outcome():
    from llmie.projection.synth import kind_mix
    from llmie.schema import Document, Span

    def seed(i, lang, labels):
        return Document(id=f"s{i}>{lang}", text="x" * 20, lang="en", meta={"tgt_lang": lang, "split": "train"},
                        spans=[Span(start=j, end=j + 1, label=lb, text="x") for j, lb in enumerate(labels)])

    seeds = [seed(1, "cat", ["PER", "NP"]), seed(2, "cat", ["NUM"]), seed(3, "glg", ["ORG"]), seed(4, "glg", ["ARG"])]
    outs = [Document(id="s1>cat", text="y", meta={"status": "ok"}), Document(id="s2>cat", text="y", meta={"status": "rejected"}),
            Document(id="s3>glg", text="y", meta={"status": "failed"})]  # s4 has no output yet: counted as failed
    mix = kind_mix(seeds, outs)
    assert mix["cat"] == {"NAME": {"spans": 1, "kept": 1, "rejected": 0, "failed": 0},
                          "NP": {"spans": 1, "kept": 1, "rejected": 0, "failed": 0},
                          "NUM": {"spans": 1, "kept": 0, "rejected": 1, "failed": 0}}
    assert mix["glg"]["NAME"]["failed"] == 1 and mix["glg"]["ARG"]["failed"] == 1
