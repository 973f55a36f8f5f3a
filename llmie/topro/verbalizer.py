"""Verbalizers: label -> one vocabulary token, checked against the tokenizer in use.

The paper's rule is that every label word is a single token of the model's vocabulary (that is why
"adjective" is not used). A template lists candidates per label; the first candidate that encodes to
exactly one non-unknown token (with its leading space, as it follows ": " or "is" in the prompt) is
used and any fallback is recorded as a substitution. With ``first_piece=True`` (LLM scoring, as in the
authors' code) a multi-piece word is scored by its first piece, but first pieces must stay distinct.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from llmie.topro.decompose import Template


class VerbalizerError(ValueError):
    """A label has no usable word in this tokenizer (message names template, label and pieces)."""


@dataclass
class ResolvedVerbalizer:
    labels: list[str]
    words: list[str]
    token_ids: list[int]
    substitutions: dict[str, dict[str, str]] = field(default_factory=dict)  # label -> {"wanted", "used", "why"}

    def as_dict(self) -> dict:
        return {"labels": self.labels, "words": self.words, "token_ids": self.token_ids,
                "substitutions": self.substitutions}


def pieces(tokenizer, word: str) -> list[int]:
    """Token ids of ``word`` as it appears after a space, without special tokens."""
    return list(tokenizer(" " + word, add_special_tokens=False)["input_ids"])


def resolve_verbalizer(template: Template, tokenizer, *, strict: bool = False,
                       first_piece: bool = False) -> ResolvedVerbalizer:
    """Pick one word per label; raise VerbalizerError when a label has no single-token word.

    ``strict``: only the first candidate is allowed (no substitution).
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
    labels, words, ids, subs = [], [], [], {}
    for label, cands in template.verbalizer.items():
        tried = []
        chosen = None
        for k, w in enumerate(cands[:1] if strict else cands):
            p = pieces(tokenizer, w)
            toks = tokenizer.convert_ids_to_tokens(p)
            tried.append(f"{w!r} -> {toks}")
            if p and (len(p) == 1 or first_piece) and p[0] != unk:
                chosen = (w, p[0])
                if k:
                    subs[label] = {"wanted": cands[0], "used": w, "why": tried[0] + " is not one token"}
                break
        if chosen is None:
            raise VerbalizerError(
                f"verbalizer {template.name}: label {label} has no single-token word in tokenizer {name}: "
                + "; ".join(tried) + " (add a single-token candidate to " + (template.path or "the template") + ")")
        labels.append(label)
        words.append(chosen[0])
        ids.append(chosen[1])
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        clash = [f"{lab}={w}" for lab, w, i in zip(labels, words, ids) if i in dup]
        raise VerbalizerError(f"verbalizer {template.name}: labels share a token in {name}: {', '.join(clash)} "
                              "(the label-to-token map must be bijective)")
    return ResolvedVerbalizer(labels, words, ids, subs)
