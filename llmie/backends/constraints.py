"""Choice-constrained decoding for engines without structured outputs (the hf backend).

``GenRequest.choices`` says "the answer is exactly one of these strings". vLLM does it with
``StructuredOutputsParams(choice=...)``; transformers has no grammar engine, so here each choice is
tokenized on its own (no special tokens: the tokenisation an SFT target gets), followed by the
end-of-turn token, and greedy/sampled decoding walks a token trie of these sequences
(``prefix_allowed_tokens_fn``): the model can only write one of them, then stops.

The tokens every choice starts with (e.g. ``{"span": "``) are appended to the prompt (forced), so the
model is not asked to "choose" them.
"""
from __future__ import annotations

from dataclasses import dataclass


def common_prefix(seqs: list[list[int]]) -> int:
    """Length of the longest common prefix, kept short of every sequence's end."""
    k = 0
    while all(len(x) > k + 1 for x in seqs) and all(x[k] == seqs[0][k] for x in seqs):
        k += 1
    return k


class TokenTrie:
    """Token trie of the allowed answers (each ends with an end-of-turn token)."""

    def __init__(self, seqs: list[list[int]]) -> None:
        self.root: dict[int, dict] = {}
        self.depth = 0
        for s in seqs:
            node = self.root
            for t in s:
                node = node.setdefault(t, {})
            self.depth = max(self.depth, len(s))

    def allowed(self, prefix: list[int]) -> list[int] | None:
        """Tokens allowed after ``prefix`` (None once off the trie or at a leaf)."""
        node = self.root
        for t in prefix:
            node = node.get(t)
            if node is None:
                return None
        return list(node) or None


@dataclass
class ChoiceConstraint:
    """One request's choices as token sequences: ``forced`` goes into the prompt, ``trie`` constrains
    the rest, ``answers`` maps a generated remainder (ending with ``end``) back to its choice string."""

    forced: list[int]
    trie: TokenTrie
    answers: dict[tuple[int, ...], str]
    end: int

    @classmethod
    def build(cls, tokenizer, choices: list[str], end: int) -> ChoiceConstraint:
        ids = tokenizer(list(choices), add_special_tokens=False)["input_ids"]
        seqs = [list(x) + [end] for x in ids]
        k = common_prefix(seqs)
        return cls(seqs[0][:k], TokenTrie([x[k:] for x in seqs]), {tuple(x[k:]): c for x, c in zip(seqs, choices)},
                   end)

    def answer(self, generated: list[int]) -> str | None:
        """The choice that ``generated`` (tokens after the forced prefix) spells, or None."""
        seq = generated[: generated.index(self.end) + 1] if self.end in generated else generated
        return self.answers.get(tuple(seq))
