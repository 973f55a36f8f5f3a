"""`extract()`: MASSIE batched-schema extraction over any backend, grounded into llmie Documents.

One request per (window, label batch); all requests of a call go to the backend in one batch.
Long texts are cut into windows of at most `window_chars` characters (at whitespace, with
`overlap` characters shared) and the grounded spans merged; nothing is silently truncated.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from llmie.grounding import Grounder, admit
from llmie.massie.parse import Parsed, parse_answer
from llmie.massie.prompt import batch_labels, load_template, messages, output_schema, schema_for
from llmie.schema import Document, Event, Relation, Schema, Span


def windows(text: str, window_chars: int = 2000, overlap: int = 200) -> list[tuple[int, int]]:
    """[start, end) windows covering `text`, cut at whitespace where possible."""
    if len(text) <= window_chars:
        return [(0, len(text))]
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + window_chars)
        if end < len(text):
            cut = text.rfind(" ", start + window_chars // 2, end)
            end = cut if cut > start else end
        out.append((start, end))
        if end >= len(text):
            break
        nxt = max(end - overlap, start + 1)
        sp = text.find(" ", nxt, end)
        start = sp + 1 if sp >= 0 else nxt
    return out


@dataclass
class _Req:
    doc: int
    win: tuple[int, int]
    labels: list[str]


def build_requests(docs: Sequence[Document], schema: Schema, template: str | None = None, split_num: int = 6,
                   constrained: bool = True, max_tokens: int = 256, demos: bool = True,
                   window_chars: int = 2000, overlap: int = 200, lora: str | None = None):
    from llmie.backends.base import GenRequest

    tpl = load_template(template or f"massie.{schema.task}.v1")
    batches = batch_labels(schema.labels, split_num)
    meta, reqs = [], []
    for i, d in enumerate(docs):
        if not d.text.strip():
            continue
        for w in windows(d.text, window_chars, overlap):
            for b in batches:
                meta.append(_Req(i, w, [lab.name for lab in b]))
                reqs.append(GenRequest(messages=messages(tpl, d.text[w[0]:w[1]], b, demos), max_tokens=max_tokens,
                                       json_schema=output_schema(schema.task, b) if constrained else None,
                                       lora=lora))
    return tpl, meta, reqs


def to_document(doc: Document, task: str, parts: list[tuple[tuple[int, int], Parsed, Any]],
                template: str, keep_unaligned: bool = False) -> Document:
    """Merge the parsed answers of a document's (window, batch) requests into one grounded prediction.

    Unaligned spans are counted (`counts.unaligned`) and, unless `keep_unaligned`, dropped (`meta.dropped_unaligned`);
    a relation or event whose head/tail/trigger was dropped goes with it (an event's arguments too)."""
    spans: list[Span] = []
    status: list[str] = []
    relations: list[Relation] = []
    events: list[Event] = []
    seen: dict[tuple, int | None] = {}
    dropped: list[dict[str, str]] = []
    counts = {"requests": len(parts), "invalid": 0, "truncated": 0, "dropped_labels": 0, "unaligned": 0, "errors": 0}
    finish: dict[str, int] = {}

    def add(label: str, value: str, g: Grounder, off: int, dedupe: bool) -> int | None:
        r = g.ground(label, value)
        sp = r.span
        if sp.start is not None:
            sp = Span(start=sp.start + off, end=sp.end + off, label=label, text=sp.text)  # type: ignore[operator]
        key = (label, sp.start, sp.end) if sp.start is not None else (label, None, sp.text)
        if dedupe and key in seen:
            return seen[key]
        counts["unaligned"] += r.status == "unaligned"
        if not admit(r, keep_unaligned, dropped):
            seen[key] = None
            return None
        spans.append(sp)
        status.append(r.status)
        seen[key] = len(spans) - 1
        return len(spans) - 1

    for (a, b), parsed, result in parts:
        fr = getattr(result, "finish_reason", "stop")
        finish[fr] = finish.get(fr, 0) + 1
        counts["errors"] += fr == "error"
        if parsed.status == "invalid":
            counts["invalid"] += 1
            continue
        counts["dropped_labels"] += parsed.dropped_labels
        counts["truncated"] += parsed.status == "truncated"
        text = doc.text[a:b]
        if task in ("ner", "sf", "ed"):
            g = Grounder(text)
            for label, (value,) in parsed.items:
                add(label, value, g, a, dedupe=True)
        elif task == "re":
            g = Grounder(text, reuse=True)
            for label, (head, tail) in parsed.items:
                h, t = add("head", head, g, a, True), add("tail", tail, g, a, True)
                if h is not None and t is not None:
                    relations.append(Relation(head=h, tail=t, label=label))
        else:  # ee: items come as trigger, then its arguments
            g = Grounder(text, reuse=True)
            open_type: str | None = None  # type of the last trigger; its event is events[-1] unless it was dropped
            open_ok = False
            for route, (value,) in parsed.items:
                if route[0] == "trigger":
                    trig = add(route[1], value, g, a, True)
                    open_type, open_ok = route[1], trig is not None
                    if trig is not None:
                        events.append(Event(trigger=trig, type=route[1]))
                elif open_type == route[1]:
                    arg = add(route[2], value, g, a, True) if open_ok else None
                    if arg is not None:
                        events[-1].arguments.append((route[2], arg))
                else:  # an argument with no trigger before it: nothing to attach it to
                    counts["dropped_labels"] += 1
    parse_status = "empty" if not parts else ("invalid" if counts["invalid"] == len(parts) else "ok")
    meta = {**doc.meta, "parse_status": parse_status, "alignment_status": status, "template": template,
            "counts": counts, "finish_reasons": finish, "dropped_unaligned": dropped}
    for k in ("tokens", "token_offsets", "tags", "upos"):
        meta.pop(k, None)
    return Document(id=doc.id, text=doc.text, lang=doc.lang, spans=spans, relations=relations, events=events,
                    meta=meta)


def default_adapter(model: str, backend: str, given: str | None = None) -> str | None:
    """The LoRA adapter extraction uses: `given` when set, else the shipped IE adapter for `--model embedded` on an
    in-process engine (vllm LoRA or hf peft); none for other models or a served model (the server decides)."""
    from llmie.models import ie_adapter

    if given:
        return given
    if backend == "openai" or model.startswith("openai:"):
        return None
    return ie_adapter(model)


def extract(inputs: Iterable[str | Document], schema: Schema | str | list[str], task: str | None = None, *,
            model: str = "embedded", backend: Any = "vllm", template: str | None = None, split_num: int = 6,
            constrained: bool = True, max_tokens: int = 256, demos: bool | None = None, window_chars: int = 2000,
            overlap: int = 200, progress: bool = False, keep_unaligned: bool = False,
            adapter: str | bool | None = None) -> list[Document]:
    """Extract with MASSIE prompts. `schema` is a Schema or label names (then `task` says which task).

    `adapter`: a LoRA folder; None -> :func:`default_adapter` when `backend` is a name (a backend object's caller
    passes it); False -> none. `demos`: None -> as the adapter was trained (`llmie_ie.json`), else with demos.
    Spans not grounded in the text are dropped (counted, listed in `meta.dropped_unaligned`) unless `keep_unaligned`."""
    from llmie.backends import get_backend
    from llmie.models import adapter_prompt

    if not isinstance(schema, Schema):
        schema = schema_for(task or "ner", schema)
    if adapter is None:
        adapter = default_adapter(model, backend) if isinstance(backend, str) else None
    lora = adapter or None
    if demos is None:
        demos = bool(adapter_prompt(lora).get("demos", True))
    docs = [x if isinstance(x, Document) else Document(id=str(i), text=x) for i, x in enumerate(inputs)]
    be = get_backend(backend, model) if isinstance(backend, str) else backend
    tpl, meta, reqs = build_requests(docs, schema, template, split_num, constrained, max_tokens, demos,
                                     window_chars, overlap, lora=lora)
    results = be.generate(reqs, progress=progress) if reqs else []
    per_doc: dict[int, list] = {i: [] for i in range(len(docs))}
    for m, r in zip(meta, results):
        parsed = parse_answer(r.text if r.finish_reason != "error" else None, schema.task, m.labels)
        per_doc[m.doc].append((m.win, parsed, r))
    return [to_document(d, schema.task, per_doc[i], tpl.name, keep_unaligned) for i, d in enumerate(docs)]


# ---- corpus runs (llmie.scale): load once, then records -> Documents; RUNNERS["extract"] in llmie/scale/jobs.py

def job_runner(job: dict[str, Any]) -> tuple[Callable[[list], list[Document]], Callable[[], None]]:
    from llmie.backends import get_backend
    from llmie.schema import Schema

    schema = Schema.model_validate(job["schema"])
    kw = {"api_base": job["api_base"]} if job.get("api_base") else {}
    try:
        be = get_backend(job["backend"], job["model"], cache=job.get("cache", True), **kw)
    except (FileNotFoundError, ValueError, RuntimeError, OSError, ImportError) as e:
        raise RuntimeError(f"cannot start the {job['backend']} backend for {job['model']!r}: {e}") from e
    adapter = default_adapter(job["model"], job["backend"], job.get("adapter"))
    return (lambda docs: extract(docs, schema, backend=be, template=job["template"],
                                 constrained=job["constrained"], adapter=adapter or False,
                                 keep_unaligned=job.get("keep_unaligned", False))), be.close
