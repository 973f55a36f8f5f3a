"""TOPRO (Ma et al., EACL 2024): token-level prompt decomposition for sequence labelling.

A sentence of m words becomes m prompts (whole sentence + a question about one word); each prompt is
answered by a label word (verbalizer) and the m answers, joined in word order, are the tag sequence.
Encoders answer at a [MASK] (encoder.py, train.py); LLMs answer with their next token (llm.py).
"""
from llmie.topro.decompose import Prompt, decompose, load_template, recompose
from llmie.topro.verbalizer import ResolvedVerbalizer, VerbalizerError, resolve_verbalizer

__all__ = ["Prompt", "decompose", "recompose", "load_template", "resolve_verbalizer", "ResolvedVerbalizer",
           "VerbalizerError"]
