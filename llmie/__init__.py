"""llmie: multilingual information extraction with LLMs."""
__version__ = "0.1.0"
