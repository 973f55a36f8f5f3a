"""Bad input never crashes llmie and never runs anything (issue 11).

Two parts over every reader in llmie/io and every model-output parser (MASSIE JSON answers, the
TransFusion/GoLLIE `ast` reader, DSPy answers in llmie.optimize, TOPRO generate-then-match, grounding):

- a table of hand-written bad inputs (malformed JSON lines, wrong types, offsets outside the text or not
  matching it, empty and 100k-character texts, invalid UTF-8, BOM, CRLF, unknown labels, duplicate ids,
  mixed scripts; model answers that are empty, truncated, huge, deeply nested, or code), each with the
  error or status it must give;
- hypothesis fuzzing (derandomized, so CI is reproducible) of the same entry points.

A reader may only raise `LlmieDataError` naming the file and line (and record/field where known); a
parser may only return a status (never raise). Anything else counts as a crash. The last test prints
the number of inputs tried and crashes, and fails on any crash. Code-shaped answers try to create a
marker file; it must never exist.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmie.grounding import ground_all
from llmie.io import read_alignment, read_conll, read_conllu, read_documents, read_iob2, read_jsonl
from llmie.io.exp import read_exp, read_exp_records
from llmie.massie.parse import parse_answer
from llmie.schema import LlmieDataError
from llmie.transfusion.parse import parse_list, parse_output

STATS = {"inputs": 0, "crashes": 0}
CRASHES: list[str] = []
MARKER = Path(tempfile.gettempdir()) / f"llmie-pwned-{os.getpid()}"
CODE = [f"__import__('os').system('touch {MARKER}')",
        f"{{'PER': __import__('os').system('touch {MARKER}')}}",
        f"[Person(span=__import__('os').system('touch {MARKER}'))]",
        f"[Person(span=f\"{{__import__('os').system('touch {MARKER}')}}\")]",
        f"exec(\"open('{MARKER}', 'w')\")",
        f"{{'PER': [open('{MARKER}', 'w').name]}}",
        "(lambda: __import__('subprocess').run(['true']))()",
        "[Person(span='x').__class__.__mro__[1].__subclasses__()]"]
FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
READERS_JSONL: dict[str, Callable[[Path], Any]] = {
    "read_jsonl": read_jsonl, "read_exp": read_exp, "read_exp_records": read_exp_records,
    "read_documents": read_documents}


def _reader_call(name: str, fn: Callable[[], Any], path: Path) -> tuple[str, Any]:
    """('ok', result) or ('error', LlmieDataError); any other exception is recorded as a crash."""
    STATS["inputs"] += 1
    try:
        return "ok", list(fn())
    except LlmieDataError as e:
        msg = str(e)
        if f"{path}:" not in msg and not (str(path) in msg and e.line is not None):
            STATS["crashes"] += 1
            CRASHES.append(f"{name}: error does not name file and line: {msg[:200]}")
        return "error", e
    except Exception as e:  # noqa: BLE001 - this is what the suite counts
        STATS["crashes"] += 1
        CRASHES.append(f"{name} on {path.name}: {type(e).__name__}: {str(e)[:200]}")
        return "crash", e


def _parser_call(name: str, fn: Callable[[], Any]) -> Any:
    STATS["inputs"] += 1
    try:
        return fn()
    except Exception as e:  # noqa: BLE001
        STATS["crashes"] += 1
        CRASHES.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
        return None


def _write(tmp: Path, name: str, data: bytes) -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


DOC = {"id": "a", "text": "Ana went to Paris", "spans": [{"start": 0, "end": 3, "label": "PER", "text": "Ana"}]}
PAIR = {"id": "p", "src_text": "Ana went", "tgt_text": "Ana fue",
        "src_spans": [{"start": 0, "end": 3, "label": "PER", "text": "Ana"}],
        "tgt_spans": [{"start": 0, "end": 3, "label": "PER", "text": "Ana"}]}


def _j(*objs: Any, sep: str = "\n") -> bytes:
    return (sep.join(json.dumps(o, ensure_ascii=False) for o in objs) + sep).encode()


# (name, file bytes, expected: "ok" or a substring of the error, the field the error must name or None)
JSONL_CASES: list[tuple[str, bytes, str, str | None]] = [
    ("invalid-utf8", b'{"id": "a", "text": "\xff\xfe"}\n', "invalid UTF-8", None),
    ("truncated-json", b'{"id": "a", "text": "Ana', "invalid JSON", None),
    ("not-an-object", b"[1, 2]\n", "expected a JSON object", None),
    ("deeply-nested", b'{"id": "a", "text": "x", "meta": ' + b"[" * 200_000 + b"]" * 200_000 + b"}\n",
     "nested too deeply", None),
    ("text-not-string", _j({"id": "a", "text": 5}), "text", None),
    ("spans-not-list", _j({"id": "a", "text": "x", "spans": "x"}), "spans", None),
    ("offset-past-end", _j({"id": "a", "text": "x", "spans": [{"start": 0, "end": 9, "label": "P", "text": "x"}]}),
     "past the end", None),
    ("offset-negative", _j({"id": "a", "text": "x", "spans": [{"start": -1, "end": 1, "label": "P", "text": "x"}]}),
     "invalid offsets", None),
    ("offset-text-mismatch", _j({"id": "a", "text": "Ana", "spans": [{"start": 0, "end": 3, "label": "P",
                                                                      "text": "Bob"}]}), "!= text[0:3]", None),
    ("id-is-list", _j({"id": [1], "text": "x"}), "id must be", "id"),
    ("meta-not-object", _j({"id": "a", "text": "x", "meta": []}), "meta", None),
    ("unknown-language", _j({"id": "a", "text": "x", "lang": "zz-??"}), "unknown language", None),
    ("duplicate-id", _j(DOC, DOC), "duplicate id", "id"),
    ("bom", b"\xef\xbb\xbf" + _j(DOC), "ok", None),
    ("crlf", _j(DOC, {**DOC, "id": "b"}, sep="\r\n"), "ok", None),
    ("cr-only", _j(DOC, {**DOC, "id": "b"}, sep="\r"), "ok", None),
    ("empty-file", b"", "ok", None),
    ("empty-text", _j({"id": "a", "text": ""}), "ok", None),
    ("100k-text", _j({"id": "a", "text": "Ana " * 25_000}), "ok", None),
    ("mixed-scripts", _j({"id": "a", "text": "Ана 東京 Paris عربي हिन्दी", "spans": [
        {"start": 4, "end": 6, "label": "LOC", "text": "東京"}]}), "ok", None),
    ("unknown-label", _j({"id": "a", "text": "x", "spans": [{"start": 0, "end": 1, "label": "NOT_IN_SCHEMA",
                                                             "text": "x"}]}), "ok", None),
]
PAIR_CASES: list[tuple[str, bytes, str, str | None]] = [
    ("pair-missing-tgt", _j({"id": "p", "src_text": "x", "src_spans": []}), "missing 'tgt_text'", "tgt_text"),
    ("pair-spans-null", _j({**PAIR, "src_spans": None}), "list of span objects", "src_spans"),
    ("pair-spans-ints", _j({**PAIR, "src_spans": [1]}), "list of span objects", "src_spans"),
    ("pair-tgt-mismatch", _j({**PAIR, "tgt_spans": [{"start": 0, "end": 3, "label": "PER", "text": "Bob"}]}),
     "does not match", "tgt_spans"),
    ("pair-count-mismatch", _j({**PAIR, "tgt_spans": []}), "aligned by index", "tgt_spans"),
    ("pair-meta-string", _j({**PAIR, "meta": "x"}), "expected an object", "meta"),
    ("pair-duplicate-id", _j(PAIR, PAIR), "duplicate id", "id"),
    ("pair-invalid-utf8", _j(PAIR) + b'{"id": "q", "src_text": "\xc3\x28"}\n', "invalid UTF-8", None),
]


@pytest.mark.parametrize("name,data,expect,field", JSONL_CASES, ids=[c[0] for c in JSONL_CASES])
def test_jsonl_reader_bad_input(tmp_path: Path, name: str, data: bytes, expect: str, field: str | None) -> None:
    p = _write(tmp_path, f"{name}.jsonl", data)
    status, res = _reader_call("read_jsonl", lambda: read_jsonl(p), p)
    if expect == "ok":
        assert status == "ok", res
        if name in ("crlf", "cr-only"):
            assert [d.id for d in res] == ["a", "b"] and res[0].text == DOC["text"]
        return
    assert status == "error", res
    assert expect in str(res) and f"{p}:" in str(res)
    if field:
        assert res.field == field
    if "record" in name or name.startswith(("offset", "text", "spans", "meta", "duplicate")):
        assert res.record == "a"


@pytest.mark.parametrize("name,data,expect,field", PAIR_CASES, ids=[c[0] for c in PAIR_CASES])
def test_exp_reader_bad_input(tmp_path: Path, name: str, data: bytes, expect: str, field: str | None) -> None:
    p = _write(tmp_path, f"{name}.jsonl", data)
    status, res = _reader_call("read_exp", lambda: read_exp(p), p)
    assert status == "error", res
    assert expect in str(res), str(res)
    if field:
        assert res.field == field and res.record is not None
    # the per-record reader never stops: every line comes back as a pair or as its own error
    status, items = _reader_call("read_exp_records", lambda: read_exp_records(p), p)
    assert status == "ok"
    lines = [ln for ln in data.split(b"\n") if ln.strip()]
    assert len(items) == len(lines)
    assert any(isinstance(x, LlmieDataError) and expect in str(x) for x in items)


CONLL_CASES = [
    ("conll", "bad.txt", b"Ana B-PER\n\xff O\n", "invalid UTF-8"),
    ("conll", "one-col.txt", b"Ana\n", "expected 'token TAG'"),
    ("conll", "bad-tag.txt", b"Ana X-PER\n", "not IOB2"),
    ("conll", "crlf.txt", b"Ana B-PER\r\nwent O\r\n\r\nBob B-PER\r\n", "ok"),
    ("conll", "bom.txt", b"\xef\xbb\xbfAna B-PER\n", "ok"),
    ("iob2", "bad.iob2", b"1\t\xff\tO\n", "invalid UTF-8"),
    ("iob2", "short.iob2", b"1\tAna\n", "expected 'idx<TAB>token<TAB>tag'"),
    ("iob2", "text-mismatch.iob2", b"# text = Bob went\n1\tAna\tB-PER\n2\twent\tO\n", "not found in the sentence"),
    ("iob2", "no-space.iob2", "# text = 東京に行く\n1\t東京\tB-LOC\n2\tに\tO\n3\t行く\tO\n".encode(), "ok"),
    ("conllu", "bad-id.conllu", b"x\tAna\tAna\tPROPN\t_\t_\t0\troot\t_\t_\n", "bad word id"),
    ("conllu", "bad-mwt.conllu", b"1-x\tAna\t_\t_\t_\t_\t_\t_\t_\t_\n", "bad word id"),
    ("conllu", "mwt-past-end.conllu", b"1-9\tdel\t_\t_\t_\t_\t_\t_\t_\t_\n1\tde\tde\tADP\t_\t_\t0\tx\t_\t_\n",
     "past the last word"),
    ("conllu", "9-cols.conllu", b"1\tAna\n", "expected 10 tab-separated columns"),
    ("conllu", "bad.conllu", b"1\t\xff\tAna\tPROPN\t_\t_\t0\troot\t_\t_\n", "invalid UTF-8"),
]


@pytest.mark.parametrize("kind,fname,data,expect", CONLL_CASES, ids=[c[1] for c in CONLL_CASES])
def test_token_file_readers_bad_input(tmp_path: Path, kind: str, fname: str, data: bytes, expect: str) -> None:
    p = _write(tmp_path, fname, data)
    fn = {"conll": read_conll, "iob2": read_iob2, "conllu": read_conllu}[kind]
    status, res = _reader_call(kind, lambda: fn(p), p)
    if expect == "ok":
        assert status == "ok" and res, res
    else:
        assert status == "error" and expect in str(res), res


@pytest.mark.parametrize("text,gold,expect", [
    (b"a b ||| c d\n", b"1-1 2p2\n", "ok"),
    (b"a b c d\n", b"1-1\n", "expected 'source ||| target'"),
    (b"a ||| b\n", b"1-x\n", "bad link"),
    (b"a ||| b\n", b"5-1\n", "outside the sentence"),
    (b"\xff ||| b\n", b"1-1\n", "invalid UTF-8"),
    (b"a ||| b\na ||| b\n", b"1-1\n", "fewer lines"),
])
def test_alignment_reader_bad_input(tmp_path: Path, text: bytes, gold: bytes, expect: str) -> None:
    t, g = _write(tmp_path, "x.src-tgt", text), _write(tmp_path, "x.gold", gold)
    STATS["inputs"] += 1
    try:
        res = list(read_alignment(t, g))
        assert expect == "ok", res
    except LlmieDataError as e:
        assert expect in str(e), e


ANSWERS: list[tuple[str, str | None, str]] = [
    ("empty", "", "invalid"), ("none", None, "invalid"), ("blank", "  \n", "invalid"),
    ("truncated", '{"PER": ["Ana", "Bo', "truncated"), ("open-brace", "{", "invalid"),
    ("huge", '{"PER": ["' + "x" * 300_000 + '"]}', "invalid"),
    ("nested-lists", "[" * 100_000, "invalid"), ("nested-objects", '{"a":' * 50_000, "invalid"),
    ("wrong-type", '{"PER": "Ana"}', "invalid"), ("ints", '{"PER": [1, 2]}', "invalid"),
    ("set", "{'PER': {'Ana'}}", "invalid"), ("list", '["Ana"]', "invalid"),
    ("fenced", '```json\n{"PER": ["Ana"]}\n```', "repaired"), ("python-dict", "{'PER': ['Ana']}", "repaired"),
    ("unknown-label", '{"PER": ["Ana"], "WEAPON": ["x"]}', "ok"),
    ("huge-number", "{'PER': [" + "9" * 5000 + "]}", "invalid"), ("power", "{'a': 10**1000000}", "invalid"),
    *[(f"code-{i}", c, "invalid") for i, c in enumerate(CODE)],
]


@pytest.mark.parametrize("name,raw,status", ANSWERS, ids=[a[0] for a in ANSWERS])
@pytest.mark.parametrize("task", ["ner", "re", "ee"])
def test_massie_parser_bad_answers(name: str, raw: str | None, status: str, task: str) -> None:
    labels = ["PER", "LOC"]
    res = _parser_call("massie.parse_answer", lambda: parse_answer(raw, task, labels))
    assert res is not None
    if task == "ner" or status == "invalid":
        assert res.status == status, (res.status, res.error)
    if name == "unknown-label" and task == "ner":
        assert res.dropped_labels == 1 and res.items == [("PER", ("Ana",))]
    assert not MARKER.exists()


TF_OUTPUTS = ["", "[", "]", "[Person(span='Ana')]", "[" * 100_000, "(" * 100_000,
              "[Person(span='a')" + ", Person(span='b')" * 20_000 + "]", "[Person(span='x' * 10**9)]",
              "[Person('Ana')]", "[Person(span='Ana', role=Person(span='x'))]", "[Unknown(span='Ana')]",
              "[Person(span='Ana'), Person(span='Ana'", "[" + "[" * 3000 + "]" * 3000 + "]",
              "\n]\nfinal_result = [Person(span='Ana')]", "[Person(span=\"\"\"Ana\"\"\")] # ]", *CODE]


@pytest.mark.parametrize("i", range(len(TF_OUTPUTS)))
@pytest.mark.parametrize("method", ["plain", "transfusion", "transfusion-wo-annotate"])
def test_transfusion_parser_bad_outputs(i: int, method: str) -> None:
    out = _parser_call("transfusion.parse_output",
                       lambda: parse_output(TF_OUTPUTS[i], {"Person": "PER"}, method, "Ana went to Kano"))
    assert out is not None
    assert out.final_result.status in ("ok", "truncated", "invalid", "missing")
    for label, span in out.kept:  # only known classes with literal strings survive, found in the target
        assert label == "PER" and isinstance(span, str) and span.lower() in "ana went to kano"
    assert not MARKER.exists()


def test_code_is_rejected_not_run() -> None:
    res = parse_list(f"[Person(span='Ana'), {CODE[0]}, Person(span=f'{{x}}')]", {"Person": "PER"})
    assert res.items == [("PER", "Ana")] and res.rejected == 2
    assert parse_answer(CODE[1], "ner", ["PER"]).status == "invalid"
    assert not MARKER.exists()


def test_optimize_answer_and_topro_match_bad_values() -> None:
    from llmie.optimize.program import answer_items, degenerate_instruction
    from llmie.topro.llm import LLMTopro

    for ans in (None, [], "x", {"PER": "Ana"}, {"PER": [1]}, {"R": [{"head": 1}]}, {"PER": [None]}):
        assert _parser_call("optimize.answer_items", lambda: answer_items("ner", ans)) is None \
            or ans == {}
        _parser_call("optimize.answer_items", lambda: answer_items("re", ans))
    for text in ("", "{proposed_instruction}", '{"a": 1}', "x" * 100_000, CODE[0]):
        _parser_call("optimize.degenerate_instruction", lambda: degenerate_instruction(text))
    m = LLMTopro.__new__(LLMTopro)
    m.labels, m.verb = ["PER", "O"], SimpleNamespace(words=["person", "other"])
    for text in ("", "PERSON", "x" * 100_000, "\x00\ud7ff", CODE[0]):
        assert _parser_call("topro.match", lambda: m.match(text)) in ("PER", "O", "<none>")


def test_grounding_bad_values() -> None:
    for text, preds in [("", [("PER", "Ana")]), ("x" * 100_000, [("PER", "x" * 50)]), ("Ana", [("PER", "")]),
                        ("東京に行く", [("LOC", "東 京")]), ("Ana", [("PER", "\x00")]),
                        ("Ṣàngó", [("PER", "sango")]), ("a" * 5000, [("PER", "a" * 6000)])]:
        res = _parser_call("ground_all", lambda: ground_all(text, preds))
        assert res is not None
        for g in res:
            assert g.status in ("exact", "normalised", "fuzzy", "unaligned")
            if g.span.start is not None:
                assert text[g.span.start:g.span.end] == g.span.text


# ----------------------------------------------------------------------------------------- fuzzing

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                       st.text(max_size=30))
_json = st.recursive(_json_leaf, lambda c: st.one_of(st.lists(c, max_size=4),
                                                     st.dictionaries(st.text(max_size=8), c, max_size=4)),
                     max_leaves=20)
_span = st.fixed_dictionaries({"start": st.one_of(st.integers(-3, 30), st.none(), st.text(max_size=2)),
                               "end": st.one_of(st.integers(-3, 30), st.none()),
                               "label": st.one_of(st.sampled_from(["PER", "LOC", ""]), st.integers()),
                               "text": st.one_of(st.text(max_size=10), st.none())})
_texts = st.one_of(st.text(max_size=40), st.sampled_from(["Ana went to Paris", "東京に行く", "Ṣàngó lọ", ""]))
_record = st.one_of(
    st.fixed_dictionaries({"id": st.one_of(st.text(max_size=4), st.integers(0, 3), _json), "text": _texts},
                          optional={"spans": st.one_of(st.lists(_span, max_size=3), _json), "lang": _json,
                                    "meta": _json}),
    st.fixed_dictionaries({"id": st.one_of(st.sampled_from(["p", "q"]), _json), "src_text": _texts,
                           "tgt_text": _texts, "src_spans": st.one_of(st.lists(_span, max_size=2), _json)},
                          optional={"tgt_spans": st.one_of(st.lists(_span, max_size=2), st.none(), _json),
                                    "src_lang": _json, "tgt_lang": st.sampled_from(["es", "xx-??", "hau"]),
                                    "meta": _json}),
    _json)
_line = st.one_of(_record.map(lambda o: json.dumps(o, ensure_ascii=False).encode("utf-8", "surrogatepass")),
                  st.binary(max_size=40),
                  _record.map(lambda o: json.dumps(o).encode()[: max(1, len(json.dumps(o)) // 2)]))
_file = st.tuples(st.lists(_line, max_size=6), st.sampled_from([b"\n", b"\r\n", b"\r"]), st.booleans()).map(
    lambda t: (b"\xef\xbb\xbf" if t[2] else b"") + t[1].join(t[0]))


@FUZZ
@given(data=_file)
def test_fuzz_jsonl_readers(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "f.jsonl"
        p.write_bytes(data)
        for name, fn in READERS_JSONL.items():
            status, _ = _reader_call(name, lambda: fn(p), p)
            assert status != "crash", CRASHES[-1]
        status, _ = _reader_call("read_exp_records", lambda: read_exp_records(p), p)
        assert status == "ok", "read_exp_records must give every line a result"


_tok = st.one_of(st.sampled_from(["Ana", "B-PER", "I-LOC", "O", "B-", "I-", "_", "1", "1-2", "2.1", "x", "#",
                                  "# text = Ana went", "# sent_id = s", "-DOCSTART-", "東京", "SpaceAfter=No"]),
                 st.text(max_size=6))
_token_line = st.lists(_tok, max_size=10).map(lambda ts: "\t".join(ts).encode("utf-8", "surrogatepass"))
_token_file = st.lists(st.one_of(_token_line, st.just(b""), st.binary(max_size=12)), max_size=12).map(
    lambda ls: b"\n".join(ls))


@FUZZ
@given(data=_token_file, space=st.booleans())
def test_fuzz_token_file_readers(data: bytes, space: bool) -> None:
    if space:
        data = data.replace(b"\t", b" ")
    with tempfile.TemporaryDirectory() as d:
        for suffix, fn in ((".txt", read_conll), (".iob2", read_iob2), (".conllu", read_conllu)):
            p = Path(d) / f"f{suffix}"
            p.write_bytes(data)
            status, _ = _reader_call(fn.__name__, lambda: fn(p), p)
            assert status != "crash", CRASHES[-1]


_frag = st.sampled_from(['{', '}', '[', ']', '"PER"', '"LOC"', ':', ',', '"Ana"', "'Ana'", '"head"', '"tail"',
                         '"trigger"', '"arguments"', '"role"', '"argument"', "```json", "```", "null", "1e999",
                         "True", "\\", '"\\u00e9"', "{'PER': {1}}", "Person(span='Ana')", "result =",
                         "final_result =", "\n", "#", "(", ")", "'''", 'f"', "lambda", *CODE])
_answer = st.one_of(st.text(max_size=200), st.lists(_frag, max_size=40).map("".join),
                    _json.map(lambda o: json.dumps(o)), _json.map(lambda o: json.dumps(o)[:-1]))


@FUZZ
@given(raw=_answer, task=st.sampled_from(["ner", "re", "ee", "sf", "ed"]),
       method=st.sampled_from(["plain", "transfusion", "transfusion-wo-annotate"]), target=_texts)
def test_fuzz_model_output_parsers(raw: str, task: str, method: str, target: str) -> None:
    p = _parser_call("massie.parse_answer", lambda: parse_answer(raw, task, ["PER", "LOC"]))
    assert p is None or p.status in ("ok", "repaired", "truncated", "invalid")
    o = _parser_call("transfusion.parse_output", lambda: parse_output(raw, {"Person": "PER"}, method, target))
    assert o is None or all(lab == "PER" for lab, _ in o.kept)
    g = _parser_call("ground_all", lambda: ground_all(target, [("PER", raw[:50])]))
    assert g is None or all(x.span.start is None or target[x.span.start:x.span.end] == x.span.text for x in g)
    assert not MARKER.exists()


def test_zz_counts() -> None:
    """Runs last in this file: inputs tried and crashes (target 0), printed for the README/CI log."""
    print(f"\nbad-input suite: {STATS['inputs']} inputs tried, {STATS['crashes']} crashes")
    assert STATS["crashes"] == 0, sorted({c[:160] for c in CRASHES})[:40]
    assert STATS["inputs"] > 500
    assert not MARKER.exists()
