"""MASSIE batched-schema prompting: prompts, parsing, grounded extraction."""
from llmie.massie.extract import build_requests, extract, to_document, windows
from llmie.massie.parse import Parsed, parse_answer
from llmie.massie.prompt import batch_labels, load_template, messages, output_schema

__all__ = ["Parsed", "batch_labels", "build_requests", "extract", "load_template", "messages", "output_schema",
           "parse_answer", "to_document", "windows"]
