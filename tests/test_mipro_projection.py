"""MIPROv2 projector (`llmie optimize --task projection`): a real smoke run on the embedded model through a
live server started the way a user would (`llmie serve`), on a small PVP-style synthetic file.

Checks results.json (DESIGN §5 shape, EM before/after, LM calls, seconds), that the metric scored real
parsed predictions, that every prediction (dev and what the metric saw) is a candidate substring of its
target, and that program.json reloads. The data-side checks need no server.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest


LLMIE = [sys.executable, "-m", "llmie.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

PAIRS = [  # (source, source span, target, target span): verified-looking synthetic points
    ("Maria lives in New York City.", "New York City", "Maria mora em Nova Iorque.", "Nova Iorque"),
    ("I flew to Madrid yesterday.", "Madrid", "Voei para Madrid ontem.", "Madrid"),
    ("Pedro works at Siemens in Berlin.", "Siemens", "Pedro trabalha na Siemens em Berlim.", "Siemens"),
    ("The Red Cross office opened.", "Red Cross", "O escritório da Cruz Vermelha abriu.", "Cruz Vermelha"),
    ("Anna visited Lisbon in May.", "Lisbon", "Anna visitou Lisboa em maio.", "Lisboa"),
    ("We met John at the station.", "John", "Encontramos John na estação.", "John"),
    ("Google bought a small company.", "Google", "A Google comprou uma pequena empresa.", "Google"),
    ("She studied in Paris for a year.", "Paris", "Ela estudou em Paris durante um ano.", "Paris"),
    ("Carlos plays for Benfica now.", "Benfica", "Carlos joga agora pelo Benfica.", "Benfica"),
    ("The United Nations met today.", "United Nations", "As Nações Unidas reuniram-se hoje.", "Nações Unidas"),
    ("Tom drove to Porto on Sunday.", "Porto", "Tom dirigiu até o Porto no domingo.", "Porto"),
    ("Ask Luisa about the trip.", "Luisa", "Pergunte à Luisa sobre a viagem.", "Luisa"),
]


def _synth_file(path: Path, unverified: bool = True) -> Path:
    rows = []
    for k, (src, s, tgt, t) in enumerate(PAIRS):
        rows.append({"id": f"p{k}>por", "dataset": "synthetic", "src_lang": "eng", "tgt_lang": "por", "src_text": src,
                     "tgt_text": tgt, "src_spans": [{"start": src.index(s), "end": src.index(s) + len(s),
                                                     "label": "LOC", "text": s}],
                     "tgt_spans": [{"start": tgt.index(t), "end": tgt.index(t) + len(t), "label": "LOC", "text": t}],
                     "meta": {"split": "train", "verified": True}})
    if unverified:
        rows.append({"id": "u>por", "dataset": "synthetic", "src_lang": "eng", "tgt_lang": "por",
                     "src_text": "Paris is big.", "tgt_text": "Paris é grande.",
                     "src_spans": [{"start": 0, "end": 5, "label": "LOC", "text": "Paris"}],
                     "tgt_spans": [{"start": 0, "end": 5, "label": "LOC", "text": "Paris"}],
                     "meta": {"split": "train", "verified": False}})
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def test_points_split_disjoint_and_candidates_from_the_llm_projector(tmp_path):
    from llmie.projection.llm import candidates
    from llmie.projection.mipro import allowed_answers, read_points, split_points
    from llmie.projection.project import prepare

    pts = read_points([str(_synth_file(tmp_path / "train.por.jsonl"))])
    assert len(pts) == len(PAIRS)  # the unverified pair is left out
    train, dev, info = split_points(pts, 6, 4, seed=13)
    assert info["n_train"] == 6 and info["n_dev"] == 4
    assert not {e.id for e in train} & {e.id for e in dev}
    assert not {e.source for e in train} & {e.source for e in dev}
    ex = next((e for e in train + dev if e.span == "Nova Iorque"), train[0])
    assert "<span>" in ex.source and ex.span in allowed_answers(ex.source, ex.target)
    pair, i = next((p, i) for p, i in pts if p.id == ex.id.split("#")[0])
    pp = prepare(pair)
    want = candidates(pair.tgt_text, pp.tgt_words, len(pp.src_span_words[i]), pp.edges[i], 3)
    assert list(allowed_answers(ex.source, ex.target)) == list(want)  # same candidates as --method llm
    assert all(c in ex.target for c in want)
    with pytest.raises(ValueError, match="only .* usable points"):
        split_points(pts, 10, 10, seed=13)


def test_metric_exact_match_and_parse_failure_zero():
    import dspy

    from llmie.projection.mipro import ExactMatchMetric

    m = ExactMatchMetric()
    g = dspy.Example(span="Nova Iorque", target="Maria mora em Nova Iorque.")
    assert m(g, dspy.Prediction(span="Nova Iorque", parse_failures=0)) == 1.0
    assert m(g, dspy.Prediction(span="Iorque", parse_failures=0)) == 0.0
    assert m(g, dspy.Prediction(span=None, parse_failures=1)) == 0.0
    assert m(g, None) == 0.0
    assert m.calls == 4 and m.scored_predictions == 2


def test_looping_proposals_are_recognised():
    """One filter for every MIPRO run (llmie optimize --task ner|...|projection): looping proposals are dropped."""
    from llmie.optimize.program import degenerate_instruction, looping

    assert looping("A problem como a problemam de solução ao que o que o que o que o que o que")
    assert looping("Copy the span exactly ＃＃＃＃＃＃＃＃＃＃＃＃")
    assert looping("The solution is not the solution, but the solution is not the solution. The solution is not the")
    assert looping("Copy from the translation the words that translate the marked source phrase.") is None
    assert "looping" in degenerate_instruction("A problem como a problemam de solução ao que o que o que o que o que")


def test_exp_test_files_are_refused(data_dir):
    from llmie.projection.mipro import read_points

    f = next((data_dir / "exp").rglob("*.jsonl"), None)
    if f is None:
        pytest.skip("no EXP files")
    with pytest.raises(ValueError, match="never on EXP test data"):
        read_points([str(f)])


@pytest.mark.slow
def test_projection_smoke_against_a_user_started_server(user_server, tmp_path):
    out = tmp_path / "opt_proj"
    train = _synth_file(tmp_path / "train.por.jsonl")
    t0 = time.monotonic()
    r = subprocess.run([*LLMIE, "optimize", "--task", "projection", "--train", str(train), "--preset", "smoke",
                        "--n-train", "6", "--n-dev", "4", "--api-base", user_server, "--model-name", "usersmol",
                        "--out", str(out)], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "projection"
    for when in ("before", "after"):
        assert 0 <= res["dev"][when]["em"] <= 100
    assert res["lm_calls"]["task"] > 0 and res["seconds"] > 0 and res["kept"] in ("optimized", "default")
    assert res["data"]["n_train"] == 6 and res["data"]["n_dev"] == 4
    assert res["model"]["name"] == "usersmol" and res["model"]["served"] is None
    # the enum schema reached the server: every answer parsed and was a candidate
    assert res["parse_failures"] == 0 and res["dev_failed"] == {"before": 0, "after": 0}
    # the metric scored real predictions, and each one is a substring of its target
    assert res["metric"]["scored_predictions"] > 0
    assert res["metric"]["calls"] >= res["metric"]["scored_predictions"] == len(res["metric"]["seen"])
    for s in res["metric"]["seen"]:
        assert s["pred"] and s["pred"] in s["target"], s
    for tag in ("dev_before", "dev_after"):
        preds = [json.loads(x) for x in (out / "predictions" / f"{tag}.jsonl").read_text().splitlines()]
        assert len(preds) == 4
        for p in preds:
            assert p["pred"] and p["pred"] in p["target"], p
    n_hits = sum(p["pred"] == p["gold"] for p in preds)
    assert res["dev"]["after"]["em"] == round(100 * n_hits / 4, 2)
    # the saved program reloads with the optimized instruction and demos
    from llmie.projection.mipro import load_program

    prog = load_program(out / "program.json")
    assert prog.project.signature.instructions == res["instruction"]
    assert len(prog.project.demos) == res["n_demos"]
    print(f"projection smoke: {time.monotonic() - t0:.0f} s, dev EM {res['dev']}, calls {res['lm_calls']}")
