"""Training recipes: YAML files of known keys, overridden by `key=value` arguments (trl's TrlParser idea)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path


def load_recipe(path: str | Path | None, overrides: list[str] | tuple[str, ...], defaults: dict) -> dict:
    """defaults <- the YAML file <- `key=value` overrides (values parsed with yaml.safe_load); unknown keys fail."""
    import yaml

    cfg = dict(defaults)
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a recipe must be a YAML mapping")
        cfg.update(data)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r}: expected key=value")
        cfg[key.strip()] = yaml.safe_load(value)
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise ValueError(f"unknown recipe keys: {', '.join(unknown)} (known: {', '.join(defaults)})")
    return cfg


def recipe_main(argv: list[str], defaults: dict, train: Callable[[dict], Path]) -> int:
    """`python -m ... [RECIPE.yaml] [key=value ...]`: log to stderr, print the output folder."""
    argv = list(argv)
    path = argv.pop(0) if argv and "=" not in argv[0] else None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    print(train(load_recipe(path, argv, defaults)))
    return 0
