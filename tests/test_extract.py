"""MASSIE extraction end to end on the real vLLM engine (embedded SmolLM2): all five tasks, cache, bad input."""
from __future__ import annotations

import json

import pytest

from llmie.massie import extract
from llmie.schema import Label, Schema

TEXTS = ["Maria Okafor joined Shell in Lagos in 2019.", "The army attacked the town on Monday and two people died."]
SCHEMAS = {
    "ner": Schema(task="ner", labels=[Label(name="PER"), Label(name="ORG"), Label(name="LOC")]),
    "sf": Schema(task="sf", labels=[Label(name="date"), Label(name="place_name")]),
    "ed": Schema(task="ed", labels=[Label(name="Attack"), Label(name="Die")]),
    "re": Schema(task="re", labels=[Label(name="employer"), Label(name="located_in")]),
    "ee": Schema(task="ee", labels=[Label(name="Attack", roles=["attacker", "target", "time"])]),
}


@pytest.fixture(scope="module")
def vllm_backend(tmp_path_factory):
    from llmie.backends import get_backend

    be = get_backend("vllm", "embedded", cache=tmp_path_factory.mktemp("cache") / "responses.sqlite")
    yield be
    be.close()


@pytest.mark.parametrize("task", list(SCHEMAS))
def test_constrained_output_parses_for_every_task(vllm_backend, task):
    docs = extract(TEXTS, SCHEMAS[task], backend=vllm_backend)
    assert len(docs) == 2
    for d in docs:
        assert d.meta["parse_status"] == "ok", d.meta
        assert d.meta["counts"]["invalid"] == 0 and d.meta["counts"]["errors"] == 0
        assert set(d.meta["finish_reasons"]) == {"stop"}
        for s in d.spans:
            assert s.start is None or d.text[s.start:s.end] == s.text
        assert len(d.meta["alignment_status"]) == len(d.spans)


def test_rerun_makes_zero_model_calls(vllm_backend):
    extract(TEXTS, SCHEMAS["ner"], backend=vllm_backend)
    calls = vllm_backend.calls
    again = extract(TEXTS, SCHEMAS["ner"], backend=vllm_backend)
    assert vllm_backend.calls == calls and again[0].spans == extract(TEXTS, SCHEMAS["ner"], backend=vllm_backend)[0].spans


def test_bad_inputs_each_get_a_result(vllm_backend):
    long_text = ("Ngozi Adichie visited Accra. " * 700).strip()  # ~20k characters: windowed, not truncated
    schema = Schema(task="ner", labels=[Label(name="Person name"), Label(name="Ørgänisation 組織")])
    docs = extract(["", long_text, "Short one."], schema, backend=vllm_backend)
    assert docs[0].meta["parse_status"] == "empty" and docs[0].spans == []
    assert docs[1].meta["counts"]["requests"] >= 10  # one request per window
    assert docs[2].meta["parse_status"] in ("ok", "invalid")
    for s in docs[1].spans:
        assert s.start is None or docs[1].text[s.start:s.end] == s.text


def test_dead_server_gives_error_results_and_the_batch_continues():
    from llmie.backends import get_backend

    be = get_backend("openai", "nobody", api_base="http://127.0.0.1:9/v1", cache=False, timeout=1.0, max_retries=1)
    docs = extract(TEXTS, SCHEMAS["ner"], backend=be)
    assert [d.meta["counts"]["errors"] for d in docs] == [1, 1]
    assert all(d.meta["parse_status"] == "invalid" for d in docs)


def test_extract_cli_writes_grounded_jsonl_and_resumes(tmp_path, vllm_backend):
    import subprocess
    import sys

    from llmie.io import write_jsonl
    from llmie.schema import Document

    inp = tmp_path / "in.jsonl"
    write_jsonl([Document(id=f"d{i}", text=t) for i, t in enumerate(TEXTS)], inp)
    out = tmp_path / "out.jsonl"
    write_jsonl([Document(id="d0", text=TEXTS[0], meta={"from": "earlier run"})], out)  # d0 already done
    r = subprocess.run([sys.executable, "-m", "llmie.cli", "extract", "--task", "ner", "--labels", "PER,ORG,LOC",
                        "--in", str(inp), "--out", str(out), "--backend", "hf"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in recs] == ["d0", "d1"] and recs[0]["meta"] == {"from": "earlier run"}
    assert "alignment_status" in recs[1]["meta"]


def test_extract_cli_bad_lines_get_failed_records_and_the_run_goes_on(tmp_path):
    """Measured before: one duplicate id aborted the whole `llmie extract` run; now, as in `llmie project`,
    a duplicate id or an unreadable line gets a failed record in its place and the other documents run."""
    import subprocess
    import sys

    inp = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": "d0", "text": TEXTS[0]}), "{not json", json.dumps({"id": "d0", "text": "again"}),
             json.dumps({"id": "d1", "text": TEXTS[1]})]
    inp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    r = subprocess.run([sys.executable, "-m", "llmie.cli", "extract", "--task", "ner", "--labels", "PER,ORG,LOC",
                        "--in", str(inp), "--out", str(out), "--backend", "hf"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    recs = {x["id"]: x for x in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert list(recs) == ["d0", "line-2", "line-3", "d1"]
    assert "invalid JSON" in recs["line-2"]["meta"]["reason"] and recs["line-2"]["meta"]["status"] == "failed"
    assert "duplicate id 'd0'" in recs["line-3"]["meta"]["reason"]
    assert "alignment_status" in recs["d0"]["meta"] and "alignment_status" in recs["d1"]["meta"]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["n"] == 4 and summary["bad_input"] == 2
