"""Benchmark runners behind `llmie eval --bench ...`."""
