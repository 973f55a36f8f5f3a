"""Corpus runs (DESIGN.md §7): `--engine local|ray` for `llmie project`, `llmie extract` and `llmie synth`.

Inputs come from the one reader, `llmie.io.records` (read_pairs / read_docs).

`jobs` holds the one code path per command (model loaded once, records -> Documents); `engine` runs it
in this process or as a Ray Data actor pool with sharded, resumable output. Ray is the optional extra
`llmie[scale]`; nothing here imports it unless `--engine ray` is asked for.
"""
from llmie.scale.engine import ENGINES, run, run_local, run_ray
from llmie.scale.jobs import Runner, extract_job, project_job, synth_job

__all__ = ["ENGINES", "Runner", "extract_job", "project_job", "run", "run_local", "run_ray", "synth_job"]
