"""GoLLIE-style code prompts rendered from one `Schema`: labels become Python dataclasses (guideline =
docstring, examples = comment), annotations render as `Person(span="...")`.

Templates are versioned Jinja files: `gollie.prompt.v1` (plain, Fig. 6a), `transfusion.prompt.v1`
(TF, Fig. 6b: `text`, `eng_text`, the 3-line "Using translation and fusion" instruction, `result` for
English then `final_result` for the target) and `transfusion.wo_annotate.v1` (the "w/o annotate"
ablation). Strings are written as Python literals preferring double quotes (what GoLLIE's `black`
formatting produces), so model output can be read back with `ast` (never `eval`).
"""
from __future__ import annotations

import hashlib
import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from llmie.schema import Label, Schema, Span

TEMPLATES = {"plain": "gollie.prompt.v1", "transfusion": "transfusion.prompt.v1",
             "transfusion-wo-annotate": "transfusion.wo_annotate.v1"}
GUIDELINE_TEMPLATE = "gollie.guideline.v1"
# Readable class names for the usual NER tags; other labels are CamelCased.
CLASS_NAMES = {"PER": "Person", "PERSON": "Person", "ORG": "Organization", "ORGANIZATION": "Organization",
               "ORGANISATION": "Organization", "LOC": "Location", "LOCATION": "Location", "GPE": "GPE",
               "DATE": "Date", "MISC": "Miscellaneous", "TIME": "Time"}
# The split point between prompt and target: the first line that starts an annotation list.
_RESULT_LINE = re.compile(r"^(?:final_)?result =", re.M)


def pystr(s: str) -> str:
    """A Python string literal for `s`, double-quoted unless `s` holds a double quote (black's choice)."""
    r = repr(s)
    if r.startswith("'") and '"' not in s:
        r = '"' + r[1:-1].replace("\\'", "'") + '"'
    return r


def class_name(label: str) -> str:
    """`PER` -> `Person`; `work_of_art` -> `WorkOfArt`; always a valid, non-keyword identifier."""
    if label.upper() in CLASS_NAMES:
        return CLASS_NAMES[label.upper()]
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", label) if p]
    name = "".join(p[:1].upper() + p[1:].lower() if p.isupper() else p[:1].upper() + p[1:] for p in parts)
    if not name or not name.isidentifier() or keyword.iskeyword(name) or name[0].isdigit():
        name = "Label" + "".join(ch for ch in name if ch.isalnum())
    return name or "Label"


def class_map(schema: Schema) -> dict[str, str]:
    """Label name -> class name, unique (a clash gets the label name appended)."""
    out: dict[str, str] = {}
    for i, lab in enumerate(schema.labels):
        c = class_name(lab.name)
        out[lab.name] = f"{c}{i}" if c in out.values() else c
    return out


@lru_cache(maxsize=16)
def _template(name: str):
    import jinja2

    from llmie.prompts import find

    p = find(name, ".jinja")
    src = p.read_text(encoding="utf-8")
    env = jinja2.Environment(keep_trailing_newline=False, autoescape=False, undefined=jinja2.StrictUndefined)
    return env.from_string(src), hashlib.sha256(src.encode()).hexdigest()[:12]


def template_digest(name: str) -> str:
    return _template(name)[1]


def guideline(lab: Label, cls: str) -> str:
    ex = ", ".join(pystr(e) for e in lab.examples)
    desc = " ".join((lab.description or f"{lab.name} entities.").split()).replace('"""', "'''")
    return _template(GUIDELINE_TEMPLATE)[0].render(cls=cls, description=desc, examples=ex)


def guidelines(schema: Schema) -> list[str]:
    cm = class_map(schema)
    return [guideline(lab, cm[lab.name]) for lab in schema.labels]


def annotation(cls: str, span: str) -> str:
    return f"{cls}(span={pystr(span)})"


def _anns(schema: Schema, spans: Sequence[Span | tuple[str, str]] | None) -> list[str]:
    cm = class_map(schema)
    out = []
    for s in spans or ():
        label, text = (s.label, s.text) if isinstance(s, Span) else s
        if label in cm:  # labels outside the schema are not rendered
            out.append(annotation(cm[label], text))
    return out


def render(schema: Schema, text: str, *, method: str = "transfusion", eng_text: str | None = None,
           annotations: Sequence[Span | tuple[str, str]] | None = None,
           en_annotations: Sequence[Span | tuple[str, str]] | None = None, template: str | None = None) -> str:
    """The full example (prompt + target). `annotations` are for `text`, `en_annotations` for `eng_text`."""
    name = template or TEMPLATES[method]
    kw = dict(guidelines=guidelines(schema), text=pystr(text), annotations=_anns(schema, annotations))
    if "transfusion" in name:
        if eng_text is None:
            raise ValueError(f"template {name} needs eng_text (the English translation)")
        kw.update(eng_text=pystr(eng_text), en_annotations=_anns(schema, en_annotations))
    return _template(name)[0].render(**kw)


def split_prompt(example: str) -> tuple[str, str]:
    """(prompt, target) split at the first line starting with `result =` (or `final_result =`): the prompt
    ends with `result =`, the target is the rest (`[` ... ). Loss goes on the target only."""
    m = _RESULT_LINE.search(example)
    if m is None:
        raise ValueError("example has no line starting with 'result =' to split at")
    return example[: m.end()], example[m.end():]


def prompt_for(schema: Schema, text: str, *, method: str = "transfusion", eng_text: str | None = None,
               template: str | None = None) -> str:
    """The inference prompt: the rendered example cut after the first `result =`."""
    return split_prompt(render(schema, text, method=method, eng_text=eng_text, template=template))[0]


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    digest: str


def template_info(method: str) -> TemplateInfo:
    name = TEMPLATES[method]
    return TemplateInfo(name, template_digest(name))


def schema_path(name: str) -> Path:
    from llmie.prompts import schema

    return schema(name)
