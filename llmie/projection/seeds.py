"""PVP seed spans beyond names, from UD English-EWT **train** trees: the span kinds the EXP files test.

EXP pairs are mostly not names (RELX subjects/objects, Europarl terms, ABSA aspects such as "sushi",
"service"), so name-only seeds (UNER PER/ORG/LOC) teach the projector the wrong distribution. From each
CoNLL-U tree we cut contiguous spans of five kinds, never starting with an article or possessive (`_trim`);
the kind is the span label (`KINDS`), so counts per kind survive translation, proposal and verification:

- `NP`: a NOUN/PROPN head with its amod/compound/nummod/flat dependents (1-5 words);
- `COMPOUND`: aspect-like terms, compound+NOUN ("service charge") or a bare noun after its article ("sushi");
- `NUM`: a number with its unit ("20 dollars", "$ 5"); `DATE`: a month with its day/year ("12 March 2004");
- `ARG`: the nsubj/obj subtree of a verb (<= 5 words, no lone pronoun): a relation argument.

Only the train file is read (`llmie.datasets.ud_en("train")`, checked by `check_trainable`).
"""
from __future__ import annotations

import random
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmie.schema import Document, Span

KINDS = ("NP", "COMPOUND", "NUM", "DATE", "ARG")
NAME_LABELS = ("PER", "ORG", "LOC")
MONTHS = {"january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
          "dec"}
_NP_DEPS = {"amod", "compound", "nummod", "flat"}
_LEAD_DEPS = {"det", "det:predet", "det:poss", "nmod:poss"}   # left out of a span's first word (see `_trim`)
_ARG_DEPS = {"nsubj", "nsubj:pass", "obj", "iobj"}
_PRIORITY = {"DATE": 0, "NUM": 1, "COMPOUND": 2, "ARG": 3, "NP": 4}  # same range, two kinds: the narrower wins


def kind_of(label: str) -> str:
    """The span kind of a seed label: the label itself, or `NAME` for UNER PER/ORG/LOC."""
    return "NAME" if label in NAME_LABELS else label


def kind_counts(spans: Iterable[Span]) -> dict[str, int]:
    return dict(sorted(Counter(kind_of(s.label) for s in spans).items()))


@dataclass
class Tree:
    """One UD sentence: words with head (1-based, 0 = root), deprel, UPOS, lemma and char offsets."""

    id: str
    text: str
    words: list[str]
    lemmas: list[str]
    upos: list[str]
    heads: list[int]
    deprels: list[str]
    offsets: list[tuple[int, int]]
    mwt_parts: set[int]  # 0-based word indices inside a multiword token (a span may not cut one)

    def children(self, i: int) -> list[int]:
        return [j for j, h in enumerate(self.heads) if h == i + 1]

    def subtree(self, i: int) -> list[int]:
        out, todo = [], [i]
        while todo:
            k = todo.pop()
            out.append(k)
            todo.extend(self.children(k))
        return sorted(out)


