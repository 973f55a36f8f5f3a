"""Reliability (issue 11): atomic writes, resume after SIGKILL, run manifests, servers stopped on signals.

The kill-and-resume test runs the real `llmie eval --bench exp` (embedded encoder, a few pairs) as a
subprocess, SIGKILLs it after its first prediction file is complete, reruns it with the same --out,
and checks that no finished record was lost or duplicated and that scores equal an uninterrupted run's.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from llmie.io.atomic import atomic_write_json, resume_jsonl, write_jsonl_atomic
from llmie.schema import Document

REPO = Path(__file__).resolve().parents[1]
LLMIE = [sys.executable, "-m", "llmie.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_atomic_write_leaves_old_or_new(tmp_path: Path) -> None:
    p = tmp_path / "results.json"
    atomic_write_json({"v": 1}, p)
    atomic_write_json({"v": 2}, p)
    assert json.loads(p.read_text()) == {"v": 2}
    assert [x.name for x in tmp_path.iterdir()] == ["results.json"]  # no temp file left behind
    assert oct(p.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


def test_resume_drops_torn_tail_and_duplicates(tmp_path: Path) -> None:
    p = tmp_path / "pred.jsonl"
    write_jsonl_atomic([Document(id=str(i), text=f"t{i}") for i in range(3)], p)
    with open(p, "a", encoding="utf-8") as f:  # a duplicate, then a line torn by SIGKILL (no newline)
        f.write(json.dumps({"id": "1", "text": "t1"}) + "\n" + '{"id": "3", "te')
    done = resume_jsonl(p)
    assert sorted(done) == ["0", "1", "2"]
    assert _ids(p) == ["0", "1", "2"]  # rewritten: appending now cannot glue to the torn line
    assert p.read_text().endswith("\n")


def _wait_for(pred: callable, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        if proc is not None and proc.poll() is not None:
            return pred()
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_sigkill_eval_then_resume(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "run"
    args = [*LLMIE, "eval", "--bench", "exp", "--pairs", "en-de", "--limit", "8", "--out", str(out)]
    proc = subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    from llmie.bench.exp import discover

    keys = [k for k, _ in discover(data_dir / "exp", ["en-de"])]
    assert len(keys) >= 2
    first = out / "predictions" / f"{keys[0]}.jsonl"
    try:
        ok = _wait_for(lambda: first.exists() and len(_ids(first)) >= 8, 240, proc)
        assert ok, proc.stdout.read().decode(errors="replace")[-2000:] if proc.poll() is not None else "timeout"
        os.killpg(proc.pid, signal.SIGKILL)  # mid-way: the other files are not done
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "results.json").exists()
    before = {str(f.relative_to(out)): _ids(f) for f in (out / "predictions").rglob("*.jsonl")}
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "running" and man["end"] is None  # a killed run says so
    with open(first, "a", encoding="utf-8") as f:
        f.write('{"id": "torn", "text": "half a li')  # what a kill inside write() leaves

    r = subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "results.json").read_text())
    assert list(res["files"]) == keys
    for f in (out / "predictions").rglob("*.jsonl"):
        ids = _ids(f)
        key = str(f.relative_to(out))
        assert len(ids) == len(set(ids)) == 8, key           # nothing duplicated, nothing missing
        assert before.get(key, []) == ids[:len(before.get(key, []))], key  # finished records kept, in order
    assert all(e["n"] == 8 for e in res["files"].values())
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "ok" and man["exit_code"] == 0 and man["end"]
    assert man["previous_runs"][-1]["status"] == "running"  # the killed invocation is kept as history
    assert man["argv"][1:] == args[3:] and man["model"]["spec"] == "embedded"
    assert man["libraries"]["torch"] and "transformers" in man["libraries"]
    assert man["method"] is None and man.get("bench") == "exp" and man["git"] is None or man["git"]["commit"]
    print(f"\nkill-and-resume: killed after {sum(map(len, before.values()))} finished records in "
          f"{len(before)} file(s); rerun: {len(keys)} files x 8 records, 0 lost, 0 duplicated")


SERVER = textwrap.dedent('''
    import http.server, sys
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
''')

PARENT = textwrap.dedent('''
    import signal, sys, time
    # as started from a terminal: a runner under `nohup` hands down an ignored SIGHUP, which llmie keeps ignored
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    from llmie.backends.serve import free_port, launch
    port = free_port()
    h = launch([sys.executable, "-c", SERVER, str(port)], "127.0.0.1", port, timeout=60)
    print(h.pid, flush=True)
    time.sleep(600)
''')


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_server_stopped_when_llmie_gets_a_signal(sig: int) -> None:
    """A real (small) HTTP server started through llmie's launcher, in its own session: when the llmie
    process gets SIGTERM/SIGHUP, the server's PID must be gone too (the default action would orphan it)."""
    code = f"SERVER = {SERVER!r}\n" + PARENT
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip().isdigit(), proc.stderr.read()
        server_pid = int(line)
        os.kill(server_pid, 0)  # alive
        proc.send_signal(sig)
        proc.wait(30)
        from llmie.backends.serve import pid_alive

        assert _wait_for(lambda: not pid_alive(server_pid), 20), f"server {server_pid} still running"
        assert proc.returncode == 128 + sig
    finally:
        if proc.poll() is None:
            proc.kill()


