"""MASSIE prompting without a model: batching rule, templates, schemas, safe parsing, merging, windows."""
from __future__ import annotations

import json

import pytest

from llmie.massie import batch_labels, load_template, messages, output_schema, parse_answer, to_document, windows
from llmie.massie.parse import Parsed
from llmie.schema import Document, Label


def labs(n):
    return [Label(name=f"L{i}") for i in range(n)]


@pytest.mark.parametrize("n,sizes", [(4, [4]), (6, [6]), (7, [7]), (8, [8]), (9, [6, 3]), (13, [6, 7]),
                                     (14, [6, 8]), (15, [6, 6, 3]), (30, [6] * 5)])
def test_batching_last_batch_rule(n, sizes):
    assert [len(b) for b in batch_labels(labs(n))] == sizes


def test_templates_for_all_tasks_render_with_three_demos():
    for task in ("ner", "re", "sf", "ed", "ee"):
        tpl = load_template(f"massie.{task}.v1")
        assert tpl.task == task and len(tpl.demos) == 3
        msgs = messages(tpl, "Some text.", [Label(name="X", description="an x", roles=["r"])])
        assert [m["role"] for m in msgs] == ["user", "assistant"] * 3 + ["user"]
        assert msgs[-1]["content"].endswith("Text: Some text.") and "- X: an x" in msgs[-1]["content"]
        for m in msgs[1:-1:2]:
            demo = json.loads(m["content"])      # demonstrations are valid answers of the task's shape
            assert isinstance(demo, dict)


def test_output_schema_keys_are_exactly_the_batch_labels():
    s = output_schema("ner", [Label(name="PER"), Label(name="LOC")])
    assert s["required"] == ["PER", "LOC"] and s["additionalProperties"] is False
    ee = output_schema("ee", [Label(name="Attack", roles=["attacker", "target"])])
    role = ee["properties"]["Attack"]["items"]["properties"]["arguments"]["items"]["properties"]["role"]
    assert role["enum"] == ["attacker", "target"]


def test_parse_strict_repaired_invalid_and_dropped_labels():
    assert parse_answer('{"PER": ["Ade"], "LOC": []}', "ner", ["PER", "LOC"]).status == "ok"
    r = parse_answer('Sure! ```json\n{"PER": ["Ade"], "FOOD": ["rice"]}\n``` done', "ner", ["PER"])
    assert r.status == "repaired" and r.items == [("PER", ("Ade",))] and r.dropped_labels == 1
    assert parse_answer("{'PER': ['Ade']}", "ner", ["PER"]).items == [("PER", ("Ade",))]
    # the paper's Fig. 2 invalid structure: a set inside a list
    assert parse_answer('{"PERSON": [{"Mr Bure", "Mr Galley", "Brian Burke"}]}', "ner", ["PERSON"]).status == "invalid"
    for bad in ["", "   ", "[1, 2]", '{"PER": "Ade"}', '{"PER": [1]}', "__import__('os').system('touch /tmp/x')",
                '{"PER": [__import__("os")]}', "{" * 5000, "x" * 300_000]:
        assert parse_answer(bad, "ner", ["PER"]).status == "invalid", bad[:40]


def test_parse_re_and_ee_shapes():
    r = parse_answer('{"founded_by": [{"head": "Lumen", "tail": "Grace"}]}', "re", ["founded_by"])
    assert r.items == [("founded_by", ("Lumen", "Grace"))]
    assert parse_answer('{"founded_by": ["Lumen"]}', "re", ["founded_by"]).status == "invalid"
    e = parse_answer('{"Arrest": [{"trigger": "arrested", "arguments": [{"role": "agent", "argument": "Police"}]}]}',
                     "ee", ["Arrest"])
    assert e.items == [(("trigger", "Arrest"), ("arrested",)), (("arg", "Arrest", "agent"), ("Police",))]


def test_merge_windows_and_batches_into_one_grounded_document():
    doc = Document(id="d", text="Ade flew from Kano to Lagos on Monday.")
    parts = [((0, len(doc.text)), Parsed("ok", [("PER", ("Ade",)), ("LOC", ("Kano",))]), None),
             ((0, len(doc.text)), Parsed("ok", [("DATE", ("Monday",)), ("LOC", ("Abuja",))]), None),
             ((0, len(doc.text)), Parsed("invalid", error="x"), None)]
    out = to_document(doc, "ner", parts, "massie.ner.v1", keep_unaligned=True)
    assert [(s.label, s.text, s.start) for s in out.spans] == [("PER", "Ade", 0), ("LOC", "Kano", 14),
                                                               ("DATE", "Monday", 31), ("LOC", "Abuja", None)]
    assert out.meta["alignment_status"] == ["exact", "exact", "exact", "unaligned"]
    assert out.meta["counts"]["invalid"] == 1 and out.meta["counts"]["unaligned"] == 1
    assert out.meta["parse_status"] == "ok"


