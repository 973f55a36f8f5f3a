"""Readers/writers: all of the shared benchmark data loads, counts match its README, bad input is named."""
from __future__ import annotations

import json

import pytest

from llmie.io import (from_hf, read_alignment, read_conll, read_conllu, read_documents, read_exp, read_iob2,
                      read_jsonl, spans_to_bio, to_hf_dataset, write_exp, write_jsonl)
from llmie.lang import normalize_lang
from llmie.metrics.score import score_files
from llmie.schema import Document, LlmieDataError, ProjectionPair, Schema, Span

EXP_COUNTS = {"relx/en-de.test": 434, "relx/en-es.test": 434, "relx/en-fr.test": 434, "relx/en-tr.test": 434,
              "europarl/en-de.test": 304, "europarl/en-es.test": 307, "europarl/en-it.test": 299,
              "absa16/en-es.test": 297, "absa16/en-fr.test": 294, "absa16/en-ru.test": 295}
MASAKHANE = "bam bbj ewe fon hau ibo kin lug luo mos nya pcm sna swa tsn twi wol xho yor zul".split()
# README: "A few tags break IOB2 (an I-X after O): hau 1, kin 1, swa 1, xho 4, yor 1, zul 3 in test"
BROKEN_TEST_TAGS = {"hau": 1, "kin": 1, "swa": 1, "xho": 4, "yor": 1, "zul": 3}


def test_exp_counts_and_offsets(data_dir):
    for name, n in EXP_COUNTS.items():
        pairs = list(read_exp(data_dir / "exp" / f"{name}.jsonl"))
        assert len(pairs) == n, name
        for p in pairs:
            assert all(p.tgt_text[s.start:s.end] == s.text for s in p.gold_tgt_spans)
    for f in sorted((data_dir / "exp").glob("*/*.jsonl")):  # the extra files load too
        assert sum(1 for _ in read_exp(f)) > 0
    ordered = sum(1 for _ in read_exp(data_dir / "exp/absa16/en-es.ordered.jsonl"))
    assert 100 <= ordered <= 130  # "~118 each"


def test_exp_reordered_target_spans_kept_in_source_order(data_dir):
    found = 0
    for f in (data_dir / "exp").glob("*/*.test.jsonl"):
        for p in read_exp(f):
            if p.meta.get("tgt_reordered"):
                starts = [s.start for s in p.gold_tgt_spans]
                assert starts != sorted(starts)
                found += 1
    assert found > 0


def test_masakhaner_all_languages_load(data_dir):
    for lang in MASAKHANE:
        for split in ("train", "dev", "test"):
            docs = list(read_conll(data_dir / "ner/masakhaner2" / lang / f"{split}.txt", lang=lang))
            assert docs, (lang, split)
            assert docs[0].lang == normalize_lang(lang)
            if split == "test":
                assert sum(d.meta.get("repaired_tags", 0) for d in docs) == BROKEN_TEST_TAGS.get(lang, 0), lang
                if lang == "fon":
                    assert len(docs) == 1228
    labels = {s.label for d in read_conll(data_dir / "ner/masakhaner2/hau/test.txt") for s in d.spans}
    assert labels == {"PER", "ORG", "LOC", "DATE"}


def test_masakhaner_strict_repair_names_file_and_line(data_dir):
    with pytest.raises(LlmieDataError, match=r"hau/test\.txt:\d+.*does not continue"):
        list(read_conll(data_dir / "ner/masakhaner2/hau/test.txt", repair="strict"))


def test_uner_and_ud_counts(data_dir):
    assert sum(1 for _ in read_iob2(data_dir / "ner/uner_en_ewt/en_ewt-ud-dev.iob2")) == 2001
    assert sum(1 for _ in read_iob2(data_dir / "ner/uner_en_ewt/en_ewt-ud-test.iob2")) == 2077
    ud = data_dir / "pos/ud_en_ewt"
    counts = [sum(1 for _ in read_conllu(ud / f"en_ewt-ud-{s}.conllu")) for s in ("train.reconstructed", "dev", "test")]
    assert counts == [12544, 2001, 2077]


def test_word_alignment_counts(data_dir):
    wa = data_dir / "word_alignment"
    counts = {n: sum(1 for _ in read_alignment(wa / f"{n}.src-tgt", wa / f"{n}.gold")) for n in
              ("enfr", "roen", "jaen", "zhen")}
    assert counts == {"enfr": 447, "roen": 248, "jaen": 582, "zhen": 450}


