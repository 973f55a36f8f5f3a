"""`llmie optimize`: real MIPROv2 smoke runs on the embedded model through live local vLLM servers.

One run starts the embedded server itself (and must stop it by PID); one runs against a server a user
started with `llmie serve` (the RE task); dry-run call counting needs no server.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmie.backends.serve import pid_alive

LLMIE = [sys.executable, "-m", "llmie.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _cli(*args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run([*LLMIE, *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def _check_outputs(out: Path, task: str) -> dict:
    from llmie.massie.prompt import load_template

    res = json.loads((out / "results.json").read_text())
    # DESIGN §5 contract
    assert res["task"] == task
    for when in ("before", "after"):
        assert set(res["dev"][when]) >= {"lf1", "f1"}
        assert 0 <= res["dev"][when]["lf1"] <= 100
    assert res["kept"] in ("optimized", "default")
    assert res["lm_calls"]["task"] > 0 and res["lm_calls"]["prompt"] > 0
    assert res["seconds"] > 0
    # structured output reached the server: every answer parsed
    assert res["parse_failures"] == 0
    assert res["dev_detail"]["before"]["failed_samples"] == 0 and res["dev_detail"]["after"]["failed_samples"] == 0
    # the metric ran on real parsed predictions (MIPRO trials + bootstrapping)
    assert res["metric"]["scored_predictions"] > 0 and res["metric"]["calls"] >= res["metric"]["scored_predictions"]
    if res["kept"] == "default":
        assert "keeping the default prompt" in res["note"]
    else:  # the keep rule: never a prompt that lowers dev exact F1 or labelled-sample LF1
        assert res["dev"]["after"]["f1"] >= res["dev"]["before"]["f1"]
        lb, la = res["dev"]["before"]["lf1_labelled"], res["dev"]["after"]["lf1_labelled"]
        assert lb is None or la >= lb
    for name in ("program.json", "template.yaml", "optimized.yaml", "predictions/dev_before.jsonl",
                 "predictions/dev_after.jsonl"):
        assert (out / name).is_file(), name
    assert json.loads((out / "program.json").read_text())["extract"]["signature"]["instructions"]
    tpl = load_template(str(out / "template.yaml"))
    assert tpl.task == task and tpl.instruction
    return res


def _same_prompt_as_extract(out: Path, task: str) -> None:
    """What MIPRO scored (DSPy program + adapter) is what `llmie extract --prompt` sends."""
    import dspy

    from llmie.massie.prompt import load_template, messages
    from llmie.optimize.program import MassieAdapter, MassieProgram
    from llmie.optimize.run import default_schema

    schema = default_schema(task, ["eng"])
    prog = MassieProgram(task, schema, "placeholder instruction", load_template(f"massie.{task}.v1").format)
    prog.load(str(out / "program.json"))
    labels = prog.labels[:6]
    text = "Ada Lovelace worked with Charles Babbage in London."
    got = MassieAdapter().format(prog.extract.signature, prog.extract.demos, {"text": text, "labels": labels})
    want = messages(load_template(str(out / "optimized.yaml")), text, labels)
    assert got == want
    assert isinstance(prog.extract.signature.instructions, str) and dspy is not None


@pytest.mark.slow
def test_smoke_run_starts_and_stops_the_embedded_server(tmp_path, data_dir):
    out = tmp_path / "opt"
    # CI-sized below the smoke preset: the server start/stop, the contract and grounding are what is tested here
    r = _cli("optimize", "--task", "ner", "--preset", "smoke", "--nonempty", "0.6", "--n-train", "5", "--trials", "2",
             "--max-tokens", "96", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["parse_failures"] == 0
    res = _check_outputs(out, "ner")
    assert res["data"]["n_train"] == 5 and res["data"]["n_dev"] == 5 and res["settings"]["max_tokens"] == 96
    pid = int(re.search(r"server pid (\d+)", r.stderr).group(1))
    assert not pid_alive(pid), "the embedded server outlived llmie optimize"
    # real predictions, grounded into the document text
    preds = [json.loads(x) for x in (out / "predictions/dev_before.jsonl").read_text().splitlines()]
    assert len(preds) == 5 and all(p["meta"]["parse_status"] == "ok" for p in preds)
    assert sum(len(p["spans"]) for p in preds) > 0
    for p in preds:
        for s in p["spans"]:
            assert s["start"] is None or p["text"][s["start"]:s["end"]] == s["text"]
    _same_prompt_as_extract(out, "ner")


@pytest.mark.slow
def test_re_smoke_against_a_user_started_server(user_server, tmp_path, data_dir):
    out = tmp_path / "opt_re"
    r = _cli("optimize", "--task", "re", "--preset", "smoke", "--n-train", "3", "--n-dev", "3", "--trials", "2",
             "--max-tokens", "96",
             "--api-base", user_server, "--model-name", "usersmol", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    res = _check_outputs(out, "re")
    assert res["model"]["name"] == "usersmol" and res["model"]["served"] is None  # no server of our own
    assert len(res["labels"]) == 6
    preds = [json.loads(x) for x in (out / "predictions/dev_after.jsonl").read_text().splitlines()]
    assert len(preds) == 3 and all(p["meta"]["parse_status"] == "ok" for p in preds)
    _same_prompt_as_extract(out, "re")
    # the saved prompt drives `llmie extract --prompt DIR` on the same server
    inp = tmp_path / "in.txt"
    inp.write_text("Anna Berg works for Volvo in Gothenburg.\n", encoding="utf-8")
    r = _cli("extract", "--task", "re", "--labels", ",".join(res["labels"]), "--in", str(inp),
             "--out", str(tmp_path / "x.jsonl"), "--backend", "openai", "--model", "usersmol",
             "--api-base", user_server, "--prompt", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((tmp_path / "x.jsonl").read_text().splitlines()[0])
    assert doc["meta"]["template"] == load_name(out / "template.yaml") and doc["meta"]["parse_status"] == "ok"


def load_name(path: Path) -> str:
    from llmie.massie.prompt import load_template

    return load_template(str(path)).name


def test_dry_run_counts_calls_without_a_server(data_dir):
    r = _cli("optimize", "--preset", "smoke", "--dry-run", timeout=120)
    assert r.returncode == 0, r.stderr
    est = json.loads(r.stdout)["lm_calls_max"]
    # smoke: 3 candidate sets -> 1 bootstrapped set over 8 train docs; 3 trials x 5 dev; default 5;
    # our dev before/after 2 x 5; 1 batch per document (3 UNER labels)
    assert est["task"] == {"bootstrap_max": 8, "default_program": 5, "trials": 15, "dev_before_after_and_test": 10,
                           "total_max": 38}
    assert est["prompt"]["total_max"] == 3
    assert "at most 38 task-model calls" in r.stderr
    # paper defaults: K=3, m=12, minibatch 25, 50 trials, full eval every 10 trials
    r = _cli("optimize", "--dry-run", timeout=120)
    est = json.loads(r.stdout)["lm_calls_max"]
    assert est["settings"]["num_trials"] == 50 and est["settings"]["minibatch_size"] == 25
    assert est["task"]["trials"] == 50 * 25 + (50 // 10 + 1) * 50


def test_max_tokens_reaches_the_config_and_zero_is_refused(data_dir):
    r = _cli("optimize", "--preset", "smoke", "--max-tokens", "0", "--dry-run", timeout=120)
    assert r.returncode != 0 and "--max-tokens 0: must be at least 1" in r.stderr
    r = _cli("optimize", "--preset", "smoke", "--max-tokens", "64", "--dry-run", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["settings"]["max_tokens"] == 64


def test_explicit_settings_win_over_the_preset():
    from llmie.optimize import OptimizeConfig

    cfg = OptimizeConfig(preset="smoke", n_train=20, max_tokens=64).apply_preset()
    assert cfg.n_train == 20 and cfg.max_tokens == 64   # given: kept
    assert cfg.n_dev == 5 and cfg.trials == 3            # left at the defaults: the preset's
    assert OptimizeConfig(preset="mlight").apply_preset().dev_caps == (100, 30)


def test_estimate_light_mode_and_label_batches():
    from llmie.optimize import OptimizeConfig, estimate_calls

    est = estimate_calls(OptimizeConfig(auto="light"), n_train=50, n_dev=50, n_test=0, n_batches=2)
    assert est["settings"]["num_trials"] == 10 and est["settings"]["num_instruct"] == 3
    assert est["task"]["trials"] == 10 * 50 * 2  # valset <= 50: no minibatching in DSPy's light mode


def test_metric_scores_parse_failure_zero_and_partial_credit():
    import dspy

    from llmie.optimize.program import LF1Metric

    m = LF1Metric("ner")
    gold = dspy.Example(answer={"PER": ["Ada Lovelace"], "LOC": []})
    assert m(gold, dspy.Prediction(answer={"PER": ["Ada Lovelace"]}, parse_failures=0)) == 1.0
    assert 0 < m(gold, dspy.Prediction(answer={"PER": ["Ada Lovelac"]}, parse_failures=0)) < 1
    assert m(gold, dspy.Prediction(answer={"PER": ["Ada Lovelace"]}, parse_failures=1)) == 0.0
    assert m(gold, None) == 0.0
    assert m.calls == 4 and m.scored_predictions == 2


def test_degenerate_proposals_are_recognised():
    from llmie.optimize.program import degenerate_instruction

    assert degenerate_instruction("{proposed_instruction}")
    assert degenerate_instruction('{"PER": ["x"]}')
    assert degenerate_instruction("Extract.")
    assert degenerate_instruction("Extract all person, organisation and place names from the text.") is None
    # the kept instruction of a recorded light run (README): the default plus a looping continuation
    looped = ("Extract the named entities of the given types from the text. Copy every entity exactly as it is "
              "written in the text. " + "the list of instructions is expected to contain exactly 5 items; " * 4)
    assert "repeats a clause" in degenerate_instruction(looped)
    assert degenerate_instruction("Use `PROPOSED_INSTRUCTION` to label persons in the text.")


EE_DOCS = [
    ("Rebels attacked Kabul on Monday.", "attacked", "Attack", [("Attacker", "Rebels"), ("Place", "Kabul")]),
    ("Maria married Tom in Lisbon.", "married", "Marry", [("Person", "Maria"), ("Person", "Tom"), ("Place", "Lisbon")]),
    ("Troops bombed the bridge near Mosul.", "bombed", "Attack", [("Attacker", "Troops"), ("Place", "Mosul")]),
    ("Ana and Luis married last May.", "married", "Marry", [("Person", "Ana"), ("Person", "Luis")]),
    ("Gunmen attacked a bus in Lagos.", "attacked", "Attack", [("Attacker", "Gunmen"), ("Place", "Lagos")]),
    ("Kim married Lee in Seoul.", "married", "Marry", [("Person", "Kim"), ("Person", "Lee"), ("Place", "Seoul")]),
    ("Militants shelled Aleppo overnight.", "shelled", "Attack", [("Attacker", "Militants"), ("Place", "Aleppo")]),
    ("Priya married Arjun in Delhi.", "married", "Marry", [("Person", "Priya"), ("Person", "Arjun"), ("Place", "Delhi")]),
]


def _ee_file(path: Path) -> Path:
    """A small hand-made ACE-style EE file in llmie JSONL (events point at spans by index)."""
    lines = []
    for i, (text, trig, etype, args) in enumerate(EE_DOCS):
        spans, arguments = [], []
        for label, s in [("trigger", trig)] + [(r, a) for r, a in args]:
            st = text.index(s)
            spans.append({"start": st, "end": st + len(s), "label": label, "text": s})
        arguments = [(r, k + 1) for k, (r, _) in enumerate(args)]
        lines.append(json.dumps({"id": f"ee{i}", "text": text, "lang": "eng", "spans": spans,
                                 "events": [{"trigger": 0, "type": etype, "arguments": arguments}]}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_ee_answers_round_trip_and_score():
    """EE gold answers, the adapter's parse and the LF1 metric agree on the event structure."""
    import dspy

    from llmie.io import read_documents
    from llmie.optimize.program import LF1Metric, answer_items, items_to_answer
    from llmie.massie.parse import parse_answer
    from llmie.optimize.run import gold_answer

    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"ee_{os.getpid()}.jsonl"
    docs = list(read_documents(_ee_file(tmp)))
    gold = gold_answer(docs[1], "ee", ["Attack", "Marry"])
    assert gold == {"Attack": [], "Marry": [{"trigger": "married", "arguments": [
        {"role": "Person", "argument": "Maria"}, {"role": "Person", "argument": "Tom"},
        {"role": "Place", "argument": "Lisbon"}]}]}
    p = parse_answer(json.dumps(gold), "ee", ["Attack", "Marry"])
    assert p.status == "ok"
    assert items_to_answer("ee", p.items, ["Attack", "Marry"]) == gold
    m = LF1Metric("ee")
    g = dspy.Example(answer=gold)
    assert m(g, dspy.Prediction(answer=gold, parse_failures=0)) == 1.0
    wrong_place = json.loads(json.dumps(gold))
    wrong_place["Marry"][0]["arguments"][2]["argument"] = "Porto"
    assert 0 < m(g, dspy.Prediction(answer=wrong_place, parse_failures=0)) < 1
    assert answer_items("ee", {"Marry": [{"arguments": []}]}) is None  # no trigger: invalid structure
    # predictions are written grounded, as `llmie extract` writes them
    from llmie.optimize.run import grounded

    ex = dspy.Example(id="ee1", text=docs[1].text, lang="eng")
    doc = grounded(ex, gold, "ee")
    (ev,) = doc.events
    assert ev.type == "Marry" and doc.spans[ev.trigger].text == "married"
    assert [(r, doc.spans[i].text) for r, i in ev.arguments] == [("Person", "Maria"), ("Person", "Tom"),
                                                                ("Place", "Lisbon")]
    assert grounded(ex, {"Marry": ["married"]}, "ee").meta["parse_status"] == "invalid"
    tmp.unlink()


