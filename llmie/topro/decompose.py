"""Decomposition: one prompt per word, answers joined back in word order.

Templates are data files (prompts/topro/<task>.v<N>.yaml, named ``topro.<task>.v<N>``) holding the
encoder pattern, the LLM pattern and the verbalizer. ``mark=True`` is the paper's suggested fix for
repeated words: the target occurrence is bracketed in the sentence, so two occurrences of one word
get different prompts (without it they get identical prompts and so the same label).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass(frozen=True)
class Template:
    """A TOPRO template file: labels with candidate verbalizer words, encoder and LLM patterns."""

    name: str
    task: str
    verbalizer: dict[str, list[str]]   # label -> candidate words (first single-token candidate wins)
    encoder: dict[str, str]            # text_a, text_b ({sentence}, {word}, {mask})
    llm: dict[str, str]                # prefix ({label_words}, {sentence}), question ({word})
    mark: tuple[str, str] = ("[", "]")
    path: str = ""

    @property
    def labels(self) -> list[str]:
        return list(self.verbalizer)


def load_template(name: str = "topro.ner.v1") -> Template:
    """``topro.ner.v1`` -> prompts/topro/ner.v1.yaml; a path to a .yaml file also works."""
    from llmie.prompts import find

    if not name.endswith((".yaml", ".yml")) and not name.startswith("topro."):
        raise ValueError(f"template {name!r}: expected a name like topro.ner.v1 or a .yaml path")
    p = find(name)
    d: dict[str, Any] = yaml.safe_load(p.read_text(encoding="utf-8"))
    for key in ("name", "task", "verbalizer", "encoder", "llm"):
        if key not in d:
            raise ValueError(f"{p}: missing field {key!r}")
    verb = {str(k): [str(w) for w in (v if isinstance(v, list) else [v])] for k, v in d["verbalizer"].items()}
    return Template(name=d["name"], task=d["task"], verbalizer=verb, encoder=dict(d["encoder"]),
                    llm=dict(d["llm"]), mark=tuple(d.get("mark", ("[", "]"))), path=str(p))


@dataclass(frozen=True)
class Prompt:
    """One (sentence, word) question; ``sent``/``idx`` place its answer back in the tag sequence."""

    sent: int
    idx: int
    word: str
    sentence: str   # the sentence as shown in this prompt (with the target marked when mark=True)


def sentence_text(tokens: Sequence[str], target: int | None = None, mark: tuple[str, str] = ("[", "]")) -> str:
    """Words joined by spaces, with word ``target`` bracketed when given."""
    if target is None:
        return " ".join(tokens)
    return " ".join(f"{mark[0]}{t}{mark[1]}" if i == target else t for i, t in enumerate(tokens))


def decompose(sentences: Sequence[Sequence[str]], *, mark: bool = False,
              mark_chars: tuple[str, str] = ("[", "]")) -> list[Prompt]:
    """All prompts of all sentences, sentence by sentence, words in order (m prompts per sentence)."""
    out: list[Prompt] = []
    for s, toks in enumerate(sentences):
        plain = sentence_text(toks)
        for i, w in enumerate(toks):
            out.append(Prompt(s, i, w, sentence_text(toks, i, mark_chars) if mark else plain))
    return out


def recompose(prompts: Sequence[Prompt], answers: Sequence[str], lengths: Sequence[int]) -> list[list[str]]:
    """Answers of ``prompts`` (any order) -> one tag list per sentence, in word order.

    Fails clearly if a word got no answer or two answers (a lost or duplicated prompt is a bug).
    """
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    tags: list[list[str | None]] = [[None] * n for n in lengths]
    for p, a in zip(prompts, answers):
        if tags[p.sent][p.idx] is not None:
            raise ValueError(f"sentence {p.sent} word {p.idx}: answered twice")
        tags[p.sent][p.idx] = a
    for s, row in enumerate(tags):
        if any(t is None for t in row):
            raise ValueError(f"sentence {s}: word {row.index(None)} has no answer")
    return [list(r) for r in tags]  # type: ignore[arg-type]


def encoder_pair(t: Template, p: Prompt, mask_token: str) -> tuple[str, str]:
    """(segment A, segment B) of the encoder prompt (the paper's pattern; sentence is segment A)."""
    return (t.encoder["text_a"].format(sentence=p.sentence),
            t.encoder["text_b"].format(word=p.word, mask=mask_token))


def llm_parts(t: Template, p: Prompt, label_words: Sequence[str]) -> tuple[str, str]:
    """(shared prefix, per-word question): the prefix holds the sentence, so m prompts share it."""
    return (t.llm["prefix"].format(label_words=" ".join(label_words), sentence=p.sentence),
            t.llm["question"].format(word=p.word))


@dataclass
class Cost:
    """What a run cost: prompts built, model forward passes (batched calls), tokens processed, seconds."""

    sentences: int = 0
    words: int = 0
    prompts: int = 0
    forward_passes: int = 0
    tokens: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("sentences", "words", "prompts", "forward_passes", "tokens")}
        return {**d, "seconds": round(self.seconds, 3), **self.extra}