def test_uner_offsets_against_text(data_dir):
    doc = next(read_iob2(data_dir / "ner/uner_en_ewt/en_ewt-ud-dev.iob2"))
    assert doc.text.startswith("where can I get morcillas in tampa bay")
    assert [(s.text, s.label) for s in doc.spans][0] == ("tampa bay", "LOC")


def test_iob2_chinese_text_without_spaces(tmp_path):
    f = tmp_path / "zh.iob2"
    f.write_text("# sent_id = zh-1\n# text = 李明在北京工作。\n1\t李明\tB-PER\t-\t-\n2\t在\tO\t-\t-\n"
                 "3\t北京\tB-LOC\t-\t-\n4\t工作\tO\t-\t-\n5\t。\tO\t-\t-\n\n", encoding="utf-8")
    doc = next(read_iob2(f, lang="zh"))
    assert [(s.start, s.end, s.text) for s in doc.spans] == [(0, 2, "李明"), (3, 5, "北京")]
    assert doc.lang == "zho"


def test_conllu_multiword_tokens(data_dir):
    doc = next(d for d in read_conllu(data_dir / "pos/ud_en_ewt/en_ewt-ud-dev.conllu") if "didn't" in d.text)
    i = doc.meta["tokens"].index("did")
    assert doc.meta["tokens"][i + 1] == "n't"
    s, e = doc.meta["token_offsets"][i]
    assert doc.text[s:e] == "didn't" and doc.meta["token_offsets"][i + 1] == [s, e]
    assert doc.meta["upos"][i] == "AUX"


def test_conllu_spanish_style_contractions(tmp_path):
    f = tmp_path / "es.conllu"
    rows = ["# sent_id = es-1", "# text = Voy al mercado.",
            "1\tVoy\tir\tVERB\t_\t_\t0\troot\t_\t_", "2-3\tal\t_\t_\t_\t_\t_\t_\t_\t_",
            "2\ta\ta\tADP\t_\t_\t4\tcase\t_\t_", "3\tel\tel\tDET\t_\t_\t4\tdet\t_\t_",
            "4\tmercado\tmercado\tNOUN\t_\t_\t1\tobl\t_\tSpaceAfter=No", "5\t.\t.\tPUNCT\t_\t_\t1\tpunct\t_\t_"]
    f.write_text("\n".join(rows) + "\n\n", encoding="utf-8")
    doc = next(read_conllu(f))
    assert doc.meta["tokens"] == ["Voy", "a", "el", "mercado", "."]
    assert doc.meta["token_offsets"][1] == doc.meta["token_offsets"][2] == [4, 6]


def test_jsonl_round_trip_and_bad_records(tmp_path):
    docs = [Document(id="a", text="Ada Lovelace lived in London.", lang="en",
                     spans=[Span(start=0, end=12, label="PER", text="Ada Lovelace")]),
            Document(id="b", text="", lang="hau_Latn")]
    f = tmp_path / "x.jsonl"
    write_jsonl(docs, f)
    back = list(read_jsonl(f))
    assert back == docs and back[1].lang == "hau_Latn"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "ok", "text": "abc"}\n{"id": "r2", "text": "abc", "spans": '
                   '[{"start": 0, "end": 2, "label": "X", "text": "bc"}]}\n', encoding="utf-8")
    with pytest.raises(LlmieDataError, match=r"bad\.jsonl:2.*record 'r2'.*spans\.0|bad\.jsonl:2.*record 'r2'"):
        list(read_jsonl(bad))
    bad.write_text('{"id": "ok", "text": "abc"}\n{not json\n', encoding="utf-8")
    with pytest.raises(LlmieDataError, match=r"bad\.jsonl:2: invalid JSON"):
        list(read_jsonl(bad))


def test_exp_bad_pair_is_named(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"id": "p1", "src_text": "Paris is big", "tgt_text": "Paris est grand",
                             "src_spans": [{"start": 0, "end": 5, "label": "LOC", "text": "Paris"}],
                             "tgt_spans": [{"start": 0, "end": 4, "label": "LOC", "text": "Paris"}]}) + "\n")
    with pytest.raises(LlmieDataError, match=r"p\.jsonl:1.*record 'p1'.*tgt_spans"):
        list(read_exp(f))


def test_exp_write_read_round_trip(data_dir, tmp_path):
    pairs = [p for _, p in zip(range(5), read_exp(data_dir / "exp/relx/en-de.test.jsonl"))]
    write_exp(pairs, tmp_path / "out.jsonl")
    assert list(read_exp(tmp_path / "out.jsonl")) == pairs


