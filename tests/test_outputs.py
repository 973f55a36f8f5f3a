"""Safe outputs (issue 18 part 7): one writer per --out, OS errors end a run with one line and a failed manifest.

No model is loaded: the busy and read-only cases stop in the CLI's manifest hook before any work, and the
full-disk case drives the real local engine writer (scale/engine.run_local) with a stand-in Runner.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from llmie import manifest
from llmie.io.outdir import OutDirBusy, OutDirLock, OutputError, lock_path, run_guard
from llmie.schema import Document
from llmie.scale import engine

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
HOLD = "import sys, time; from llmie.io.outdir import OutDirLock; OutDirLock(sys.argv[1]).acquire(); " \
       "print('held', flush=True); time.sleep(120)"


@pytest.fixture
def holder(tmp_path: Path):
    """A live process holding the lock of tmp_path/out.jsonl."""
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield out, proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_second_writer_refused(holder: tuple[Path, int]) -> None:
    out, pid = holder
    with pytest.raises(OutDirBusy, match=f"PID {pid}") as e:
        OutDirLock(out).acquire()
    assert str(out) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(OutDirBusy):
        with run_guard(out):
            pass
    assert json.loads(lock_path(out).read_text())["pid"] == pid  # the holder's lock is left alone


def test_second_cli_run_refused(holder: tuple[Path, int]) -> None:
    """`llmie project` into a busy --out: exit 2 and one error line at once, --out and manifest untouched."""
    out, pid = holder
    r = subprocess.run([sys.executable, "-m", "llmie.cli", "project", "--in", str(out.parent / "pairs.jsonl"),
                        "--out", str(out)], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"PID {pid}" in lines[0] and str(out) in lines[0], r.stderr
    assert not out.exists() and not manifest.manifest_path(out).exists()


def test_stale_lock_taken_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    out = tmp_path / "run"
    out.mkdir()
    lock_path(out).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    with OutDirLock(out) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        with OutDirLock(out):  # re-entrant in one process (the CLI hook and a library guard)
            pass
        assert lock.path.exists()
    assert f"stale lock {lock_path(out)} of PID {pid}" in capsys.readouterr().err
    assert not lock_path(out).exists()  # removed on exit


class FakeRunner:
    """Stands in for scale.jobs.Runner: no model, one Document per record."""

    def __init__(self, job: dict) -> None:
        self.close = lambda: None

    def __call__(self, records: list) -> list[Document]:
        return [Document(id=r.id, text=r.text, meta={"status": "ok"}) for r in records]


def _ids(path: Path) -> list[str]:
    return [json.loads(ln)["id"] for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def test_full_disk_fails_cleanly_then_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llmie.io.jsonl as jsonl

    monkeypatch.setattr(engine, "Runner", FakeRunner)
    records = [Document(id=f"d{i}", text=f"text {i}") for i in range(20)]
    out = tmp_path / "run"
    pred = out / "predictions.jsonl"
    argv = ["llmie", "project", "--out", str(out)]
    written = {"n": 0}
    real_open = open

    class FullDisk:  # a file whose write() fails after 7 lines, leaving half a line (as a full disk can)
        def __init__(self, f) -> None:
            self.f = f

        def write(self, s: str) -> int:
            if written["n"] >= 7:
                self.f.write(s[: len(s) // 2])
                self.f.flush()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written["n"] += 1
            return self.f.write(s)

        def __getattr__(self, name: str):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *a) -> None:
            self.f.close()

    monkeypatch.setattr(jsonl, "open", lambda *a, **k: FullDisk(real_open(*a, **k)), raising=False)
    run = manifest.start(out, argv, "project")
    assert lock_path(out).exists()
    with pytest.raises(OutputError) as e:
        try:
            with run_guard(out):  # re-entrant: the CLI hook already holds the lock
                engine.run_local({"kind": "project"}, records, pred, chunk=3, resume=True)
        except OutputError:
            run.finish()  # what the CLI context does on close, with the error in flight
            raise
    msg = str(e.value)
    assert "\n" not in msg and str(pred) in msg and "No space left on device" in msg and "ENOSPC" in msg
    man = json.loads(manifest.manifest_path(out).read_text())
    assert man["status"] == "failed" and man["exit_code"] == 2 and "No space left" in man["error"]
    assert not lock_path(out).exists()

    monkeypatch.setattr(jsonl, "open", real_open, raising=False)  # space again: the rerun resumes
    run = manifest.start(out, argv, "project")
    with run_guard(out):
        stats = engine.run_local({"kind": "project"}, records, pred, chunk=3, resume=True)
    run.finish()
    assert stats["skipped_done"] == 7
    ids = _ids(pred)
    assert ids == [r.id for r in records]  # 0 lost, 0 duplicated, in order
    man = json.loads(manifest.manifest_path(out).read_text())
    assert man["status"] == "ok" and man["previous_runs"][-1]["status"] == "failed"


def test_manifest_on_a_full_disk_never_masks_the_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even the temp file for the failed manifest cannot be made: overwrite in place, and the error stays."""
    import llmie.io.atomic as atomic

    out = tmp_path / "run"
    manifest.start(out, ["llmie", "eval", "--out", str(out)], "eval")

    def no_space(p: Path) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(p.parent))

    monkeypatch.setattr(atomic, "_tmp_for", no_space)
    with pytest.raises(OutputError, match="No space left"):
        with run_guard(out):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(out / "predictions" / "a.jsonl"))
    man = json.loads(manifest.manifest_path(out).read_text())
    assert man["status"] == "failed" and "a.jsonl" in man["error"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_out(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="Permission denied") as e:
            with run_guard(ro / "out.jsonl"):
                pass
        assert str(ro) in str(e.value) and "\n" not in str(e.value)
        r = subprocess.run([sys.executable, "-m", "llmie.cli", "project", "--in", str(tmp_path / "x.jsonl"),
                            "--out", str(ro / "out.jsonl")], cwd=REPO, env=ENV, capture_output=True, text=True,
                           timeout=60)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "Permission denied" in lines[0] and str(ro) in lines[0]
    finally:
        ro.chmod(0o700)


def test_read_only_filesystem_injected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """EROFS (also what the chmod test checks where permission bits bite): one line, exit 2, before any work."""
    out = tmp_path / "run"
    real_open = os.open

    def ro_open(path, flags, *a, **k):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", ro_open)
    with pytest.raises(OutputError, match="Read-only file system") as e:
        with run_guard(out):
            pass
    assert str(lock_path(out)) in str(e.value) and "EROFS" in str(e.value)
    with pytest.raises(SystemExit) as ex:
        manifest.start_from_argv(["llmie", "eval", "--bench", "exp", "--out", str(out)], "eval")
    assert ex.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot write") and str(out) in err[0]


def test_cli_full_disk_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    """`llmie project` (local loop, stand-in projector) on a full disk, run through the entry-point wrapper
    the CLI adds (`with one_line_errors(): app()`): one error line naming the file, exit 2, manifest failed."""
    import llmie.cli as cli
    import llmie.io.jsonl as jsonl
    from llmie.io.outdir import one_line_errors

    src = tmp_path / "pairs.jsonl"
    src.write_text("".join(json.dumps({"id": f"p{i}", "src_text": "Ana", "tgt_text": "Ana", "src_spans": []}) + "\n"
                           for i in range(4)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    import llmie.projection.project as project

    monkeypatch.setattr(project, "load_projector", lambda *a, **k: lambda pairs: [
        Document(id=p.id, text=p.tgt_text, meta={"status": "ok"}) for p in pairs])
    real_open = open

    def full(path, mode="r", *a, **k):
        if "a" in mode:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(jsonl, "open", full, raising=False)
    argv = ["llmie", "project", "--in", str(src), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as ex:
        with one_line_errors():
            cli.app(argv[1:])
    assert ex.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot write {out}: No space left on device [ENOSPC]; rerun the same command to resume"]
    man = json.loads(manifest.manifest_path(out).read_text())
    assert man["status"] == "failed" and str(out) in man["error"] and not lock_path(out).exists()