def read_trees(path: str | Path, limit: int | None = None) -> list[Tree]:
    """UD trees with offsets from `llmie.io.read_conllu` (one home for the surface alignment)."""
    from llmie.io.conll import read_conllu

    docs = read_conllu(path, lang="en")
    out: list[Tree] = []
    block: list[list[str]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.strip():
                if not line.startswith("#"):
                    block.append(line.split("\t"))
                continue
            if not block:
                continue
            cols, mwts = block, [c for c in block if "-" in c[0]]
            block = []
            words = [c for c in cols if c[0].isdigit()]
            doc = next(docs)
            parts = {i - 1 for c in mwts for i in range(int(c[0].split("-")[0]), int(c[0].split("-")[1]) + 1)}
            out.append(Tree(id=doc.id, text=doc.text, words=[c[1] for c in words], lemmas=[c[2] for c in words],
                            upos=[c[3] for c in words], heads=[int(c[6]) for c in words],
                            deprels=[c[7] for c in words], offsets=[tuple(o) for o in doc.meta["token_offsets"]],
                            mwt_parts=parts))
            if limit and len(out) >= limit:
                break
    return out


def _trim(t: Tree, idx: list[int]) -> list[int]:
    """Edge punctuation off, and a leading determiner or possessive ("*the* sushi", "*his* car"): NER, ABSA
    aspect terms and relation arguments are annotated without them, so a projector trained on seeds that
    carry them learns to take the target's article too ("*la* Comisión")."""
    while idx and (t.upos[idx[0]] == "PUNCT" or t.deprels[idx[0]] in _LEAD_DEPS):
        idx = idx[1:]
    while idx and t.upos[idx[-1]] == "PUNCT":
        idx = idx[:-1]
    return idx


def _range(t: Tree, idx: list[int], max_words: int = 5) -> tuple[int, int] | None:
    """(first, last) word if `idx` is contiguous, 1..max_words long and cuts no multiword token."""
    idx = _trim(t, sorted(set(idx)))
    if not idx or len(idx) > max_words or idx[-1] - idx[0] + 1 != len(idx):
        return None
    a, b = idx[0], idx[-1]
    if (a in t.mwt_parts and a > 0 and a - 1 in t.mwt_parts and t.offsets[a - 1] == t.offsets[a]) or \
            (b in t.mwt_parts and b + 1 < len(t.words) and t.offsets[b + 1] == t.offsets[b]):
        return None
    return a, b


def candidates(t: Tree) -> dict[tuple[int, int], str]:
    """Every seed span of the tree: {(first word, last word): kind}."""
    out: dict[tuple[int, int], str] = {}

    def add(r, kind):
        if r and (r not in out or _PRIORITY[kind] < _PRIORITY[out[r]]):
            out[r] = kind

    for i, pos in enumerate(t.upos):
        kids = t.children(i)
        if pos in ("NOUN", "PROPN"):
            deps = [k for k in kids if t.deprels[k] in _NP_DEPS]
            deps += [g for k in deps if t.deprels[k] in ("compound", "flat") for g in t.children(k)
                     if t.deprels[g] in ("compound", "flat")]
            if deps:
                add(_range(t, deps + [i]), "NP")
            comp = [k for k in kids if t.deprels[k] == "compound" and t.upos[k] in ("NOUN", "PROPN")]
            if pos == "NOUN" and comp:
                add(_range(t, comp + [i], 3), "COMPOUND")
            dets = [k for k in kids if t.deprels[k] in _LEAD_DEPS]
            if pos == "NOUN" and dets and not deps and max(dets) == i - 1:
                add(_range(t, [i]), "COMPOUND")   # a bare noun with its article: "the *sushi*", "our *waiter*"
            if t.lemmas[i].lower() in MONTHS and pos == "PROPN":
                nums = [k for k in kids if t.upos[k] == "NUM"]
                if nums:
                    add(_range(t, nums + [i], 4), "DATE")
        if pos == "NUM":
            h = t.heads[i] - 1
            if t.deprels[i] == "nummod" and h >= 0 and t.upos[h] in ("NOUN", "SYM") \
                    and t.lemmas[h].lower() not in MONTHS:
                parts = [k for k in t.children(i) if t.deprels[k] in ("compound", "flat") and t.upos[k] == "NUM"]
                add(_range(t, [i, h] + parts, 4), "NUM")
            elif h >= 0 and t.upos[h] == "NUM" and t.deprels[i] in ("compound", "flat"):
                pass  # part of a longer number: the head's span covers it
            elif t.deprels[i] in ("obl", "obl:tmod", "nmod", "nmod:tmod") and len(t.words[i]) == 4 \
                    and t.words[i].isdigit() and 1900 <= int(t.words[i]) <= 2099:
                add((i, i), "DATE")  # a bare year: "in 2004"
        if pos in ("VERB", "AUX"):
            for k in kids:
                if t.deprels[k] in _ARG_DEPS:
                    sub = t.subtree(k)
                    if len(sub) == 1 and t.upos[k] == "PRON":
                        continue
                    add(_range(t, sub), "ARG")
    return out


def seeds_from_tree(t: Tree, max_spans: int = 2, rng: random.Random | None = None) -> Document | None:
    """One seed Document with up to `max_spans` non-overlapping spans, a random mix of kinds (rarer first)."""
    cands = candidates(t)
    if not cands:
        return None
    rng = rng or random.Random(zlib.crc32(t.id.encode()))
    items = list(cands.items())
    rng.shuffle(items)
    # rarer kinds first, so dates and numbers are not always crowded out by noun phrases
    items.sort(key=lambda kv: {"DATE": 0, "NUM": 0, "COMPOUND": 1, "ARG": 1, "NP": 2}[kv[1]])
    chosen: list[tuple[tuple[int, int], str]] = []
    for (a, b), kind in items:
        if len(chosen) >= max_spans:
            break
        if all(b < c or a > d for (c, d), _ in chosen):
            chosen.append(((a, b), kind))
    spans = []
    for (a, b), kind in sorted(chosen):
        st, en = t.offsets[a][0], t.offsets[b][1]
        spans.append(Span(start=st, end=en, label=kind, text=t.text[st:en]))
    return Document(id=t.id, text=t.text, lang="en", spans=spans, meta={"source": "ud-ewt-train"})


def ud_seed_docs(path: str | Path | None = None, *, limit: int | None = None, max_spans: int = 2,
                 min_words: int = 5, max_words: int = 40) -> list[Document]:
    """Seed Documents from UD English-EWT train (never dev/test), deterministic per sentence id."""
    from llmie.datasets import check_trainable, ud_en

    p = check_trainable(path or ud_en("train"), "PVP seed spans")
    if not Path(p).exists():
        raise FileNotFoundError(f"{p}: UD English-EWT train is missing (set LLMIE_DATA_DIR)")
    out = []
    for t in read_trees(p):
        if not min_words <= len(t.words) <= max_words:
            continue
        d = seeds_from_tree(t, max_spans)
        if d is not None:
            out.append(d)
            if limit and len(out) >= limit:
                break
    return out


def mix(docs: Sequence[Document]) -> dict[str, int]:
    """Span-kind counts over seed Documents."""
    return kind_counts(s for d in docs for s in d.spans)
