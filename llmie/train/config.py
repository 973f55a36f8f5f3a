"""One config shape for every trainer: a dataclass of documented fields, read from a YAML recipe, then
overridden from the command line as `key=value` or `--key value` / `--key=value` / `--flag` (trl's TrlParser
habits), each value typed from the dataclass field (`--learning_rate 1e-4` is a float).

Precedence: dataclass defaults < YAML < `key=value` < `--key value`. Dotted keys set a key of a mapping field
(`data.max_rows=10`). A recipe class may name a pass-through trainer config (`trainer_config = "trl:SFTConfig"`):
its fields are accepted at top level, typed against that dataclass and collected in the `trainer` mapping, so only
what a recipe sets reaches the trainer (the trainer's own defaults apply to the rest).
"""
from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import importlib
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class RecipeLoader(yaml.SafeLoader):
    """SafeLoader reading `1e-3` / `5E-5` as floats: PyYAML follows YAML 1.1, where a float needs a dot, so
    `learning_rate: 1e-3` would reach the trainer as the string '1e-3'."""


# YAML 1.2 booleans: only true/false. YAML 1.1 also reads yes/no/on/off as booleans, so `save_strategy: no`
# (a trl string choice) reached the trainer as False.
RecipeLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+][0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def parse_value(text: str) -> Any:
    """One YAML value (a file or an override) with YAML 1.2 floats; only plain data is built."""
    return yaml.load(text, Loader=RecipeLoader)  # noqa: S506  SafeLoader subclass: no Python objects


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Init field name -> resolved type (the annotations are strings under `from __future__ import annotations`)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001  an unresolvable annotation: fall back to YAML parsing for it
        hints = {}
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def _passthrough(cls: type) -> type | None:
    """The trainer config dataclass a recipe class passes through (`trainer_config = "module:Class"`), if any."""
    target = getattr(cls, "trainer_config", None)
    if not target:
        return None
    mod, _, name = target.partition(":")
    return getattr(importlib.import_module(mod), name)


def _members(tp: Any) -> tuple[list[Any], bool]:
    """(non-None members, nullable) of a type: `int | None` -> ([int], True)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        return [a for a in args if a is not type(None)], type(None) in args
    return [tp], False


def _bool(text: str, key: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE or low in _FALSE:
        return low in _TRUE
    raise ValueError(f"--{key}: expected a boolean (true/false), got {text!r}")


def convert(text: str, tp: Any, key: str, *, none_words: frozenset[str] = frozenset({"none", "null", "~"})) -> Any:
    """A command-line string as a value of type `tp`; lists, dicts and mixed unions are parsed as YAML."""
    members, nullable = _members(tp)
    if nullable and text.strip().lower() in none_words:
        return None
    if len(members) != 1:
        return parse_value(text)
    t = members[0]
    try:
        if t is bool:
            return _bool(text, key)
        if t is int:
            return int(text)
        if t is float:
            return float(text)
    except ValueError as e:
        raise ValueError(f"--{key}: expected {t.__name__}, got {text!r}") from e
    if t is str or (isinstance(t, type) and issubclass(t, enum.Enum)):
        return text
    value = parse_value(text)
    origin = typing.get_origin(t) or t
    if origin in (list, dict, tuple) and not isinstance(value, origin):
        if origin is list and not isinstance(value, (dict, list)):
            return [value]
        raise ValueError(f"--{key}: expected a YAML {origin.__name__}, got {text!r}")
    return value


class _Schema:
    """Where each key of a recipe class goes: an own field, a pass-through trainer field, or a mapping's key."""

    def __init__(self, cls: type) -> None:
        self.cls, self.own = cls, _hints(cls)
        pt = _passthrough(cls)
        self.trainer = {k: v for k, v in _hints(pt).items() if k not in self.own} if pt else {}

    def known(self) -> list[str]:
        return [k for k in self.own if not (self.trainer and k == "trainer")] + list(self.trainer)

    def type_of(self, key: str) -> Any:
        head = key.split(".", 1)[0]
        if "." in key:
            return Any
        return self.own.get(key, self.trainer.get(head, Any))

    def check(self, key: str) -> None:
        head = key.split(".", 1)[0]
        if head not in self.own and head not in self.trainer:
            self.fail(head)

    def fail(self, key: str) -> None:
        close = difflib.get_close_matches(key, self.known(), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        known = [k for k in self.known() if k not in self.trainer]
        also = f" and the fields of {self.cls.trainer_config}" if self.trainer else ""
        raise ValueError(f"unknown recipe keys: {key}{hint} (known: {', '.join(known)}{also})")

    def convert(self, key: str, text: str) -> Any:
        if "." in key:
            return parse_value(text)
        if key in self.trainer:   # trl's own "none" strings (report_to: none) stay strings
            members, _ = _members(self.trainer[key])
            words = frozenset({"null", "~"} if str in members else {"none", "null", "~"})
            return convert(text, self.trainer[key], key, none_words=words)
        return convert(text, self.own[key], key)


def parse_args(cls: type, args: Sequence[str]) -> dict[str, Any]:
    """Overrides `key=value`, `--key value`, `--key=value`, `--flag` / `--no-flag` (bools) -> {key: typed value},
    `--key` forms winning over `key=value` ones; dashes in names read as underscores."""
    schema = _Schema(cls)
    plain: dict[str, Any] = {}
    flags: dict[str, Any] = {}
    args, i = list(args), 0
    while i < len(args):
        item = args[i]
        i += 1
        if item.startswith("--"):
            key, sep, value = item[2:].partition("=")
            key = key.replace("-", "_")
            if not sep:
                members, _ = _members(schema.type_of(key))
                is_bool = members == [bool]
                if key.startswith("no_") and key not in schema.own and key not in schema.trainer \
                        and _members(schema.type_of(key[3:]))[0] == [bool]:
                    schema.check(key[3:])
                    flags[key[3:]] = False
                    continue
                schema.check(key)
                nxt = args[i] if i < len(args) else None
                if is_bool and (nxt is None or nxt.startswith("--") or "=" in nxt):
                    flags[key] = True        # a bare --flag
                    continue
                if nxt is None:
                    raise ValueError(f"--{key}: expected a value")
                value, i = nxt, i + 1
            schema.check(key)
            flags[key] = schema.convert(key, value)
            continue
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"override {item!r}: expected key=value or --key value")
        schema.check(key)
        plain[key] = schema.convert(key, value)
    return {**plain, **flags}


def _set(cfg: dict[str, Any], schema: _Schema, key: str, value: Any) -> None:
    """Put one (possibly dotted) key into the nested raw config."""
    head, _, rest = key.partition(".")
    section = "trainer" if head in schema.trainer else None
    if section:
        cfg.setdefault("trainer", {})
        target = cfg["trainer"]
    else:
        target = cfg
    if not rest:
        if section is None and head == "trainer" and isinstance(value, Mapping) and schema.trainer:
            target.setdefault("trainer", {}).update(value)
        else:
            target[head] = value
        return
    node = target.get(head)
    node = dict(node) if isinstance(node, Mapping) else {}
    target[head] = node
    *path, last = rest.split(".")
    for p in path:
        node[p] = dict(node[p]) if isinstance(node.get(p), Mapping) else {}
        node = node[p]
    node[last] = value


def build(cls: type[T], values: Mapping[str, Any]) -> T:
    """An instance of `cls` from a flat or nested mapping; pass-through trainer keys go to `trainer`."""
    schema = _Schema(cls)
    raw: dict[str, Any] = {}
    for key, value in values.items():
        if key == "trainer" and schema.trainer:
            if not isinstance(value, Mapping):
                raise ValueError("recipe key 'trainer' must be a mapping")
            for k, v in value.items():
                if k not in schema.trainer:
                    schema.fail(k)
                raw.setdefault("trainer", {})[k] = v
            continue
        schema.check(key)
        _set(raw, schema, key, value)
    for k, tp in schema.own.items():
        mapping = [m for m in _members(tp)[0] if (typing.get_origin(m) or m) is dict]
        if k in raw and mapping and raw[k] is not None and not isinstance(raw[k], Mapping):
            raise ValueError(f"recipe key {k!r} must be a mapping")
    return cls(**raw)


def coerce(cls: type[T], cfg: T | Mapping[str, Any]) -> T:
    """A trainer's input as its recipe dataclass: an instance as is, a dict (flat, as tests pass it) validated."""
    return cfg if isinstance(cfg, cls) else build(cls, cfg)


def as_dict(recipe: Any) -> dict[str, Any]:
    """The flat view the trainers index (`cfg["lr"]`): own fields, then the trainer keys set at top level."""
    out = {f.name: getattr(recipe, f.name) for f in dataclasses.fields(recipe)}
    if _passthrough(type(recipe)) is not None:
        out.update(out.pop("trainer", {}) or {})
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A recipe file: one YAML mapping (safe loading, YAML 1.2 floats)."""
    data = parse_value(Path(path).read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe must be a YAML mapping")
    return data


def load_config(cls: type[T], path: str | Path | None, args: Sequence[str] = ()) -> T:
    """defaults <- YAML file <- `key=value` <- `--key value` overrides, as an instance of `cls`."""
    schema = _Schema(cls)
    raw: dict[str, Any] = {}
    data = read_yaml(path) if path is not None else {}
    for key, value in data.items():
        schema.check(key)
        _set(raw, schema, key, value)
    for key, value in parse_args(cls, args).items():
        _set(raw, schema, key, value)
    return build(cls, raw)


def flat_loader(cls: type) -> Callable[..., dict[str, Any]]:
    """`load(path, overrides=()) -> dict`: `load_config(cls, ...)` as the flat dict view old callers index."""
    def load(path: str | Path | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
        return as_dict(load_config(cls, path, overrides))

    load.__doc__ = f"defaults <- the YAML file <- `key=value` / `--key value` overrides: {cls.__name__} as a flat dict."
    return load


def trainer_kwargs(recipe: Any, output_dir: str) -> dict[str, Any]:
    """The trainer-config keyword arguments of a recipe (only keys it set), with CPU defaults on a CPU."""
    import torch

    kw = dict(recipe.trainer)
    kw.setdefault("output_dir", output_dir)
    kw.setdefault("report_to", "none")
    if str(kw.get("bf16")).lower() == "auto":
        # bf16 autocast only where it is native (1.3x faster than fp32 with AMX): on a CPU without AVX512-BF16/AMX
        # (an AMD EPYC here) torch falls back to a reference gemm; a SmolLM2 step of recipes/massie_sft.yaml did not
        # finish in 11 minutes in bf16 and takes 103 s in fp32.
        from llmie.device import fast_dtype

        kw["bf16"] = fast_dtype(None) is torch.bfloat16
    if not torch.cuda.is_available():
        kw.setdefault("use_cpu", True)
        kw.setdefault("bf16", False)
    return kw


def recipe_main(argv: list[str], cls: type, train: Any) -> int:
    """`python -m ... [RECIPE.yaml] [key=value | --key value ...]`: log to stderr, print the output folder."""
    import logging

    argv = list(argv)
    path = argv.pop(0) if argv and "=" not in argv[0] and not argv[0].startswith("--") else None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    print(train(load_config(cls, path, argv)))
    return 0
