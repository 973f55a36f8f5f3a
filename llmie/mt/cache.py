"""Persistent translation cache: sqlite, keyed by (engine, model id, src, tgt, text).

`CachedTranslator(inner)` looks a whole batch up at once and sends only the misses (deduplicated) to the
engine. Default file: `llmie.models.cache_dir() / "mt.sqlite"` (`$LLMIE_CACHE` moves it). Counters:
`calls` = batches sent to the engine, `misses` = texts the engine translated, `hits` = texts served from
the cache. Languages are keyed by `canonical_lang` (`pt` and `por_Latn` share entries, `zh-Hant` does not).
"""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from llmie.lang import normalize_lang
from llmie.mt.base import canonical_lang, lang3, translate_nonempty, unsupported

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mt (
    engine TEXT NOT NULL, model TEXT NOT NULL, src TEXT NOT NULL, tgt TEXT NOT NULL,
    text TEXT NOT NULL, translation TEXT NOT NULL,
    PRIMARY KEY (engine, model, src, tgt, text)
) WITHOUT ROWID
"""
_CHUNK = 500  # well under sqlite's bound-parameter limit


def default_cache_path() -> Path:
    from llmie.models import cache_dir

    return cache_dir() / "mt.sqlite"


class CachedTranslator:
    """Wraps any translator; same interface. Only cache misses reach `inner.translate`."""

    def __init__(self, inner, path: str | Path | None = None):
        self.inner = inner
        self.name = inner.name
        self.model_id = str(getattr(inner, "model_id", "") or "")
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:  # e.g. a network file system: the default journal still works
            pass
        self._db.execute(_SCHEMA)
        self._db.commit()
        self._lock = threading.Lock()
        self.calls = 0
        self.hits = 0
        self.misses = 0

    def pairs(self) -> set[tuple[str, str]]:
        return self.inner.pairs()

    def supports(self, src: str, tgt: str) -> bool:
        sup = getattr(self.inner, "supports", None)
        return sup(src, tgt) if sup else (lang3(src), lang3(tgt)) in self.inner.pairs()

    def check_direction(self, src: str, tgt: str) -> tuple[str, str]:
        chk = getattr(self.inner, "check_direction", None)
        if chk:
            return chk(src, tgt)
        if not self.supports(src, tgt):
            raise unsupported(self.name, src, tgt, self.inner.pairs())
        return normalize_lang(src), normalize_lang(tgt)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> CachedTranslator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CachedTranslator({self.inner!r}, path={str(self.path)!r})"

    def _lookup(self, key: tuple[str, str, str, str], texts: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._lock:
            for i in range(0, len(texts), _CHUNK):
                part = texts[i:i + _CHUNK]
                q = ("SELECT text, translation FROM mt WHERE engine=? AND model=? AND src=? AND tgt=? "
                     f"AND text IN ({','.join('?' * len(part))})")
                found.update(self._db.execute(q, (*key, *part)).fetchall())
        return found

    def _store(self, key: tuple[str, str, str, str], pairs: list[tuple[str, str]]) -> None:
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO mt VALUES (?,?,?,?,?,?)",
                                 [(*key, t, tr) for t, tr in pairs])
            self._db.commit()

    def _translate_batch(self, texts: list[str], src: str, tgt: str) -> list[str]:
        key = (self.name, self.model_id, canonical_lang(src), canonical_lang(tgt))
        unique = list(dict.fromkeys(texts))
        found = self._lookup(key, unique)
        todo = [t for t in unique if t not in found]
        self.hits += sum(1 for t in texts if t in found)
        if todo:
            res = self.inner.translate(todo, src, tgt)
            if len(res) != len(todo):
                raise RuntimeError(f"{self.name} returned {len(res)} translations for {len(todo)} texts")
            self.calls += 1
            self.misses += len(todo)
            self._store(key, list(zip(todo, res)))
            found.update(zip(todo, res))
        return [found[t] for t in texts]

    def translate(self, texts: list[str], src: str, tgt: str) -> list[str]:
        return translate_nonempty(self, texts, src, tgt, self._translate_batch)

    def stats(self) -> dict[str, int]:
        return {"calls": self.calls, "hits": self.hits, "misses": self.misses}
