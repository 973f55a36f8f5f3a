"""DSPy program for MASSIE batched-schema extraction: signature, module, adapter, LF1 metric.

The program renders *exactly* the chat layout of `llmie.massie.prompt.messages` (instruction + fixed
format sentence + label block + text, demonstrations as earlier turns, label-keyed JSON answers), so
what MIPROv2 scores is what `llmie extract --prompt DIR` later sends. MIPROv2 optimises the
instruction and the demonstrations; the format sentence stays fixed so a proposal cannot break it.

`MassieAdapter` sends a JSON schema as `response_format` on every call (DSPy sends none to a local
server, and a 135M model then fails to parse most answers, notes/serving.md §2): for the extraction
signature the schema of the call's label batch (labels are the only allowed keys); for MIPRO's own
proposer signatures a schema built from their output fields, with bounded strings.
"""
from __future__ import annotations

import contextvars
import hashlib
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError
from pydantic import TypeAdapter

from llmie.massie.parse import parse_answer
from llmie.massie.prompt import Template, batch_labels, messages, output_schema
from llmie.metrics.lf1 import score_items
from llmie.schema import Label, Schema

PROPOSER_MAX_CHARS = 1200  # bound free-text proposer outputs: tiny models ramble until max_tokens
_current_labels: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("llmie_labels", default=None)


def label_dict(lab: Label | dict[str, Any]) -> dict[str, Any]:
    """A label as the small dict the signature carries (name, description and EE roles when there are any)."""
    lab = lab if isinstance(lab, Label) else Label(**lab)
    d: dict[str, Any] = {"name": lab.name}
    if lab.description:
        d["description"] = lab.description
    if lab.roles:
        d["roles"] = list(lab.roles)
    return d


class MassieAnswer(dict):
    """Output annotation that marks an extraction signature; subclasses carry the task and format sentence.

    (Extra keyword arguments of `dspy.OutputField` are dropped by DSPy 3.4, an annotation survives
    `with_instructions` and copies.)"""
    llmie_task = ""
    llmie_format = ""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return handler.generate_schema(dict)


_ANSWER_TYPES: dict[tuple[str, str], type[MassieAnswer]] = {}


def answer_type(task: str, fmt: str) -> type[MassieAnswer]:
    key = (task, fmt)
    if key not in _ANSWER_TYPES:
        _ANSWER_TYPES[key] = type(f"MassieAnswer_{task}", (MassieAnswer,), {"llmie_task": task, "llmie_format": fmt})
    return _ANSWER_TYPES[key]


def make_signature(task: str, instruction: str, fmt: str) -> type[dspy.Signature]:
    """Inputs: text + label batch; output: the task's label-keyed JSON object (MASSIE Fig. 2 form)."""
    return dspy.Signature(
        {
            "text": (str, dspy.InputField(desc="the input text")),
            "labels": (list[dict[str, str]], dspy.InputField(desc="the label batch: name and description of each type")),
            "answer": (answer_type(task, fmt), dspy.OutputField(desc="JSON object keyed by the given labels")),
        },
        instruction,
    )


def massie_task(signature: type[dspy.Signature]) -> tuple[str, str] | None:
    """(task, format sentence) if `signature` is an extraction signature built here, else None."""
    f = signature.output_fields.get("answer")
    ann = getattr(f, "annotation", None)
    if isinstance(ann, type) and issubclass(ann, MassieAnswer) and set(signature.input_fields) == {"text", "labels"}:
        return ann.llmie_task, ann.llmie_format
    return None


def _demo_dicts(demos: list[Any]) -> list[dict[str, Any]]:
    out = []
    for d in demos:
        g = d.get if hasattr(d, "get") else (lambda k, _d=d: getattr(_d, k, None))
        if g("text") is None or g("answer") is None:
            continue
        out.append({"text": g("text"), "labels": g("labels") or [], "output": g("answer")})
    return out


def _bounded(schema: Any) -> Any:
    """Give every string in a JSON schema a maxLength (in place) and close objects."""
    if isinstance(schema, dict):
        if schema.get("type") == "string":
            schema.setdefault("maxLength", PROPOSER_MAX_CHARS)
        for v in schema.values():
            _bounded(v)
    elif isinstance(schema, list):
        for v in schema:
            _bounded(v)
    return schema


def generic_response_format(signature: type[dspy.Signature]) -> dict[str, Any]:
    """JSON schema of a signature's output fields (MIPRO's proposer signatures)."""
    props = {}
    for name, f in signature.output_fields.items():
        ann = f.annotation if f.annotation is not None else str
        try:
            props[name] = TypeAdapter(ann).json_schema()
        except Exception:  # noqa: BLE001  unusual annotation: a string is always acceptable to DSPy's parser
            props[name] = {"type": "string"}
    schema = _bounded({"type": "object", "properties": props, "required": list(props), "additionalProperties": False})
    return {"type": "json_schema", "json_schema": {"name": signature.__name__[:60] or "output", "schema": schema,
                                                    "strict": True}}


