"""Training recipes: YAML files of known keys, overridden by `key=value` arguments (trl's TrlParser idea)."""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


class RecipeLoader(yaml.SafeLoader):
    """SafeLoader reading `1e-3` / `5E-5` as floats: PyYAML follows YAML 1.1, where a float needs a dot, so
    `learning_rate: 1e-3` would reach the trainer as the string '1e-3'."""


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+][0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def parse_value(text: str) -> Any:
    """One YAML value (a file or a `key=value` override) with YAML 1.2 floats; only plain data is built."""
    return yaml.load(text, Loader=RecipeLoader)  # noqa: S506  SafeLoader subclass: no Python objects


def load_recipe(path: str | Path | None, overrides: list[str] | tuple[str, ...], defaults: dict) -> dict:
    """defaults <- the YAML file <- `key=value` overrides (safe YAML, `1e-3` is a float); unknown keys fail."""
    cfg = dict(defaults)
    if path is not None:
        data = parse_value(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a recipe must be a YAML mapping")
        cfg.update(data)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r}: expected key=value")
        cfg[key.strip()] = parse_value(value)
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ValueError(f"unknown recipe keys: {', '.join(unknown)} (known: {', '.join(defaults)})")
    return cfg


UNSET = "__unset__"  # a trainer-config key the recipe did not set (the trainer's own default applies)


def trl_defaults(config_cls: type, model_defaults: dict[str, Any]) -> dict[str, Any]:
    """Known keys of a trl recipe: llmie's model/peft/data keys plus every init field of `config_cls`
    (e.g. trl's SFTConfig, DPOConfig), the latter UNSET so only what a recipe sets reaches the trainer."""
    import dataclasses

    return {**model_defaults, **{f.name: UNSET for f in dataclasses.fields(config_cls)
                                 if f.init and f.name not in model_defaults}}


def load_trl_recipe(path: str | Path | None, overrides: list[str] | tuple[str, ...],
                    defaults: dict[str, Any]) -> dict[str, Any]:
    """defaults <- YAML <- overrides; `data.k=v` overrides go into the `data:` section."""
    plain, data_over = [], {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.startswith("data."):
            data_over[key[5:].strip()] = parse_value(value)
        else:
            plain.append(item)
    cfg = load_recipe(path, plain, defaults)
    if not isinstance(cfg["data"], dict):
        raise ValueError("recipe key 'data' must be a mapping")
    cfg["data"] = {**cfg["data"], **data_over}
    return cfg


def trainer_kwargs(cfg: dict[str, Any], model_defaults: dict[str, Any], output_dir: str) -> dict[str, Any]:
    """The trainer-config keyword arguments of a recipe (only keys it set), with CPU defaults on a CPU."""
    import torch

    kw = {k: v for k, v in cfg.items() if k not in model_defaults and v != UNSET}
    kw.setdefault("output_dir", output_dir)
    kw.setdefault("report_to", "none")
    if not torch.cuda.is_available():
        kw.setdefault("use_cpu", True)
        kw.setdefault("bf16", False)
    return kw


def recipe_main(argv: list[str], defaults: dict, train: Callable[[dict], Path]) -> int:
    """`python -m ... [RECIPE.yaml] [key=value ...]`: log to stderr, print the output folder."""
    argv = list(argv)
    path = argv.pop(0) if argv and "=" not in argv[0] else None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    print(train(load_recipe(path, argv, defaults)))
    return 0
