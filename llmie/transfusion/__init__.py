"""TransFusion (Chen et al. 2024): GoLLIE-style code prompts, translate-test with fusion, TF training data.

- `prompt`: dataclass guidelines from a `Schema`, the plain / TF / w-o-annotate templates, the prompt split.
- `parse`: `ast`-only parser of `result = [...]` lists + hallucination filter.
- `pipeline.extract_tf`: MT -> one generation (English annotations, then fused target ones) -> grounded spans.
- `data`: TF training rows (roles reversed), translated test sets with projected labels, encoder inputs.
"""
from llmie.transfusion.parse import parse_list, parse_output
from llmie.transfusion.pipeline import METHODS, extract_tf
from llmie.transfusion.prompt import class_map, prompt_for, render, split_prompt

__all__ = ["METHODS", "class_map", "extract_tf", "parse_list", "parse_output", "prompt_for", "render",
           "split_prompt"]
