"""`python -m llmie.cli ...` (tests and users without the console script)."""
from llmie.cli import run

run()