def test_ee_dry_run_reads_event_types_and_roles(tmp_path):
    f = _ee_file(tmp_path / "ee.jsonl")
    r = _cli("optimize", "--task", "ee", "--train", str(f), "--preset", "smoke", "--n-train", "5", "--n-dev", "3",
             "--dry-run", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    est = json.loads(r.stdout)["lm_calls_max"]
    assert est["task"]["default_program"] == 3  # one label batch (2 event types) per dev document


@pytest.mark.slow
def test_ee_smoke_against_a_user_started_server(user_server, tmp_path):
    out = tmp_path / "opt_ee"
    f = _ee_file(tmp_path / "ee.jsonl")
    r = _cli("optimize", "--task", "ee", "--train", str(f), "--preset", "smoke", "--n-train", "3", "--n-dev", "3",
             "--trials", "2", "--max-tokens", "96", "--api-base", user_server, "--model-name", "usersmol", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "ee" and sorted(res["labels"]) == ["Attack", "Marry"]
    assert res["parse_failures"] == 0
    assert res["metric"]["scored_predictions"] > 0
    preds = [json.loads(x) for x in (out / "predictions/dev_after.jsonl").read_text().splitlines()]
    assert len(preds) == 3 and all(p["meta"]["parse_status"] == "ok" for p in preds)


def test_keep_rule_refuses_lf1_gain_bought_with_exact_f1():
    from llmie.optimize.run import keep_rule

    before = {"lf1": 3.1, "f1": 7.4, "lf1_labelled": 20.0}
    ok, why = keep_rule(before, {"lf1": 80.0, "f1": 0.0, "lf1_labelled": 0.0})  # the measured smoke case: answers nothing
    assert not ok and "exact F1 fell" in why
    ok, why = keep_rule(before, {"lf1": 50.0, "f1": 9.0, "lf1_labelled": 15.0})
    assert not ok and "labelled-sample LF1 fell" in why
    assert not keep_rule(before, {"lf1": 3.1, "f1": 9.0, "lf1_labelled": 25.0})[0]  # no LF1 gain
    assert keep_rule(before, {"lf1": 10.0, "f1": 7.4, "lf1_labelled": 20.0})[0]


def test_split_scores_labelled_lf1_and_false_answer_rate():
    from llmie.metrics.lf1 import score_items
    from llmie.optimize.run import split_scores

    per = ("PER", ("ana",))  # (route, words), the lf1 Item shape
    rows = [("en", True, True, score_items([per], [per])),     # labelled, right
            ("en", True, False, score_items([per], [])),       # labelled, missed
            ("en", False, True, score_items([], [per])),       # empty gold, false answer
            ("en", False, False, score_items([], []))]         # empty gold, silent: 100 in LF1
    s = split_scores(rows)
    assert s["n_labelled"] == 2 and s["n_empty"] == 2
    assert s["lf1_labelled"] == 50.0
    assert s["false_answer_rate"] == 50.0
    assert s["f1"] == 50.0 and s["lf1"] == 50.0  # micro exact F1 (1 tp, 2 pred, 2 gold); LF1 = mean of 100,0,0,100
    empty_only = split_scores(rows[3:])
    assert empty_only["lf1_labelled"] is None and empty_only["false_answer_rate"] == 0.0


def test_mlight_caps_per_language_deterministic_and_disjoint(data_dir, monkeypatch):
    """M-LIGHT: dev and test capped per language (empty, labelled), same sample for the same seed, no overlap."""
    from llmie.optimize.run import OptimizeConfig, split_data

    monkeypatch.setenv("LLMIE_DATA_DIR", str(data_dir))
    cfg = OptimizeConfig(task="ner", langs=["eng", "hau"], n_train=10, n_test=1, preset="balanced").apply_preset()
    assert cfg.dev_caps == (30, 30)
    cfg.dev_caps = (6, 4)
    train, dev, test, info = split_data(cfg)
    for part in (dev, test):
        for lang in {d.lang for d in part}:
            assert sum(d.lang == lang and not d.spans for d in part) == 6
            assert sum(d.lang == lang and bool(d.spans) for d in part) == 4
    assert len({d.lang for d in dev}) == 2
    ids = [d.id for d in train + dev + test]
    assert len(ids) == len(set(ids))
    assert info["mix"]["dev"] == {f"{lang}:{k}": n for lang in sorted({d.lang for d in dev})
                                  for k, n in (("empty", 6), ("labelled", 4))}
    again = split_data(cfg)
    assert [d.id for d in again[1]] == [d.id for d in dev]