def test_schema_validation():
    with pytest.raises(ValueError, match="duplicate labels"):
        Schema.from_names("ner", "PER,ORG,PER")
    assert Schema.from_names("ner", "PER, ORG").names == ["PER", "ORG"]
    with pytest.raises(ValueError):
        Document(id="x", text="abc", spans=[Span(start=0, end=9, label="X", text="abc")])
    with pytest.raises(ValueError, match="aligned by index"):
        ProjectionPair(id="p", src=Document(id="p", text="a b", spans=[Span(start=0, end=1, label="X", text="a")]),
                       tgt_text="a b", gold_tgt_spans=[])
    for code, norm in [("ha", "hau"), ("hau", "hau"), ("hau_Latn", "hau_Latn"), ("zh-Hans", "zho_Hans"), ("de", "deu")]:
        assert normalize_lang(code) == norm
    with pytest.raises(ValueError):
        normalize_lang("not a language")


def test_hf_bridge_round_trip_and_load_dataset(tmp_path, data_dir):
    docs = list(read_documents(data_dir / "ner/masakhaner2/yor/dev.txt", lang="yor"))[:20]
    ds = to_hf_dataset(docs)
    assert len(ds) == 20
    assert list(from_hf(ds)) == docs
    # the hub path: load_dataset on a folder, the same call a hub id goes through
    folder = tmp_path / "masakhaner_like"
    folder.mkdir()
    tag_names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    with open(folder / "train.jsonl", "w", encoding="utf-8") as f:
        f.write(json.dumps({"id": "0", "tokens": ["Ade", "lọ", "sí", "Èkó"], "ner_tags": ["B-PER", "O", "O", "B-LOC"]},
                           ensure_ascii=False) + "\n")
    got = list(from_hf(str(folder), split="train", lang="yo"))
    assert [(s.text, s.label) for s in got[0].spans] == [("Ade", "PER"), ("Èkó", "LOC")]
    # integer ClassLabel tags (how masakhane/masakhaner2 is published)
    import datasets
    feats = datasets.Features({"id": datasets.Value("string"), "tokens": datasets.Sequence(datasets.Value("string")),
                               "ner_tags": datasets.Sequence(datasets.ClassLabel(names=tag_names))})
    ds2 = datasets.Dataset.from_list([{"id": "1", "tokens": ["Kano", "ne"], "ner_tags": [3, 0]}], features=feats)
    assert [(s.text, s.label) for s in next(from_hf(ds2)).spans] == [("Kano", "LOC")]


def test_spans_to_bio_round_trip(data_dir):
    for d in list(read_iob2(data_dir / "ner/uner_en_ewt/en_ewt-ud-dev.iob2"))[:300]:
        assert spans_to_bio([tuple(o) for o in d.meta["token_offsets"]], d.spans) == d.meta["tags"]


def test_score_reports_missing_and_extra_ids_and_seqeval(tmp_path, data_dir):
    gold = data_dir / "ner/uner_en_ewt/en_ewt-ud-dev.iob2"
    docs = list(read_iob2(gold))
    preds = [d for d in docs[:1500]] + [Document(id="not-in-gold", text="x")]
    write_jsonl(preds, tmp_path / "pred.jsonl")
    out = score_files(tmp_path / "pred.jsonl", gold)
    assert out["missing"] == 501 and out["extra"] == 1 and "not-in-gold" in out["extra_ids"]
    assert 0 < out["seqeval_f1"] < 100 and 0 < out["lf1"] < 100 and "token_weighted_f1" in out


def test_score_em_sm_on_exp_files(tmp_path, data_dir):
    gold = data_dir / "exp/relx/en-de.test.jsonl"
    pairs = list(read_exp(gold))
    preds = []
    for i, p in enumerate(pairs):
        spans = None if i % 4 == 0 else p.gold_tgt_spans  # every 4th sample fails
        preds.append(p.model_copy(update={"gold_tgt_spans": spans}) if spans is not None else
                     ProjectionPair(id=p.id, src=p.src, tgt_text=p.tgt_text, tgt_lang=p.tgt_lang))
    write_exp(preds, tmp_path / "pred.jsonl")
    out = score_files(tmp_path / "pred.jsonl", gold, "em")
    assert out["failures"] == 109 and out["em"] == pytest.approx(100 * 325 / 434, abs=1e-3)
    assert out["ep"] == 100.0
