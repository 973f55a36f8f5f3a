"""Persistent response cache around any backend: reruns of the same requests cost nothing.

Key: sha256 of ``json.dumps([inner.name, inner.model_id, asdict(request)], sort_keys=True)`` (fields
added later, such as ``choices``, only when set: old cache files keep their keys), where a
request's ``lora`` path is replaced by ``path@fingerprint`` (adapter_config.json + weight file sizes)
so that retraining an adapter into the same folder does not return stale answers.

Storage: one sqlite table (stdlib ``sqlite3``, WAL mode: several processes may read and write).
Default file: ``$LLMIE_RESPONSE_CACHE`` or ``llmie.models.cache_dir() / "responses.sqlite"``.
Only results that finished with ``stop`` or ``length`` are stored; errors are retried next time.
Sampled requests (temperature > 0) are cached too: a rerun returns the same sample.

Counters: ``calls`` (requests sent to the inner backend) and ``hits`` (requests answered without
the model, from the file or from an identical request earlier in the same batch).
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmie.backends.base import Backend, GenRequest, GenResult, adapter_identity

_SCHEMA = """CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model_id TEXT NOT NULL,
    request TEXT NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL
)"""


def default_cache_path() -> Path:
    from llmie.settings import response_cache

    return response_cache()


def request_key(backend_name: str, model_id: str, request: GenRequest) -> tuple[str, str]:
    """(sha256 key, canonical JSON of the keyed payload) for one request."""
    d = asdict(request)
    for f in GenRequest.OPTIONAL_KEY_FIELDS:
        if d.get(f) is None:
            d.pop(f, None)
    if d.get("lora"):
        d["lora"] = adapter_identity(d["lora"])
    payload = json.dumps([backend_name, model_id, d], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest(), payload


class CachedBackend:
    """Wraps ``inner``; same protocol. Extra attributes of ``inner`` (e.g. ``score_next_token``) pass through."""

    def __init__(self, inner: Backend, path: str | Path | None = None) -> None:
        self.inner = inner
        self.path = Path(path).expanduser() if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.calls = 0
        self.hits = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def __getattr__(self, attr: str) -> Any:  # only called for attributes not found on self
        if attr in ("inner", "_db", "_lock"):
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    # ------------------------------------------------------------------ storage

    def _lookup(self, keys: list[str]) -> dict[str, dict]:
        found: dict[str, dict] = {}
        uniq = list(dict.fromkeys(keys))
        with self._lock:
            for s in range(0, len(uniq), 500):
                chunk = uniq[s: s + 500]
                q = f"SELECT key, result FROM responses WHERE key IN ({','.join('?' * len(chunk))})"
                for k, v in self._db.execute(q, chunk):
                    try:
                        found[k] = json.loads(v)
                    except ValueError:
                        continue
        return found

    def _store(self, rows: list[tuple[str, str, GenResult]]) -> None:
        now = time.time()
        data = []
        for key, payload, res in rows:
            d = asdict(res)
            d.pop("cached", None)
            data.append((key, self.inner.name, self.inner.model_id, payload, json.dumps(d, ensure_ascii=False), now))
        if not data:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)", data)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ protocol

    def generate(self, requests: list[GenRequest], progress: bool = False) -> list[GenResult]:
        keyed = [request_key(self.inner.name, self.inner.model_id, r) for r in requests]
        found = self._lookup([k for k, _ in keyed])
        results: list[GenResult | None] = [None] * len(requests)
        todo: dict[str, list[int]] = {}  # key -> indices (identical requests are sent once)
        for i, (k, _) in enumerate(keyed):
            if k in found:
                results[i] = GenResult(**{**found[k], "cached": True})
                self.hits += 1
            else:
                todo.setdefault(k, []).append(i)
        if todo:
            first = [idx[0] for idx in todo.values()]
            self.calls += len(first)
            outs = self.inner.generate([requests[i] for i in first], progress=progress)
            to_store = []
            for (k, idx), out in zip(todo.items(), outs):
                results[idx[0]] = out
                for j in idx[1:]:  # duplicates within the batch share the answer
                    results[j] = GenResult(**{**asdict(out), "cached": out.finish_reason != "error"})
                    self.hits += out.finish_reason != "error"
                if out.finish_reason in ("stop", "length"):
                    to_store.append((k, keyed[idx[0]][1], out))
            self._store(to_store)
        return results  # type: ignore[return-value]

    def clear(self) -> None:
        """Delete this backend's (name, model_id) entries from the file."""
        with self._lock:
            self._db.execute("DELETE FROM responses WHERE backend = ? AND model_id = ?",
                             (self.inner.name, self.inner.model_id))

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            with self._lock:
                try:
                    self._db.close()
                except sqlite3.Error:
                    pass

    def __enter__(self) -> CachedBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
