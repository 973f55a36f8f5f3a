"""MASSIE batched-schema prompts: label batches, chat messages from versioned templates, JSON schemas.

Output shapes (one per task, label-keyed as in the paper's Fig. 2):
- ner / sf / ed: `{"LABEL": ["span", ...]}` (ed: label = event type, span = trigger)
- re: `{"RELATION": [{"head": "...", "tail": "..."}]}`
- ee: `{"EVENT_TYPE": [{"trigger": "...", "arguments": [{"role": "...", "argument": "..."}]}]}`

Batching (`split_num = 6`): labels in chunks of 6; our reading of the paper's "len(B_n) >= n%2" rule
is split_num/2: the last batch is kept when it has >= 3 labels, otherwise merged into the previous one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import yaml

from llmie.schema import Document, Label, Schema

SPLIT_NUM = 6
TASKS = ("ner", "re", "sf", "ed", "ee")
MAX_ITEMS, MAX_LEN = 8, 80  # bound constrained outputs: tiny models otherwise ramble until max_tokens


def batch_labels(labels: list[Label], split_num: int = SPLIT_NUM) -> list[list[Label]]:
    batches = [labels[i:i + split_num] for i in range(0, len(labels), split_num)]
    if len(batches) > 1 and len(batches[-1]) < max(1, split_num // 2):
        batches[-2].extend(batches.pop())
    return batches


@dataclass(frozen=True)
class Template:
    name: str
    task: str
    instruction: str
    format: str
    demos: tuple[dict[str, Any], ...]
    digest: str


@lru_cache(maxsize=32)
def load_template(name: str) -> Template:
    """`massie.ner.v1` -> prompts/massie/ner.v1.yaml; a path to a .yaml file also works."""
    import hashlib

    from llmie.prompts import find

    p = find(name)
    raw = p.read_text(encoding="utf-8")
    d = yaml.safe_load(raw)
    return Template(d["name"], d["task"], d["instruction"].strip(), d["format"].strip(),
                    tuple(d.get("demos") or ()), hashlib.sha256(raw.encode()).hexdigest()[:12])


def _labels_block(labels: list[Label] | list[Any], task: str) -> str:
    lines = []
    for lab in labels:
        lab = lab if isinstance(lab, Label) else Label(**lab) if isinstance(lab, dict) else Label(name=str(lab))
        line = f"- {lab.name}"
        if lab.description:
            line += f": {lab.description}"
        if task == "ee" and lab.roles:
            line += f" (roles: {', '.join(lab.roles)})"
        lines.append(line)
    return "\n".join(lines)


def user_message(tpl: Template, text: str, labels: list[Label] | list[Any]) -> str:
    return (f"{tpl.instruction}\n{tpl.format}\nTypes:\n{_labels_block(labels, tpl.task)}\n\nText: {text}")


def messages(tpl: Template, text: str, labels: list[Label], demos: bool = True) -> list[dict[str, str]]:
    """Chat messages: the 3 fixed English demonstrations as earlier turns, then the input."""
    msgs: list[dict[str, str]] = []
    for d in tpl.demos if demos else ():
        msgs.append({"role": "user", "content": user_message(tpl, d["text"], d["labels"])})
        msgs.append({"role": "assistant", "content": json.dumps(d["output"], ensure_ascii=False)})
    msgs.append({"role": "user", "content": user_message(tpl, text, labels)})
    return msgs


def _string() -> dict[str, Any]:
    return {"type": "string", "maxLength": MAX_LEN}


def output_schema(task: str, labels: list[Label]) -> dict[str, Any]:
    """JSON schema of one batch's answer; label names are the only keys, roles an enum (EE)."""
    if task in ("ner", "sf", "ed"):
        item = lambda lab: _string()  # noqa: E731
    elif task == "re":
        item = lambda lab: {"type": "object", "properties": {"head": _string(), "tail": _string()},  # noqa: E731
                            "required": ["head", "tail"], "additionalProperties": False}
    elif task == "ee":
        def item(lab: Label) -> dict[str, Any]:
            role = {"type": "string", "enum": lab.roles} if lab.roles else _string()
            arg = {"type": "object", "properties": {"role": role, "argument": _string()},
                   "required": ["role", "argument"], "additionalProperties": False}
            return {"type": "object", "properties": {"trigger": _string(),
                                                     "arguments": {"type": "array", "items": arg, "maxItems": 6}},
                    "required": ["trigger", "arguments"], "additionalProperties": False}
    else:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return {"type": "object",
            "properties": {lab.name: {"type": "array", "items": item(lab), "maxItems": MAX_ITEMS} for lab in labels},
            "required": [lab.name for lab in labels], "additionalProperties": False}


def schema_for(task: str, labels: str | list[str] | Schema) -> Schema:
    if isinstance(labels, Schema):
        return labels
    return Schema.from_names(task, labels)


def gold_answer(doc: Document, task: str, names: list[str]) -> dict[str, list]:
    """Label-keyed gold answer of a document for the queried labels (others are not asked for)."""
    out: dict[str, list] = {n: [] for n in names}
    if task == "re":
        for r in doc.relations:
            if r.label in out:
                out[r.label].append({"head": doc.spans[r.head].text, "tail": doc.spans[r.tail].text})
    elif task in ("ner", "sf", "ed"):
        for s in doc.spans:
            if s.label in out and s.text not in out[s.label]:
                out[s.label].append(s.text)
    elif task == "ee":
        for e in doc.events:
            if e.type in out:
                out[e.type].append({"trigger": doc.spans[e.trigger].text,
                                    "arguments": [{"role": r, "argument": doc.spans[i].text} for r, i in e.arguments]})
    else:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return out
