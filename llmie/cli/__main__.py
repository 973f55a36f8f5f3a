"""`python -m llmie.cli ...` (tests and users without the console script)."""
import sys

from llmie.cli import app

sys.exit(app())