@dataclass
class CallStats:
    """LM calls seen by the adapter; `*_sent` excludes repeats that DSPy's in-process cache answers."""
    task_calls: int = 0
    prompt_calls: int = 0
    task_sent: int = 0
    prompt_sent: int = 0
    parse_failures: int = 0
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, lm: Any, messages_: list[dict[str, Any]], lm_kwargs: dict[str, Any]) -> None:
        key = hashlib.sha256(json.dumps([getattr(lm, "model", ""), getattr(lm, "kwargs", {}), messages_, lm_kwargs],
                                        sort_keys=True, default=str).encode()).hexdigest()
        with self._lock:
            new = key not in self._seen
            self._seen.add(key)
            if kind == "task":
                self.task_calls += 1
                self.task_sent += new
            else:
                self.prompt_calls += 1
                self.prompt_sent += new

    def failure(self) -> None:
        with self._lock:
            self.parse_failures += 1

    def as_dict(self) -> dict[str, int]:
        return {"task": self.task_sent, "prompt": self.prompt_sent, "task_incl_cached": self.task_calls,
                "prompt_incl_cached": self.prompt_calls}


class MassieAdapter(dspy.JSONAdapter):
    """MASSIE chat layout + schema-constrained output for extraction; JSON + schema for everything else."""

    def __init__(self, stats: CallStats | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.stats = stats or CallStats()

    def _prepare(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any, demos: list, inputs: dict) -> dict:
        mt = massie_task(signature)
        lm_kwargs = dict(lm_kwargs)
        if mt:
            labels = [Label(**lab) if isinstance(lab, dict) else Label(name=str(lab)) for lab in inputs["labels"]]
            _current_labels.set([lab.name for lab in labels])
            lm_kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                "name": f"massie_{mt[0]}", "schema": output_schema(mt[0], labels), "strict": True}}
        else:
            lm_kwargs["response_format"] = generic_response_format(signature)
        self.stats.record("task" if mt else "prompt", lm, self.format(signature, demos, inputs), lm_kwargs)
        return lm_kwargs

    def __call__(self, lm, lm_kwargs, signature, demos, inputs):  # type: ignore[override]
        lm_kwargs = self._prepare(lm, lm_kwargs, signature, demos, inputs)
        return dspy.Adapter.__call__(self, lm, lm_kwargs, signature, demos, inputs)

    async def acall(self, lm, lm_kwargs, signature, demos, inputs):  # type: ignore[override]
        lm_kwargs = self._prepare(lm, lm_kwargs, signature, demos, inputs)
        return await dspy.Adapter.acall(self, lm, lm_kwargs, signature, demos, inputs)

    def format_field_structure(self, signature):  # type: ignore[override]
        """Describe the output fields in words: with DSPy's `{"field": "{field}"}` skeleton, a tiny model
        copies the placeholder `{proposed_instruction}` as its answer."""
        ins = "\n".join(f"[[ ## {n} ## ]]" for n in signature.input_fields)
        outs = "\n".join(f"- `{n}`: {f.json_schema_extra.get('desc', n) if f.json_schema_extra else n}"
                         for n, f in signature.output_fields.items())
        return (f"Inputs will have the following structure:\n\n{ins}\n\nAnswer with a JSON object with these "
                f"fields, written out in full:\n{outs}")

    def format(self, signature, demos, inputs):  # type: ignore[override]
        mt = massie_task(signature)
        if not mt:
            return super().format(signature, demos, inputs)
        tpl = Template("dspy", mt[0], signature.instructions.strip(), mt[1], tuple(_demo_dicts(demos)), "")
        return messages(tpl, inputs["text"], inputs["labels"], demos=True)

    def parse(self, signature, completion):  # type: ignore[override]
        mt = massie_task(signature)
        if not mt:
            return super().parse(signature, completion)
        labels = _current_labels.get() or []
        p = parse_answer(completion, mt[0], labels)
        if p.status == "invalid":
            self.stats.failure()
            raise AdapterParseError(adapter_name="MassieAdapter", signature=signature, lm_response=completion,
                                    message=p.error or "invalid answer")
        return {"answer": items_to_answer(mt[0], p.items, labels)}


def items_to_answer(task: str, items: list[tuple[Any, tuple[str, ...]]], labels: list[str]) -> dict[str, list]:
    """Label-keyed answer from parsed items (every queried label present, as in the demos)."""
    out: dict[str, list] = {lab: [] for lab in labels}
    if task == "ee":  # parse_answer yields each event's trigger item, then its argument items
        for key, parts in items:
            if key[0] == "trigger":
                out.setdefault(key[1], []).append({"trigger": parts[0], "arguments": []})
            elif out.get(key[1]):
                out[key[1]][-1]["arguments"].append({"role": key[2], "argument": parts[0]})
        return out
    for label, parts in items:
        if task == "re":
            out.setdefault(label, []).append({"head": parts[0], "tail": parts[1]})
        else:
            out.setdefault(label, []).append(parts[0])
    return out


