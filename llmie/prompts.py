"""The one resolver of prompt templates and schemas (``family.name.vN`` -> a file).

Search order: ``$LLMIE_PROMPTS`` (a folder laid out like prompts/), the checkout's top-level
``prompts/`` (editable installs: edit and rerun), then the copy the wheel ships (``llmie/_prompts``, put
there at build time by setup.py). A plain file path is used as it is.

    massie.ner.v1          -> massie/ner.v1.yaml
    topro.pos.v1           -> topro/pos.v1.yaml
    projection.v1          -> projection/projection.v1.yaml
    transfusion.prompt.v1  -> transfusion/prompt.v1.jinja   (find(name, ".jinja"))
    schema("masakhaner")   -> schemas/masakhaner.yaml
"""
from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent
SUFFIXES = (".yaml", ".yml", ".jinja", ".j2")


def roots() -> list[Path]:
    """Prompt folders in search order (only those that exist)."""
    out = []
    from llmie.settings import prompts_override

    env = prompts_override()
    if env:
        out.append(env)
    checkout = _PKG.parent / "prompts"
    if (_PKG.parent / "pyproject.toml").is_file() and checkout.is_dir():
        out.append(checkout)
    out.append(_PKG / "_prompts")
    return [r for r in out if r.is_dir()]


def prompts_dir() -> Path:
    """The first prompt folder (where `llmie optimize` readers expect prompts/ to be)."""
    rs = roots()
    if not rs:
        raise FileNotFoundError("no prompts folder: set LLMIE_PROMPTS or reinstall llmie (the wheel ships them)")
    return rs[0]


def _candidates(name: str, suffix: str) -> list[str]:
    family, _, rest = name.partition(".")
    cands = [f"{family}/{rest}{suffix}"] if rest else []
    cands.append(f"{family}/{name}{suffix}")  # projection.v1 -> projection/projection.v1.yaml
    return cands


def find(name: str | Path, suffix: str = ".yaml") -> Path:
    """The file of template ``name`` (or ``name`` itself when it is a path to a file)."""
    p = Path(name)
    if p.suffix in SUFFIXES or p.is_file():
        if not p.is_file():
            raise FileNotFoundError(f"prompt template {str(name)!r} not found ({p})")
        return p
    tried = []
    for root in roots():
        for c in _candidates(str(name), suffix):
            f = root / c
            if f.is_file():
                return f
            tried.append(str(f))
    raise FileNotFoundError(f"prompt template {str(name)!r} not found (tried {', '.join(tried) or 'no prompts folder'};"
                            " set LLMIE_PROMPTS to a prompts folder)")


def schema(name: str | Path) -> Path:
    """``masakhaner`` -> schemas/masakhaner.yaml (or a path to a schema YAML)."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise FileNotFoundError(f"schema {str(name)!r} not found ({p})")
        return p
    for root in roots():
        f = root / "schemas" / f"{name}.yaml"
        if f.is_file():
            return f
    raise FileNotFoundError(f"schema {str(name)!r} not found under {', '.join(map(str, roots()))} "
                            "(set LLMIE_PROMPTS to a prompts folder)")
