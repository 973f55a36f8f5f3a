"""Safe ``--out``: one writer per output, and OS errors that end a run with one clear line.

Why: two runs appending to the same ``--out`` interleave their records (twice the lines, every id twice),
and a full disk mid-run used to print a raw ``OSError`` traceback and leave ``manifest.json`` at
``running``. So:

* :class:`OutDirLock` takes a lock file in the output folder (``<out>/.llmie.lock``; for a file output
  ``.<name>.lock`` next to it), created atomically with ``O_CREAT|O_EXCL`` and holding the PID, host and
  start time. A second writer is refused at once (:class:`OutDirBusy` names the folder and the PID); the
  lock of a process that is gone (``os.kill(pid, 0)`` raises ``ProcessLookupError``, same host) is taken
  over with a warning. The lock is removed on exit, also on exceptions; a SIGKILLed run leaves a stale one.
* :func:`output_error` turns an ``OSError`` of writing (no space, no permission, read-only, ...) into an
  :class:`OutputError` whose message is one line: the path and the reason.
* :func:`run_guard` does both around a block of library code and marks the run's ``manifest.json``
  ``failed`` with the reason (:func:`mark_failed`); writing that may itself fail on a full disk, which is
  ignored so the original error is never masked. Finished records stay on disk, so the rerun resumes.

Known limit: two processes taking over the same stale lock in the same instant can both win (the window
is one unlink + create); the check after writing catches most of it.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FILE_OUTPUT_SUFFIXES = (".jsonl", ".json", ".html", ".txt", ".tsv", ".csv")
# errors of writing results; others (a refused connection is also an OSError) keep their own meaning
OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                           errno.EIO})
_HELD: dict[Path, int] = {}  # lock files this process holds -> nesting depth (re-entrant in one process)


class OutDirBusy(RuntimeError):
    """Another live process writes into this ``--out``."""

    exit_code = 2

    def __init__(self, out: Path, lock: Path, holder: dict[str, Any]) -> None:
        self.out, self.lock, self.holder = out, lock, holder
        pid, host = holder.get("pid", "?"), holder.get("host", "?")
        since = f" since {holder['start']}" if holder.get("start") else ""
        where = "" if host == socket.gethostname() else f" on host {host}"
        super().__init__(f"{out} is in use by another llmie run (PID {pid}{where}{since}); wait for it or use "
                         f"another --out (if no such run is alive, remove {lock})")


class OutputError(RuntimeError):
    """An OS error while writing results, as one line: the path and the reason."""

    exit_code = 2

    def __init__(self, path: str | Path, reason: str, errno_: int | None = None) -> None:
        self.path, self.reason, self.errno = str(path), reason, errno_
        name = f" [{errno.errorcode[errno_]}]" if errno_ in errno.errorcode else ""
        super().__init__(f"cannot write {path}: {reason}{name}; rerun the same command to resume")


def is_output_oserror(e: BaseException) -> bool:
    """True for the OS errors of writing results (ENOSPC, EACCES, EROFS, ...)."""
    return isinstance(e, OSError) and e.errno in OUTPUT_ERRNOS


def output_error(e: OSError, out: str | Path | None = None) -> OutputError:
    """The one-line :class:`OutputError` for ``e`` (path: ``e.filename``, else ``out``)."""
    path = e.filename if e.filename is not None else (out if out is not None else "output")
    return OutputError(path, e.strerror or str(e), e.errno)


def sidecar(out: str | Path, name: str) -> Path:
    """``<out>/<name>`` for a folder output, ``<out>.<name>`` for a file output (``x.jsonl``)."""
    p = Path(out)
    return p.with_name(f"{p.name}.{name}") if p.suffix.lower() in FILE_OUTPUT_SUFFIXES else p / name


def lock_path(out: str | Path) -> Path:
    p = Path(out)
    return p.with_name(f".{p.name}.lock") if p.suffix.lower() in FILE_OUTPUT_SUFFIXES else p / ".llmie.lock"


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists on this host and is not a zombie (another user's counts as
    alive). Used by the out-dir lock and by llmie serve's stop."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except (OSError, IndexError):
        return True


def _read_holder(lock: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(lock.read_text(encoding="utf-8"))
        return obj if isinstance(obj, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _stale(holder: dict[str, Any], lock: Path) -> bool:
    pid, host = holder.get("pid"), holder.get("host")
    if isinstance(pid, int) and host == socket.gethostname():
        # our own PID but not held: left by an earlier guard of this process that could not remove it
        return pid == os.getpid() or not pid_alive(pid)
    if not holder:  # empty/torn: a writer between create and write, or one killed right there
        try:
            return time.time() - lock.stat().st_mtime > 30
        except OSError:
            return False
    return False  # another host: cannot tell, refuse


class OutDirLock:
    """The lock file of one ``--out``; re-entrant within one process. Use as a context manager."""

    def __init__(self, out: str | Path, argv: list[str] | None = None) -> None:
        self.out = Path(out)
        self.path = lock_path(self.out)
        self.argv = argv
        self.held = False

    def acquire(self) -> OutDirLock:
        key = self.path.absolute()
        if _HELD.get(key):
            _HELD[key] += 1
            self.held = True
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "argv": self.argv}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_holder(self.path)
                if holder is None:
                    continue  # released meanwhile: try again
                if not _stale(holder, self.path):
                    raise OutDirBusy(self.out, self.path, holder) from None
                if holder.get("pid") != os.getpid():
                    print(f"warning: taking over the stale lock {self.path} of PID {holder.get('pid', '?')} "
                          f"(no such process)", file=sys.stderr)
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            try:
                os.write(fd, (json.dumps(me) + "\n").encode("utf-8"))
                os.fsync(fd)
            except OSError:
                os.close(fd)
                self.path.unlink(missing_ok=True)
                raise
            os.close(fd)
            holder = _read_holder(self.path)
            if holder and holder.get("pid") != me["pid"]:  # lost a takeover race
                raise OutDirBusy(self.out, self.path, holder)
            _HELD[key] = 1
            self.held = True
            return self
        raise OutDirBusy(self.out, self.path, _read_holder(self.path) or {})

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        key = self.path.absolute()
        _HELD[key] -= 1
        if _HELD[key] > 0:
            return
        del _HELD[key]
        try:
            holder = _read_holder(self.path)
            if holder is not None and holder.get("pid") in (os.getpid(), None):
                self.path.unlink()
        except OSError:
            pass

    def __enter__(self) -> OutDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def write_small_file(path: Path, text: str) -> bool:
    """Best effort for a small status file on a disk that may be full: atomic replace, else overwrite in
    place (the old file's blocks are already allocated). False if neither worked."""
    from llmie.io.atomic import atomic_write_text

    try:
        atomic_write_text(path, text)
        return True
    except OSError:
        pass
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return False
    try:
        data = text.encode("utf-8")
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def mark_failed(manifest: Path, reason: str, exit_code: int = 2) -> bool:
    """Set an existing ``manifest.json`` to status ``failed`` with ``error``; never raises."""
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    data.update(status="failed", exit_code=exit_code, error=reason,
                end=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return write_small_file(manifest, json.dumps(data, ensure_ascii=False, indent=2) + "\n")


@contextmanager
def run_guard(out: str | Path, *, argv: list[str] | None = None, lock: bool = True) -> Iterator[OutDirLock]:
    """Hold the ``--out`` lock for the block; an OS error of writing becomes an :class:`OutputError`
    and the manifest of ``out`` (if there is one) says ``failed`` with the reason."""
    guard = OutDirLock(out, argv)
    if lock:
        try:
            guard.acquire()
        except OSError as e:
            raise output_error(e, out) from e
    try:
        yield guard
    except OSError as e:
        if not is_output_oserror(e):
            raise
        err = output_error(e, out)
        mark_failed(sidecar(out, "manifest.json"), str(err))
        raise err from e
    finally:
        guard.release()


@contextmanager
def one_line_errors(exit_code: int = 2) -> Iterator[None]:
    """For the CLI entry point: a busy ``--out`` or an OS error of writing ends the process with one
    ``error:`` line on stderr and ``exit_code`` instead of a traceback (the manifest is already written by
    then: the command's context closes first)."""
    try:
        yield
    except (OutDirBusy, OutputError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(exit_code) from None
    except OSError as e:
        if not is_output_oserror(e):
            raise
        print(f"error: {output_error(e)}", file=sys.stderr)
        raise SystemExit(exit_code) from None
