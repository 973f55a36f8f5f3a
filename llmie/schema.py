"""The one data model of llmie (DESIGN.md §2).

Every reader produces these objects and every method consumes them, so offsets, languages and
labels are validated once, here. Offsets are Python code-point offsets, end exclusive.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmie.lang import normalize_lang

AlignmentStatus = Literal["exact", "normalised", "fuzzy", "unaligned"]


class LlmieDataError(ValueError):
    """Bad input, with the place it came from (file, line, record id, field) in the message."""

    def __init__(self, msg: str, *, file: str | None = None, line: int | None = None,
                 record: str | None = None, field: str | None = None):
        self.file, self.line, self.record, self.field = file, line, record, field
        where = []
        if file:
            where.append(f"{file}" + (f":{line}" if line is not None else ""))
        elif line is not None:
            where.append(f"line {line}")
        if record is not None:
            where.append(f"record {record!r}")
        if field:
            where.append(f"field {field!r}")
        super().__init__((", ".join(where) + ": " if where else "") + msg)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False, frozen=False)


class Span(_Model):
    """A labelled substring; `start`/`end` may be None for a prediction that could not be grounded."""

    start: int | None = None
    end: int | None = None
    label: str
    text: str

    @model_validator(mode="after")
    def _check(self) -> "Span":
        if (self.start is None) != (self.end is None):
            raise ValueError("start and end must both be set or both be null")
        if self.start is not None and not (0 <= self.start <= self.end):  # type: ignore[operator]
            raise ValueError(f"invalid offsets start={self.start} end={self.end}")
        return self

    @property
    def grounded(self) -> bool:
        return self.start is not None


class Relation(_Model):
    head: int
    tail: int
    label: str


class Event(_Model):
    trigger: int
    type: str
    arguments: list[tuple[str, int]] = Field(default_factory=list)


class Document(_Model):
    """One text with its annotations. `meta` carries tokens/tags for sequence-labelling data."""

    id: str
    text: str
    lang: str | None = None
    spans: list[Span] = Field(default_factory=list)
    relations: list[Relation] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("lang")
    @classmethod
    def _lang(cls, v: str | None) -> str | None:
        return None if v is None else normalize_lang(v)

    @model_validator(mode="after")
    def _check_offsets(self) -> "Document":
        n = len(self.text)
        for i, s in enumerate(self.spans):
            if s.start is None:
                continue
            if s.end > n:  # type: ignore[operator]
                raise ValueError(f"spans[{i}]: end={s.end} is past the end of the text (length {n})")
            if self.text[s.start:s.end] != s.text:
                raise ValueError(f"spans[{i}]: text {s.text!r} != text[{s.start}:{s.end}] "
                                 f"{self.text[s.start:s.end]!r}")
        k = len(self.spans)
        for i, r in enumerate(self.relations):
            if not (0 <= r.head < k and 0 <= r.tail < k):
                raise ValueError(f"relations[{i}]: span index out of range (have {k} spans)")
        for i, e in enumerate(self.events):
            if not 0 <= e.trigger < k or any(not 0 <= a < k for _, a in e.arguments):
                raise ValueError(f"events[{i}]: span index out of range (have {k} spans)")
        return self

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), ensure_ascii=False)


class Label(_Model):
    """A label of a schema, with the description and examples every prompt format is compiled from."""

    name: str
    description: str = ""
    examples: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)  # event argument roles (EE)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("label name is empty")
        return v


class Schema(_Model):
    task: Literal["ner", "re", "sf", "ed", "ee", "pos", "projection"]
    labels: list[Label]

    @model_validator(mode="after")
    def _unique(self) -> "Schema":
        names = [lab.name for lab in self.labels]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate labels: {dup}")
        return self

    @classmethod
    def from_names(cls, task: str, names: list[str] | str) -> "Schema":
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        return cls(task=task, labels=[Label(name=n) for n in names])  # type: ignore[arg-type]

    @property
    def names(self) -> list[str]:
        return [lab.name for lab in self.labels]

    def digest(self) -> str:
        """Stable hash for caches and run manifests."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


class ProjectionPair(_Model):
    """A source document with spans, its translation, and (for evaluation) the gold target spans.

    `gold_tgt_spans[i]` is the projection of `src.spans[i]` (aligned by index, not sorted).
    """

    id: str
    src: Document
    tgt_text: str
    tgt_lang: str | None = None
    gold_tgt_spans: list[Span] | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("tgt_lang")
    @classmethod
    def _lang(cls, v: str | None) -> str | None:
        return None if v is None else normalize_lang(v)

    @model_validator(mode="after")
    def _check(self) -> "ProjectionPair":
        if self.gold_tgt_spans is None:
            return self
        if len(self.gold_tgt_spans) != len(self.src.spans):
            raise ValueError(f"tgt_spans has {len(self.gold_tgt_spans)} spans but src_spans has "
                             f"{len(self.src.spans)}; they are aligned by index")
        n = len(self.tgt_text)
        for i, s in enumerate(self.gold_tgt_spans):
            if s.start is None or s.end > n or self.tgt_text[s.start:s.end] != s.text:  # type: ignore[operator]
                raise ValueError(f"tgt_spans[{i}]: text {s.text!r} does not match tgt_text[{s.start}:{s.end}]")
        return self


_WS = re.compile(r"\s+")


def validation_message(err: Exception) -> str:
    """A one-line message from a pydantic ValidationError (field path + reason)."""
    errors = getattr(err, "errors", None)
    if callable(errors):
        parts = []
        for e in errors()[:3]:
            loc = ".".join(str(x) for x in e.get("loc", ()))
            parts.append(f"{loc or '<record>'}: {e.get('msg', '')}".replace("Value error, ", ""))
        return "; ".join(parts)
    return _WS.sub(" ", str(err))