def test_windows_cover_long_text_with_overlap():
    text = " ".join(f"w{i}" for i in range(6000))  # ~ 35k characters
    ws = windows(text, 2000, 200)
    assert ws[0][0] == 0 and ws[-1][1] == len(text)
    assert all(b - a <= 2000 for a, b in ws)
    assert all(ws[i + 1][0] < ws[i][1] for i in range(len(ws) - 1))  # overlapping, no gap
    assert windows("short", 2000) == [(0, 5)]


def test_truncated_answer_is_closed_after_its_last_complete_value():
    r = parse_answer('{"PER": ["Ade", "Bo"], "LOC": ["Kano", "Lag', "ner", ["PER", "LOC"])
    assert r.status == "truncated" and r.items == [("PER", ("Ade",)), ("PER", ("Bo",)), ("LOC", ("Kano",))]
    rel = parse_answer('{"employer": [{"head": "Ann", "tail": "Volvo"}, {"head": "Bo", "ta', "re", ["employer"])
    assert rel.status == "truncated" and rel.items == [("employer", ("Ann", "Volvo"))]
    assert parse_answer('{"PER": [', "ner", ["PER"]).status == "invalid"


def _ground(raw: str, text: str, labels: list[str], task: str = "ner", **kw):
    """The real answer path of extract(): raw model answer -> parse_answer -> to_document (grounding)."""
    doc = Document(id="d", text=text)
    return to_document(doc, task, [((0, len(text)), parse_answer(raw, task, labels), None)], "massie.ner.v1", **kw)


def test_copied_demo_entity_is_dropped_and_counted_by_default():
    text = "Musa Ibrahim flew from Kano to Abuja."  # the demo's "Ahmed Musa" / "FC Lagos" are not in it
    raw = '{"PER": ["Ahmed Musa", "Musa Ibrahim"], "ORG": ["FC Lagos"], "LOC": ["Kano"]}'
    out = _ground(raw, text, ["PER", "ORG", "LOC"])
    assert [(s.label, s.text) for s in out.spans] == [("PER", "Musa Ibrahim"), ("LOC", "Kano")]
    assert all(s.start is not None for s in out.spans) and out.meta["alignment_status"] == ["exact", "exact"]
    assert out.meta["counts"]["unaligned"] == 2
    assert out.meta["dropped_unaligned"] == [{"label": "PER", "text": "Ahmed Musa"}, {"label": "ORG", "text": "FC Lagos"}]
    kept = _ground(raw, text, ["PER", "ORG", "LOC"], keep_unaligned=True)
    assert [(s.label, s.text, s.start) for s in kept.spans] == [("PER", "Ahmed Musa", None), ("PER", "Musa Ibrahim", 0),
                                                                ("ORG", "FC Lagos", None), ("LOC", "Kano", 23)]
    assert kept.meta["counts"]["unaligned"] == 2 and kept.meta["dropped_unaligned"] == []


def test_dropped_head_drops_its_relation_and_dropped_trigger_its_event():
    rel = _ground('{"employer": [{"head": "Ahmed Musa", "tail": "Shell"}, {"head": "Ada", "tail": "Shell"}]}',
                  "Ada works for Shell.", ["employer"], "re")
    assert [(rel.spans[r.head].text, rel.spans[r.tail].text) for r in rel.relations] == [("Ada", "Shell")]
    assert rel.meta["counts"]["unaligned"] == 1
    ev = _ground('{"Attack": [{"trigger": "bombed", "arguments": [{"role": "target", "argument": "town"}]},'
                 ' {"trigger": "attacked", "arguments": [{"role": "target", "argument": "town"}]}]}',
                 "The army attacked the town.", ["Attack"], "ee")
    assert [(ev.spans[e.trigger].text, [(r, ev.spans[a].text) for r, a in e.arguments]) for e in ev.events] \
        == [("attacked", [("target", "town")])]
    assert ev.meta["dropped_unaligned"] == [{"label": "Attack", "text": "bombed"}]


def test_transfusion_uses_the_same_unaligned_rule():
    from llmie.backends.base import GenResult
    from llmie.schema import Label, Schema
    from llmie.transfusion.pipeline import extract_tf

    class Scripted:  # a scripted backend (DESIGN §6): the answer below goes through the real parse + grounding
        def generate(self, reqs, progress=False):
            return [GenResult(text='[\n    Person(span="Ahmed Musa"),\n    Person(span="Ada"),\n]',
                              finish_reason="stop") for _ in reqs]

    schema = Schema(task="ner", labels=[Label(name="PER")])
    docs = [Document(id="d", text="Ada went home.", lang="en")]
    out = extract_tf(docs, schema, backend=Scripted(), method="plain")[0]
    kept = extract_tf(docs, schema, backend=Scripted(), method="plain", keep_unaligned=True)[0]
    assert out.meta["counts"]["unaligned"] == kept.meta["counts"]["unaligned"]
    assert [s.text for s in kept.spans if s.start is None] == [d["text"] for d in out.meta["dropped_unaligned"]]
    assert all(s.start is not None for s in out.spans)
