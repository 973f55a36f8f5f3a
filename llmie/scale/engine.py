"""Run a job over a corpus: `local` (this process, chunk by chunk) or `ray` (Ray Data actor pool, sharded).

Ray pipeline: records (read once by the driver with llmie's readers, so bad lines are named the same way)
-> shards of `shard_size` records -> `ray.data.from_items` -> `map_batches(ShardWorker, concurrency=workers)`:
each actor loads the model once (callable class) and writes each finished shard atomically to
`OUT.shards/shard-NNNNNN.jsonl` -> the driver merges the shards in input order into OUT.

Resumable: a shard whose file holds exactly its expected ids is skipped on rerun; a corrupt or truncated
shard (a crash mid-write cannot leave one: files are renamed into place, but disks and people can) is
redone. Actors are restarted and their shard retried when a worker process dies (`max_restarts`), and a
shard write is idempotent, so a killed worker neither loses nor duplicates records.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmie.io import write_jsonl
from llmie.io.atomic import resume_jsonl
from llmie.io.records import Record, record_id
from llmie.scale.jobs import Runner, chunks, decode, encode

log = logging.getLogger("llmie")

ENGINES = ("local", "ray")


def run_local(job: dict[str, Any], records: list[Record], out: Path, chunk: int = 256, resume: bool = True,
              progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """In-process engine: the same Runner, chunk by chunk, appended to OUT.

    ``resume``: finished records of this input already in OUT are kept and skipped (a killed run's torn
    last line and records of ids no longer in the input are dropped first); otherwise OUT starts empty."""
    t0 = time.perf_counter()
    ids = [record_id(r) for r in records]
    prev = resume_jsonl(out, set(ids).__contains__) if resume else {}
    todo = [r for r, i in zip(records, ids) if i not in prev]
    if not resume or not out.exists():
        write_jsonl([], out)
    docs_all: list = []
    if todo:  # nothing left: do not load a model
        runner = Runner(job)
        try:
            for part in chunks(todo, chunk):
                docs = runner(part)
                write_jsonl(docs, out, append=True)
                docs_all.extend(docs)
                if progress:
                    progress(len(part))
        finally:
            runner.close()
    st = _stats(docs_all, len(records), out, t0)
    ok_prev = sum(_ok(d.meta) for d in prev.values())
    return st | {"ok": st["ok"] + ok_prev, "failed": len(records) - st["ok"] - ok_prev, "engine": "local",
                 "resumed": len(prev), "skipped_done": len(prev)}


def _ok(meta: dict) -> bool:
    return meta.get("status") == "ok" or meta.get("parse_status") == "ok"


def _stats(docs: list, n: int, out: Path, t0: float) -> dict[str, Any]:
    ok = sum(_ok(d.meta) for d in docs)
    bad = sum(str(d.meta.get("reason", "")).startswith("bad input") for d in docs)
    return {"n": n, "done_now": len(docs), "ok": ok, "bad_input": bad, "seconds": round(time.perf_counter() - t0, 2),
            "out": str(out)}


def shard_dir(out: Path) -> Path:
    return out.parent / (out.name + ".shards")


def _shard_path(d: Path, i: int) -> Path:
    return d / f"shard-{i:06d}.jsonl"


def shard_ok(path: Path, ids: list[str]) -> bool:
    """A shard counts as finished only if it parses and holds exactly the expected ids in order."""
    try:
        got = [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return got == ids


class ShardWorker:
    """Ray Data callable class: one model load per actor, then one shard file per input row."""

    def __init__(self, job: dict[str, Any], shards: str) -> None:
        self.runner = Runner(job)
        self.dir = Path(shards)
        self.n_done = 0
        # Failure injection for tests only: the first actor to reach its 2nd shard SIGKILLs its own process,
        # once (this file is the marker). A real kill of a real worker process, not a mock.
        self.kill_once = job.get("kill_once")

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        sids, ns, oks = [], [], []
        for sid, payload in zip(batch["shard"], batch["records"]):
            sid = int(sid)
            records = [decode(s) for s in json.loads(payload)]
            self._maybe_die()
            docs = self.runner(records)
            final = _shard_path(self.dir, sid)
            tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            write_jsonl(docs, tmp)
            os.replace(tmp, final)  # atomic: a shard file is complete or absent
            self.n_done += 1
            sids.append(sid)
            ns.append(len(docs))
            oks.append(sum(_ok(d.meta) for d in docs))
        return {"shard": np.array(sids, dtype=np.int64), "n": np.array(ns, dtype=np.int64),
                "ok": np.array(oks, dtype=np.int64)}

    def _maybe_die(self) -> None:
        marker = self.kill_once
        if marker and self.n_done >= 1:
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)


def worker_env() -> dict[str, str]:
    """Environment of every Ray worker: one thread per actor (actors are the parallelism) + llmie settings."""
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.update({k: v for k, v in os.environ.items() if k.startswith("LLMIE_") or k in ("HF_HOME", "HF_HUB_OFFLINE")})
    return env


def connect(address: str | None, workers: int) -> bool:
    """Connect to a cluster (`auto`, `ray://host:10001`, `host:6379`) or start a local one; True if we did."""
    import ray

    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {"runtime_env": {"env_vars": worker_env()}, "log_to_driver": False,
                          "logging_level": logging.WARNING}
    if address:
        ray.init(address=address, **kw)
    else:  # a private single-node cluster, stopped again by `ray.shutdown()` at the end of the run
        ray.init(num_cpus=max(1, workers), include_dashboard=False, **kw)
    return True


def _fingerprint(job: dict[str, Any], payloads: list[str], shard_size: int) -> str:
    h = hashlib.sha256(json.dumps(job, sort_keys=True).encode())
    h.update(str(shard_size).encode())
    for p in payloads:
        h.update(p.encode())
        h.update(b"\n")
    return h.hexdigest()


def run_ray(job: dict[str, Any], records: list[Record], out: Path, shard_size: int = 256, workers: int = 2,
            address: str | None = None, merge: bool = True, progress: Callable[[int], None] | None = None,
            num_gpus: float = 0.0) -> dict[str, Any]:
    """Ray Data engine; finished shards in OUT.shards/ are skipped on rerun (same job and input only).

    `num_gpus` per actor (e.g. 0.25: four encoder actors share a GPU; 1 for a vLLM actor): Ray places the
    actors and sets their CUDA_VISIBLE_DEVICES; with 0 the actors are CPU-only."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise RuntimeError("--engine ray needs the optional extra: pip install 'llmie[scale]'") from e
    t0 = time.perf_counter()
    d = shard_dir(out)
    d.mkdir(parents=True, exist_ok=True)
    payloads = [encode(r) for r in records]
    fp = _fingerprint(job, payloads, shard_size)
    manifest = d / "_job.json"
    if manifest.exists():
        prev = json.loads(manifest.read_text(encoding="utf-8"))
        if prev.get("fingerprint") != fp:
            raise ValueError(f"{d} holds shards of a different job or input (job.json fingerprint differs); "
                             "use another --out or remove that folder")
    else:
        manifest.write_text(json.dumps({"fingerprint": fp, "job": job, "shard_size": shard_size,
                                        "n_records": len(records)}, indent=1), encoding="utf-8")
    ids = [record_id(r) for r in records]
    shards = list(range((len(records) + shard_size - 1) // shard_size))
    todo, redone = [], 0
    for i in shards:
        p = _shard_path(d, i)
        if p.exists() and shard_ok(p, ids[i * shard_size:(i + 1) * shard_size]):
            continue
        if p.exists():
            log.warning("%s is corrupt or incomplete: redoing it", p)
            redone += 1
            p.unlink()
        todo.append(i)
    started = False
    if todo:
        started = connect(address, workers)
        try:
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            ctx.print_on_execution_start = False
            items = [{"shard": i, "records": json.dumps(payloads[i * shard_size:(i + 1) * shard_size])}
                     for i in todo]
            ds = ray.data.from_items(items, override_num_blocks=len(items))
            ds = ds.map_batches(ShardWorker, fn_constructor_kwargs={"job": job, "shards": str(d)},
                                batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
                                num_gpus=num_gpus)
            # a dead actor is restarted and its shard retried: Ray Data's actor-pool default (max_restarts=-1,
            # max_task_retries=-1; passing them is deprecated in 2.60); tests/test_scale.py kills one
            for row in ds.iter_rows():
                if progress:
                    progress(int(row["n"]))
        finally:
            if started:
                ray.shutdown()
    missing = [i for i in shards if not shard_ok(_shard_path(d, i), ids[i * shard_size:(i + 1) * shard_size])]
    if missing:
        raise RuntimeError(f"{len(missing)} shards did not finish ({missing[:5]}...); rerun to resume")
    docs = []
    if merge:
        tmp = out.with_name(f".{out.name}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for i in shards:
                text = _shard_path(d, i).read_text(encoding="utf-8")
                f.write(text)
                docs.extend(json.loads(line) for line in text.splitlines() if line.strip())
        os.replace(tmp, out)
    stats = {"n": len(records), "shards": len(shards), "skipped_shards": len(shards) - len(todo),
             "redone_shards": redone, "workers": workers, "gpus_per_worker": num_gpus, "engine": "ray", "shard_dir": str(d),
             "seconds": round(time.perf_counter() - t0, 2), "out": str(out)}
    if merge:
        stats["ok"] = sum(_ok(x["meta"]) for x in docs)
        stats["failed"] = len(records) - stats["ok"]
        stats["bad_input"] = sum(str(x["meta"].get("reason", "")).startswith("bad input") for x in docs)
    return stats


def run(job: dict[str, Any], records: list[Record], out: Path, *, engine: str = "local", chunk: int = 256,
        workers: int = 2, address: str | None = None, resume: bool = True,
        progress: Callable[[int], None] | None = None, num_gpus: float = 0.0) -> dict[str, Any]:
    """The one entry of every corpus command: ``local`` (this process) or ``ray`` (actor pool, shards);
    both resume (local: ids already in OUT; ray: finished shards)."""
    if engine == "local":
        return run_local(job, records, out, chunk, resume, progress)
    if engine == "ray":
        return run_ray(job, records, out, chunk, workers, address, progress=progress, num_gpus=num_gpus)
    raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
