"""Corpus commands: `llmie project`, `llmie extract`, `llmie synth`.

One run path: inputs from the one reader (llmie.io.records: a failed record per bad line, the run goes
on), a job (llmie.scale.jobs) run by ``llmie.scale.run`` with ``--engine local`` (this process) or
``ray`` (actor pool); both resume into the same --out and write the same bytes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from llmie.cli.common import (ADDRESS_OPT, BEST_RUN_HELP, DEVICE_OPT, ELISION_HELP, ENGINE_OPT, GPUS_OPT,
                              WORKERS_OPT, app, fail, set_threads)


def _run(job: dict, records: list, out: Path, what: str, **kw) -> dict:
    """llmie.scale.run with a progress bar; errors (a model that does not load, Ray missing) are one line."""
    from rich.progress import Progress

    from llmie.scale import run

    try:
        with Progress(transient=True) as prog:
            task = prog.add_task(what, total=len(records))
            return run(job, records, out, progress=lambda n: prog.update(task, advance=n), **kw)
    except (ImportError, RuntimeError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    return {}


def _read(reader, inp: Path) -> list:
    from llmie.schema import LlmieDataError

    if not inp.exists():
        fail(f"{inp}: no such file")
    try:
        return list(reader(inp))
    except (LlmieDataError, FileNotFoundError, ValueError) as e:
        fail(str(e))
    return []


@app.command("project")
def project_cmd(inp: Path = typer.Option(..., "--in", help="EXP-style pairs: JSONL, Parquet file/folder or a datasets folder (tgt_spans optional)."),
            out: Path = typer.Option(..., "--out", help="Output llmie JSONL: target documents with spans + status."),
            method: str = typer.Option("awesome", "--method", help="awesome | binary | binary-w | pvp | llm"),
            model: str = typer.Option("embedded", "--model", help="Encoder (llm: the LLM): embedded, a local "
                                                                  "folder or a hub id."),
            backend: str = typer.Option("hf", "--backend", help="llm: hf | vllm | openai (with --model "
                                                                "openai:<url>#<name>)."),
            batch_size: int = typer.Option(32, "--batch-size"),
            threads: int = typer.Option(1, "--threads", help="torch threads (1 is fastest on a shared 2-core box)."),
            adapter: Optional[str] = typer.Option(None, "--adapter", help="binary/pvp: trained folder (default: "
                                                                          "the one shipped with llmie); llm: a "
                                                                          "LoRA adapter (llmie sft/dpo output)."),
            best_run: bool = typer.Option(True, "--best-run/--strict-runs", help=BEST_RUN_HELP),
            elision: bool = typer.Option(False, "--elision", help=ELISION_HELP),
            chunk: int = typer.Option(256, "--chunk", help="Pairs per step (each step is appended to --out); ray: "
                                                           "pairs per shard."),
            engine: str = ENGINE_OPT, address: Optional[str] = ADDRESS_OPT, workers: int = WORKERS_OPT,
            gpus: float = GPUS_OPT, device: str = DEVICE_OPT,
            ) -> None:
    """Project source spans onto target texts; each output record has meta.status ok|failed (+ reason).

    Resumable: rerun with the same --out and finished records are kept and skipped."""
    from llmie.io.records import read_pairs
    from llmie.projection.project import METHODS
    from llmie.scale.jobs import project_job

    if method not in METHODS:
        fail(f"unknown method {method!r}; available: {', '.join(METHODS)}")
    records = _read(read_pairs, inp)
    set_threads(threads)
    job = project_job(method, model, batch_size, adapter, best_run, elision, threads if engine == "local" else 1,
                      backend, device)
    st = _run(job, records, out, f"projecting ({method})", engine=engine, chunk=max(1, chunk), workers=workers,
              address=address, num_gpus=gpus)
    typer.echo(json.dumps(st))


@app.command("extract")
def extract_cmd(task: str = typer.Option("ner", "--task", help="ner | re | sf | ed | ee"),
            labels: str = typer.Option(..., "--labels", help="Comma-separated labels, or a schema YAML file."),
            inp: Path = typer.Option(..., "--in", help="llmie JSONL, .txt (one text per line), Parquet file/folder or a datasets folder."),
            out: Path = typer.Option(..., "--out", help="Output llmie JSONL with grounded spans."),
            model: str = typer.Option("embedded", "--model", help="embedded (SmolLM2-135M + the shipped IE adapter), "
                                                                  "embedded-base (no adapter), a folder, a .gguf, a "
                                                                  "hub id, or openai:<url>#<name>"),
            adapter: Optional[str] = typer.Option(None, "--adapter", help="A LoRA adapter folder (llmie sft output) "
                                                                          "to extract with (vllm LoRA / hf peft)."),
            backend: str = typer.Option("vllm", "--backend", help="vllm | openai | hf"),
            api_base: Optional[str] = typer.Option(None, "--api-base", help="OpenAI-compatible server URL."),
            template: Optional[str] = typer.Option(None, "--template", help="Prompt template, e.g. massie.ner.v1."),
            prompt: Optional[Path] = typer.Option(None, "--prompt", help="An `llmie optimize --out` folder (uses its "
                                                                         "template.yaml) or a template YAML."),
            constrained: bool = typer.Option(True, "--constrained/--no-constrained",
                                             help="JSON-schema constrained decoding."),
            keep_unaligned: bool = typer.Option(False, "--keep-unaligned", help="Keep predicted spans not found "
                                                "in the text (null offsets); default: dropped, listed in "
                                                "meta.dropped_unaligned."),
            chunk: int = typer.Option(64, "--chunk", help="Documents per backend call (results saved per chunk); "
                                                          "ray: documents per shard."),
            engine: str = ENGINE_OPT, address: Optional[str] = ADDRESS_OPT, workers: int = WORKERS_OPT,
            gpus: float = GPUS_OPT,
            ) -> None:
    """Extract with batched-schema prompts; resumable (ids already in --out are skipped)."""
    from llmie.io.records import read_docs
    from llmie.massie.prompt import schema_for
    from llmie.scale.jobs import extract_job

    if labels.endswith((".yaml", ".yml")):
        from llmie.bench.ner import load_schema
        schema = load_schema(labels)
    else:
        try:
            schema = schema_for(task, labels)
        except ValueError as e:
            fail(str(e))
    docs = _read(read_docs, inp)
    if prompt is not None:
        template = str(prompt / "template.yaml" if prompt.is_dir() else prompt)
        if not Path(template).exists():
            fail(f"{template}: no such prompt template")
    if adapter is not None:
        from llmie.models import peft_adapter

        try:
            peft_adapter(adapter, "--adapter")
        except FileNotFoundError as e:
            fail(str(e))
    job = extract_job(schema, backend, model, api_base, template, constrained, keep_unaligned=keep_unaligned,
                      adapter=adapter)
    st = _run(job, docs, out, "extracting", engine=engine, chunk=max(1, chunk), workers=workers, address=address,
              num_gpus=gpus)
    n_spans = n_unaligned = n_dropped = n_invalid = 0
    for line in out.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        n_spans += len(d.get("spans", []))
        n_unaligned += (d["meta"].get("counts") or {}).get("unaligned", 0)
        n_dropped += len(d["meta"].get("dropped_unaligned") or [])
        n_invalid += d["meta"].get("parse_status") == "invalid"
    typer.echo(json.dumps(st | {"spans": n_spans, "unaligned": n_unaligned, "dropped_unaligned": n_dropped,
                                "invalid_answers": n_invalid}))


@app.command("synth")
def synth_cmd(out: Path = typer.Option(..., "--out", help="Folder for train/dev/rejected EXP-style JSONL."),
          langs: str = typer.Option("por,spa", "--langs", help="Target languages (MT must support en->X)."),
          src: Optional[Path] = typer.Option(None, "--src", help="English llmie JSONL/.iob2 with spans (default: "
                                                                 "UNER English-EWT dev)."),
          seeds: str = typer.Option("names", "--seeds", help="names (the --src spans) | ud (NP/COMPOUND/NUM/DATE/ARG "
                                                             "spans of UD English-EWT train) | all (both)"),
          translator: str = typer.Option("auto", "--translator", help="auto | bergamot | apertium | nllb"),
          proposer: str = typer.Option("binary", "--proposer", help="binary | awesome"),
          n_train: int = typer.Option(1000, "--n-train"), n_dev: int = typer.Option(100, "--n-dev"),
          verify: bool = typer.Option(True, "--verify/--no-verify", help="Back-projection verifier (Alg. 2)."),
          seed: int = typer.Option(13, "--seed"), threads: int = typer.Option(1, "--threads"),
          chunk: int = typer.Option(256, "--chunk", help="Seeds per step (one MT batch per language + one "
                                                         "proposer batch; saved per step); ray: seeds per shard."),
          engine: str = ENGINE_OPT, address: Optional[str] = ADDRESS_OPT, workers: int = WORKERS_OPT,
          gpus: float = GPUS_OPT,
          mt_cache: Optional[str] = typer.Option(None, "--mt-cache", help="Translation cache (sqlite path; "
                                                                          "'none' = off; default CACHE/mt.sqlite)."),
          ) -> None:
    """PVP synthetic data: translate English spans, propose (Alg. 1), verify (Alg. 2), write points.

    Resumable: rerun the same command and finished seeds (local) or shards (ray) are skipped."""
    from llmie.datasets import check_trainable, uner_en
    from llmie.io import read_documents, write_json_atomic
    from llmie.projection.synth import synthesize

    set_threads(threads)
    if engine not in ("local", "ray"):
        fail(f"unknown --engine {engine!r}; choose local or ray")
    path = src or uner_en("dev")
    if not path.exists():
        fail(f"{path}: no such file")
    try:
        check_trainable(path, "synthetic training data")
    except ValueError as e:
        fail(str(e))
    if seeds not in ("names", "ud", "all"):
        fail(f"unknown --seeds {seeds!r}; choose names, ud or all")
    try:
        docs = list(read_documents(path, lang="en")) if seeds != "ud" else []
        if seeds != "names":
            from llmie.projection.seeds import ud_seed_docs

            # UNER English-EWT ids are UD-EWT sentence ids: prefix so `all` keeps every id unique
            docs += [d.model_copy(update={"id": f"ud:{d.id}"}) for d in ud_seed_docs()]
    except (ValueError, FileNotFoundError) as e:
        fail(str(e))
    try:
        res = synthesize(docs, langs.split(","), out, translator=translator, proposer=proposer, n_train=n_train,
                         n_dev=n_dev, seed=seed, verify=verify, engine=engine, chunk=max(1, chunk), workers=workers,
                         address=address, mt_cache=mt_cache, num_gpus=gpus)
    except (ImportError, RuntimeError, ValueError, FileNotFoundError) as e:
        fail(str(e))
    write_json_atomic({"src": str(path), "seeds": seeds, "proposer": proposer, "verify": verify,
                       "counts": res["counts"], "kinds": res["kinds"], "run": res["run"]}, out / "counts.json")
    typer.echo(json.dumps({"kinds": res["kinds"]}))
    typer.echo(json.dumps(res["counts"]))  # the summary stays the last line, as for every command