def answer_items(task: str, answer: dict[str, Any] | None) -> list[tuple[str, tuple[str, ...]]] | None:
    """Items for LF1 from a label-keyed answer; None when the structure is invalid."""
    if not isinstance(answer, dict):
        return None
    items = []
    for label, vals in answer.items():
        if not isinstance(vals, list):
            return None
        for v in vals:
            if task == "ee":
                if not (isinstance(v, dict) and isinstance(v.get("trigger"), str)):
                    return None
                items.append((("trigger", label), (v["trigger"],)))
                for a in v.get("arguments") or []:
                    if not (isinstance(a, dict) and isinstance(a.get("role"), str)
                            and isinstance(a.get("argument"), str)):
                        return None
                    items.append((("arg", label, a["role"]), (a["argument"],)))
            elif task == "re":
                if not (isinstance(v, dict) and isinstance(v.get("head"), str) and isinstance(v.get("tail"), str)):
                    return None
                items.append((label, (v["head"], v["tail"])))
            elif isinstance(v, str):
                items.append((label, (v,)))
            else:
                return None
    return items


class MassieProgram(dspy.Module):
    """One extraction call per label batch (split_num labels each), answers merged per document."""

    def __init__(self, task: str, schema: Schema, instruction: str, fmt: str, demos: list[dict[str, Any]] | None = None,
                 split_num: int = 6) -> None:
        super().__init__()
        self.task = task
        self.labels = [label_dict(lab) for lab in schema.labels]
        self.split_num = split_num
        self.extract = dspy.Predict(make_signature(task, instruction, fmt))
        self.extract.demos = [dspy.Example(text=d["text"], labels=[label_dict(x) if isinstance(x, dict)
                                                                    else {"name": str(x)} for x in d["labels"]],
                                           answer=d["output"]).with_inputs("text", "labels") for d in demos or []]

    def forward(self, text: str, labels: list[dict[str, str]] | None = None) -> dspy.Prediction:
        labels = labels or self.labels
        merged: dict[str, list] = {}
        failures = 0
        for batch in batch_labels([Label(**lab) for lab in labels], self.split_num):
            try:
                out = self.extract(text=text, labels=[label_dict(lab) for lab in batch])
            except AdapterParseError:  # counted by the adapter; the sample then scores 0
                failures += 1
                continue
            merged.update(out.answer or {})
        return dspy.Prediction(answer=merged, parse_failures=failures)


def degenerate_instruction(text: str) -> str | None:
    """Why a proposed instruction is unusable (None if usable): tiny proposers return copies of template
    placeholders (`{proposed_instruction}`), answer-shaped JSON, or fragments (notes/serving.md §3)."""
    t = (text or "").strip()
    if len(t) < 20:
        return "too short"
    if t[0] in "[{" or t.endswith(("}", "]")):
        return "answer-shaped (JSON)"
    if "{" in t and "}" in t:
        return "contains a template placeholder"
    if len(t.split()) < 4:
        return "fewer than 4 words"
    if re.search(r"\bproposed_instruction\b", t, re.I):
        return "names the proposer's output field"
    clauses = [c.strip().lower() for c in re.split(r"[;.\n]", t) if len(c.split()) >= 3]
    if clauses and max(Counter(clauses).values()) >= 3:
        return "repeats a clause (a looping generation)"
    return looping(t)


def looping(text: str) -> str | None:
    """Why a proposal is a looping generation (None if not): the 135M proposer also repeats a phrase without
    punctuation between the repeats ("... o que o que o que ...") or one character."""
    if re.search(r"(\S)\1{9,}", text):
        return "repeats one character (a looping generation)"
    w = text.lower().split()
    grams = Counter(tuple(w[k:k + 3]) for k in range(len(w) - 2))
    if grams and max(grams.values()) >= 3:
        return "repeats a phrase (a looping generation)"
    return None


class FilteredMIPROv2(dspy.MIPROv2):
    """MIPROv2 that drops degenerate instruction proposals before the search (the default always stays),
    keeping every raw proposal in `self.proposals` for the report."""

    proposals: list[dict[str, Any]]

    def _propose_instructions(self, program, trainset, demo_candidates, *args, **kwargs):  # type: ignore[override]
        cands = super()._propose_instructions(program, trainset, demo_candidates, *args, **kwargs)
        self.proposals = []
        for i, lst in cands.items():
            kept = [lst[0]]
            for j, text in enumerate(lst):
                why = None if j == 0 else degenerate_instruction(text)
                if j and not why and text.strip() not in (k.strip() for k in kept):
                    kept.append(text)
                self.proposals.append({"predictor": i, "index": j, "text": text, "default": j == 0,
                                       "rejected": why})
            cands[i] = kept
        return cands


@dataclass
class LF1Metric:
    """`(gold, pred, trace=None) -> float`: pooled LF1 (DESIGN §3); a parse failure in any batch scores 0."""
    task: str
    calls: int = 0
    scored_predictions: int = 0   # calls that saw a real parsed prediction
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, gold: Any, pred: Any, trace: Any = None) -> float:
        with self._lock:
            self.calls += 1
        if pred is None or getattr(pred, "parse_failures", 0):
            return 0.0
        p = answer_items(self.task, getattr(pred, "answer", None))
        if p is None:
            return 0.0
        with self._lock:
            self.scored_predictions += 1
        return score_items(answer_items(self.task, gold.answer) or [], p).lf1
