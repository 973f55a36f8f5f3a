"""Name -> implementation lookups (projection methods, backends, benches, scale runners).

Why: adding a method should mean adding one registry line, not editing if-chains in three modules.
Targets are lazy ``"module:attr"`` strings, so looking a name up imports only that implementation
(the CLI stays cheap to import, and optional extras are imported only when asked for).
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Entry:
    """``target``: ``"package.module:attr"``; ``kwargs``: fixed keyword arguments for that name
    (``binary-w`` = BinaryAligner with ``symmetric=True``); ``accepts``: optional keyword options the
    implementation takes (others are dropped by :meth:`Registry.options`)."""

    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    accepts: tuple[str, ...] = ()
    help: str = ""


class Registry:
    """An ordered, named set of lazy implementations of one kind ("projection method", "bench", ...)."""

    def __init__(self, kind: str, entries: dict[str, Entry | str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        for name, e in (entries or {}).items():
            self.register(name, e)

    def register(self, name: str, entry: Entry | str) -> None:
        """Add (or replace) ``name``; users can register their own implementation the same way."""
        e = Entry(entry) if isinstance(entry, str) else entry
        if ":" not in e.target:
            raise ValueError(f"{self.kind} {name!r}: target must be 'module:attr', got {e.target!r}")
        self._entries[name] = e

    def entry(self, name: str) -> Entry:
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries)}")
        return self._entries[name]

    def load(self, name: str) -> Any:
        """The implementation object (class or function) behind ``name``, imported now."""
        mod, _, attr = self.entry(name).target.partition(":")
        obj: Any = importlib.import_module(mod)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the implementation with the entry's fixed kwargs plus ``kwargs``."""
        return self.load(name)(*args, **{**self.entry(name).kwargs, **kwargs})

    def options(self, name: str, **opts: Any) -> dict[str, Any]:
        """The subset of ``opts`` that ``name`` accepts and that is set (not None)."""
        acc = self.entry(name).accepts
        return {k: v for k, v in opts.items() if k in acc and v is not None}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