def test_server_refuses_other_hosts() -> None:
    from llmie.backends.serve import launch, start_server

    for host in ("0.0.0.0", "192.168.1.5", "::"):
        with pytest.raises(ValueError, match="refusing to serve"):
            launch([sys.executable, "-c", "pass"], host, 1)
        with pytest.raises(ValueError, match="refusing to serve"):
            start_server("embedded", host=host)


@pytest.mark.slow
def test_project_resumes_and_fails_bad_lines_per_record(tmp_path: Path, data_dir: Path) -> None:
    """`llmie project` with the same --out after a killed run (finished records + a torn line left behind):
    finished records are kept, not redone; bad input lines each get a failed record; ids stay unique."""
    src = sorted((data_dir / "exp").rglob("en-de.test.jsonl"))[0]
    lines = [ln for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip()][:6]
    bad = ['{"id": "bad-json", "src_text": "x', json.dumps({"id": "bad-spans", "src_text": "Ana", "tgt_text": "Ana",
                                                            "src_spans": [{"start": 0, "end": 9, "label": "P",
                                                                           "text": "Ana"}]}),
           lines[0], "\xff"]
    inp = tmp_path / "pairs.jsonl"
    inp.write_bytes(("\n".join(lines[:3] + bad[:3]) + "\n").encode() + b"\xff\xfe\n" +
                    ("\n".join(lines[3:]) + "\n").encode())
    out = tmp_path / "out.jsonl"
    done = [json.loads(ln)["id"] for ln in lines[:2]]
    finished = [{"id": i, "text": "kept from the killed run", "meta": {"status": "ok"}} for i in done]
    out.write_text("".join(json.dumps(r) + "\n" for r in finished) + '{"id": "torn", "te', encoding="utf-8")
    r = subprocess.run([*LLMIE, "project", "--in", str(inp), "--out", str(out), "--chunk", "2"], cwd=REPO,
                       env=ENV, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    recs = [json.loads(ln) for ln in out.read_text(encoding="utf-8").splitlines()]
    ids = [d["id"] for d in recs]
    assert len(ids) == len(set(ids)) == 10 == summary["n"], ids   # 6 pairs + 4 bad lines, each once
    assert summary["resumed"] == 2 and recs[:2] == [{**f, "lang": None, "spans": [], "relations": [], "events": []}
                                                   for f in finished]  # kept as they were, not redone
    failed = {d["id"]: d["meta"]["reason"] for d in recs if d["meta"]["status"] == "failed"}
    assert "invalid JSON" in failed["line-4"] and "invalid UTF-8" in failed["line-7"]
    assert "past the end" in failed["bad-spans"] and "duplicate id" in failed["line-6"]
    assert summary["bad_input"] == 4
    man = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert man["command"] == "project" and man["status"] == "ok"
