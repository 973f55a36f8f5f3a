"""Label projection: Algorithms 1-3 on hand-built matrices, segmentation, a real end-to-end run, bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from llmie.projection.algorithms import algorithm1, algorithm2, project_rows
from llmie.projection.words import segment, words_in_span
from llmie.schema import Document, ProjectionPair, Span

# ---- Algorithm 1 (faithful rules, bridge=False) --------------------------------------------------------------


def A(*rows):
    return np.array(rows, dtype=bool)


def test_alg1_union_of_aligned_words():
    a = A([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1])
    p = algorithm1(a, [[0, 1], [2]], bridge=False)
    assert p.ok and p.spans == ((0, 1), (3, 3))


def test_alg1_fails_whole_sample_on_gap_empty_or_overlap():
    gap = A([1, 0, 1], [0, 0, 0])
    assert not algorithm1(gap, [[0]], bridge=False).ok
    assert "contiguous" in algorithm1(gap, [[0]], bridge=False).reason
    empty = A([1, 0, 0], [0, 0, 0])
    p = algorithm1(empty, [[0], [1]], bridge=False)  # first span fine, second has no link: sample fails
    assert not p.ok and p.spans is None and "no aligned" in p.reason
    overlap = A([1, 1, 0], [0, 1, 0])
    assert "overlaps" in algorithm1(overlap, [[0], [1]], bridge=False).reason


def test_alg1_reordered_spans_keep_source_order():
    a = A([0, 0, 1], [1, 0, 0])
    assert algorithm1(a, [[0], [1]], bridge=False).spans == ((2, 2), (0, 0))


def test_alg2_verifier_requires_identical_spans():
    a = A([1, 0, 0], [0, 1, 0])
    same_swap = a.T.copy()
    assert algorithm2(a, same_swap, [[0], [1]], bridge=False).spans == ((0, 0), (1, 1))
    other = A([1, 0, 0], [0, 0, 1]).T  # swapped direction links source word 1 elsewhere
    p = algorithm2(a, other, [[0], [1]], bridge=False)
    assert not p.ok and "verifier" in p.reason
    failing_swap = A([1, 0, 1], [0, 1, 0]).T
    assert "verifier" in algorithm2(a, failing_swap, [[0], [1]], bridge=False).reason


def test_alg3_hybrid_span_by_word_matrix():
    b = A([0, 1, 1, 0], [1, 0, 0, 0])
    assert project_rows(b, bridge=False).spans == ((1, 2), (0, 0))
    assert not project_rows(A([1, 0, 1, 0]), bridge=False).ok


def test_bridge_fills_punctuation_and_intra_token_holes_only():
    text = "der CRTC-Sitzungen und (ABA) Team"
    words = segment(text)
    w = [text[x.start:x.end] for x in words]
    crtc, sitz = w.index("CRTC"), w.index("Sitzungen")
    row = np.zeros(len(words), bool)
    row[[crtc, sitz]] = True            # hole is the hyphen inside one token: filled
    p = project_rows(row[None], words)
    assert p.ok and text[words[p.spans[0][0]].start:words[p.spans[0][1]].end] == "CRTC-Sitzungen"
    row = np.zeros(len(words), bool)
    row[[w.index("der"), w.index("und")]] = True  # hole is a real word: still a failure
    assert not project_rows(row[None], words).ok
    row = np.zeros(len(words), bool)
    row[[w.index("("), w.index("ABA"), w.index(")")]] = True  # edge punctuation trimmed
    p = project_rows(row[None], words)
    assert text[words[p.spans[0][0]].start:words[p.spans[0][1]].end] == "ABA"


def test_segmentation_offsets_and_scripts():
    text = "Michigan'daki U.S. 李明在北京 Ọjọ́"
    ws = segment(text)
    pieces = [text[w.start:w.end] for w in ws]
    assert pieces[:3] == ["Michigan", "'", "daki"] and "U.S." in pieces
    assert ["李", "明", "在", "北", "京"] == pieces[pieces.index("李"):pieces.index("李") + 5]
    assert pieces[-1] == "Ọjọ́"  # combining tone marks stay inside the word
    assert words_in_span(ws, 0, 8) == [0]


# ---- real end-to-end projection with the embedded encoder ----------------------------------------------------

@pytest.fixture(scope="module")
def exp_pairs(data_dir):
    from llmie.io import read_exp

    return list(read_exp(data_dir / "exp/relx/en-de.test.jsonl"))[:12]


def test_awesome_end_to_end_on_real_pairs(exp_pairs):
    from llmie.metrics import corpus_projection, score_projection
    from llmie.projection.project import project

    docs = list(project(exp_pairs, "awesome"))
    assert [d.id for d in docs] == [p.id for p in exp_pairs]
    for p, d in zip(exp_pairs, docs):
        assert d.meta["status"] in ("ok", "failed")
        for s in d.spans:  # always the original target substring
            assert p.tgt_text[s.start:s.end] == s.text
    sc = corpus_projection([score_projection(None if d.meta["status"] == "failed" else [s.text for s in d.spans],
                                             [s.text for s in p.gold_tgt_spans]) for p, d in zip(exp_pairs, docs)])
    assert sc.em >= 0.6  # the awesome aligner gets most of these easy RELX pairs exactly


def test_chinese_target_is_projected_as_a_substring():
    from llmie.projection.project import project

    src = Document(id="zh1", text="Li Ming works in Beijing .", lang="en",
                   spans=[Span(start=0, end=7, label="PER", text="Li Ming"), Span(start=17, end=24, label="LOC", text="Beijing")])
    pair = ProjectionPair(id="zh1", src=src, tgt_text="李明在北京工作。", tgt_lang="zh")
    d = next(project([pair], "awesome"))
    assert d.meta["status"] in ("ok", "failed")
    for s in d.spans:
        assert " " not in s.text and pair.tgt_text[s.start:s.end] == s.text


def test_project_cli_bad_input_gets_a_status_and_the_run_continues(tmp_path, exp_pairs):
    from llmie.io.exp import pair_to_dict

    good = [pair_to_dict(p) for p in exp_pairs[:3]]
    bad_span = dict(good[0], id="bad-span", tgt_spans=None,
                    src_spans=[{"start": 0, "end": 3, "label": "X", "text": "zzz"}])
    empty_tgt = dict(good[1], id="empty-tgt", tgt_text="", tgt_spans=None)
    long_pair = dict(good[2], id="long", tgt_text=" ".join(["Wort"] * 1200), tgt_spans=None)
    lines = [json.dumps(x, ensure_ascii=False) for x in (good[0], bad_span, empty_tgt, long_pair, good[1])]
    lines.insert(2, "{this is not json")
    f = tmp_path / "in.jsonl"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    r = subprocess.run([sys.executable, "-m", "llmie.cli", "project", "--in", str(f), "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    recs = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    by_id = {x["id"]: x["meta"] for x in recs}
    assert len(recs) == 6
    assert by_id["bad-span"]["status"] == "failed" and "src_spans" in by_id["bad-span"]["reason"]
    assert by_id["line-3"]["status"] == "failed" and "invalid JSON" in by_id["line-3"]["reason"]
    assert by_id["empty-tgt"]["reason"] == "empty target text"
    assert "max_length" in by_id["long"]["reason"]
    assert by_id[good[0]["id"]]["status"] in ("ok", "failed")
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["n"] == 6 and summary["bad_input"] == 2


def test_eval_exp_results_shape(tmp_path, data_dir):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "llmie.cli", "eval", "--bench", "exp", "--method", "awesome",
                        "--pairs", "en-de", "--limit", "6", "--adversarial", "--out", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["bench"] == "exp" and res["method"] == "awesome"
    assert set(res["pairs"]) == {"en-de"}
    for k in ("n", "em", "sm", "ep", "failures", "seconds"):
        assert k in res["pairs"]["en-de"]
    assert res["pairs"]["en-de"]["n"] == 12  # relx + europarl, 6 each
    assert set(res["avg"]) >= {"em", "sm"} and 0 <= res["avg"]["em"] <= 100
    assert "adversarial_rate" in res["files"]["relx/en-de"]
    assert (out / "results.md").exists() and (out / "em.png").stat().st_size > 1000
    preds = (out / "predictions/relx/en-de.jsonl").read_text().splitlines()
    assert len(preds) == 6
    # rerun with the same --out: nothing is projected twice, nothing lost
    r2 = subprocess.run([sys.executable, "-m", "llmie.cli", "eval", "--bench", "exp", "--method", "awesome",
                         "--pairs", "en-de", "--limit", "6", "--out", str(out)], capture_output=True, text=True)
    assert r2.returncode == 0, r2.stderr
    assert (out / "predictions/relx/en-de.jsonl").read_text().splitlines() == preds
    assert json.loads((out / "results.json").read_text())["pairs"]["en-de"]["em"] == res["pairs"]["en-de"]["em"]


def test_best_run_picks_the_scored_run_of_a_repeated_name():
    from llmie.projection.algorithms import project_rows

    # target: "Sacramento Heatwave ist ... in Sacramento ," -> span 0 aligned to words 0, 1 and 5
    rows = np.array([[1, 1, 0, 0, 0, 1, 0]], dtype=bool)
    assert not project_rows(rows).ok                                    # the paper's rule: the sample fails
    scores = np.array([[0.96, 0.94, 0.1, 0.0, 0.0, 0.8, 0.0]])
    assert project_rows(rows, scores=scores, src_rel=[0.1]).spans == ((0, 1),)
    # a tie between two copies of one word is broken by relative position; used words are skipped
    rows2 = np.array([[1, 0, 0, 1], [1, 0, 0, 1]], dtype=bool)
    sc2 = np.array([[0.9, 0, 0, 0.9], [0.9, 0, 0, 0.9]])
    assert project_rows(rows2, scores=sc2, src_rel=[0.9, 0.1]).spans == ((3, 3), (0, 0))


def test_unaligned_gap_fill_and_elision():
    from llmie.projection.algorithms import fill_unaligned_gaps
    from llmie.projection.project import elision_start

    # source "wine list" -> target "liste de vins": "de" aligns to nothing, so the hole is filled
    a = np.array([[0, 0, 1], [1, 0, 0]], dtype=bool)
    assert algorithm1(a, [[0, 1]], bridge=False).reason.endswith("not contiguous")
    assert algorithm1(a, [[0, 1]]).spans == ((0, 2),)
    # a hole word aligned to another source word is not filled
    a2 = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=bool)
    assert not algorithm1(a2, [[0, 1]]).ok
    assert fill_unaligned_gaps(np.array([[1, 0, 0, 0, 1]], bool), np.zeros((1, 5), bool)).all() == False  # noqa: E712
    text = "Nous aimons l'atmosphère et Michigan'daki"
    words = segment(text)
    k = next(i for i, w in enumerate(words) if text[w.start:w.end] == "atmosphère")
    assert text[words[elision_start(text, words, k)].start:words[k].end] == "l'atmosphère"
    m = next(i for i, w in enumerate(words) if text[w.start:w.end] == "daki")
    assert elision_start(text, words, m) == m                      # not at the token's start
    assert elision_start(text, words, 0) == 0
