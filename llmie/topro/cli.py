"""`llmie topro train|eval` (typer sub-app) and the TOPRO side of `llmie eval --bench udpos|masakhaner|uner`.

Kept out of llmie/cli.py so that file stays thin; importing this module is cheap (no torch).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(help="TOPRO: token-level prompt decomposition (encoder MLM verbalizers, LLM zero-shot).",
                  no_args_is_help=True)


def _fail(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _check_task(task: str) -> None:
    if task not in ("ner", "pos"):
        _fail(f"--task must be ner or pos, got {task!r}")


@app.command("train")
def train_cmd(task: str = typer.Option(..., "--task", help="ner | pos"),
              method: str = typer.Option("topro", "--method", help="topro | vanilla (token classification)"),
              model: str = typer.Option("embedded", "--model", help="Encoder: embedded, a folder or a hub id "
                                                                   "(any AutoModelForMaskedLM works as is)."),
              train: Optional[Path] = typer.Option(None, "--train", help="Training file (.conllu / .iob2 / CoNLL); "
                                                   "default UD-EWT train (pos), UNER-EWT dev (ner)."),
              n_train: Optional[int] = typer.Option(300, "--n-train", help="First N training sentences (0: all)."),
              epochs: float = typer.Option(1.0, "--epochs"),
              max_steps: Optional[int] = typer.Option(None, "--max-steps"),
              batch_size: int = typer.Option(16, "--batch-size"),
              lr: float = typer.Option(1e-4, "--lr"),
              head_lr: float = typer.Option(1e-3, "--head-lr", help="LR of untrained parts (built MLM head, "
                                                                  "classifier); 0 = same as --lr"),
              mark: bool = typer.Option(False, "--mark/--no-mark", help="Bracket the target word in the sentence."),
              template: Optional[str] = typer.Option(None, "--template", help="e.g. topro.pos.v1 or a .yaml file"),
              seed: int = typer.Option(42, "--seed"),
              threads: int = typer.Option(1, "--threads"),
              out: Path = typer.Option(..., "--out", help="Model folder to write (with train_log.json)."),
              eval_limit: int = typer.Option(0, "--eval-limit", help="Also score the English test set "
                                                                     "(first N sentences; 0: skip).")) -> None:
    """Train encoder TOPRO (or the vanilla baseline) on English; prints a JSON summary."""
    from llmie.topro.train import ToproTrainConfig, default_file, evaluate, train as run_train
    from llmie.topro.verbalizer import VerbalizerError

    _check_task(task)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    cfg = ToproTrainConfig(task=task, method=method, model=model, train=str(train) if train else None,
                           n_train=n_train or None, epochs=epochs, max_steps=max_steps, batch_size=batch_size, lr=lr,
                           head_lr=head_lr or None,
                           mark=mark, template=template, seed=seed, threads=threads, out=str(out))
    try:
        t = run_train(cfg)
    except (VerbalizerError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    summary: dict[str, Any] = {k: t.log[k] for k in ("sentences", "examples", "steps", "seconds", "loss_first10",
                                                     "loss_last10")}
    summary.update(method=method, task=task, out=str(out))
    if t.verbalizer is not None and t.verbalizer.substitutions:
        summary["verbalizer_substitutions"] = t.verbalizer.substitutions
    if eval_limit:
        from llmie.config import data_dir

        res = evaluate(t, {"en": default_file(task, "test", data_dir())}, limit=eval_limit, out=out / "eval")
        summary["eval"] = res["langs"]["en"]
    typer.echo(json.dumps(summary))


def test_files(task: str, data: Path, langs: list[str] | None, split: str = "test",
               extra: list[str] | None = None) -> dict[str, Path]:
    """{lang: file}: ner en -> UNER English-EWT, other codes -> MasakhaNER; pos en -> UD-EWT plus any
    other `pos/ud_<lang>_*/*-ud-<split>.conllu` under the data folder; ``extra`` adds `lang=PATH` items."""
    from llmie.topro.train import default_file

    files: dict[str, Path] = {}
    if task == "ner":
        for lang in langs or ["en"]:
            files[lang] = (default_file("ner", split, data) if lang in ("en", "eng")
                           else data / "ner/masakhaner2" / lang / f"{split}.txt")
    else:
        found = {"en": default_file("pos", split, data)}
        for f in sorted(data.glob(f"pos/ud_*/*-ud-{split}.conllu")):
            lang = f.parent.name.split("_")[1]
            found.setdefault(lang, f)
        for lang in langs or list(found):
            if lang not in found:
                raise FileNotFoundError(f"no UD {split} file for language {lang!r} under {data / 'pos'}")
            files[lang] = found[lang]
    for item in extra or []:
        lang, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"--test expects LANG=PATH, got {item!r}")
        files[lang] = Path(path)
    for lang, f in files.items():
        if not f.is_file():
            raise FileNotFoundError(f"{lang}: {f}: no such file (pass --data or set LLMIE_DATA_DIR)")
    return files


def run(task: str, model: str, files: dict[str, Path], *, llm: bool = False, mode: str = "score",
        backend: str = "hf", reuse_prefix: bool = True, mark: bool = False, limit: int | None = None,
        out: Path | None = None, batch_size: int = 64) -> dict[str, Any]:
    """Evaluate a trained encoder folder (``llm=False``) or zero-shot LLM TOPRO on ``files``."""
    from llmie.topro.train import TASK_TEMPLATE, evaluate, load, run_eval

    keep = ("PER", "ORG", "LOC") if task == "ner" else None  # MasakhaNER DATE is outside the TOPRO label set
    if not llm:
        t = load(model)
        if t.template.task != task:
            raise ValueError(f"{model} was trained for task {t.template.task}, not {task}")
        return evaluate(t, files, limit=limit, batch_size=batch_size, out=out, keep_types=keep)
    from llmie.topro.decompose import load_template
    from llmie.topro.llm import build

    lt = build(load_template(TASK_TEMPLATE[task]), model, backend, reuse_prefix=reuse_prefix, mark=mark)
    if mode == "score":
        fn = lambda s: lt.score(s, reuse_prefix=reuse_prefix)[:2]  # noqa: E731
    elif mode == "generate":
        fn = lt.generate
    else:
        raise ValueError(f"--mode must be score or generate, got {mode!r}")
    try:
        return run_eval(fn, task, files, {"method": f"topro-llm ({mode})", "model": model, "backend": backend,
                                         "template": lt.template.name, "verbalizer": lt.verb.as_dict()},
                        limit=limit, out=out, keep_types=keep)
    finally:
        lt.backend.close()


@app.command("eval")
def eval_cmd(task: str = typer.Option(..., "--task", help="ner | pos"),
             model: str = typer.Option(..., "--model", help="Folder from `llmie topro train`, or with --llm an LLM "
                                                            "(embedded, a folder, a hub id)."),
             llm: bool = typer.Option(False, "--llm", help="Zero-shot LLM TOPRO (next-token scoring)."),
             mode: str = typer.Option("score", "--mode", help="LLM: score (restricted next token) | generate "
                                                              "(generate, then match label words)"),
             backend: str = typer.Option("hf", "--backend", help="LLM backend: hf (KV prefix reuse) | vllm"),
             reuse_prefix: bool = typer.Option(True, "--reuse-prefix/--no-reuse-prefix",
                                               help="LLM: share the sentence prefix across the m prompts."),
             mark: bool = typer.Option(False, "--mark/--no-mark", help="LLM: bracket the target word."),
             langs: Optional[str] = typer.Option(None, "--langs", help="ner: en (UNER) and MasakhaNER codes, e.g. "
                                                                      "en,hau,swa; pos: en (UD-EWT) or other UD."),
             test: list[str] = typer.Option([], "--test", help="Extra test file LANG=PATH (repeatable)."),
             data: Optional[Path] = typer.Option(None, "--data", help="Data folder (default $LLMIE_DATA_DIR)."),
             split: str = typer.Option("test", "--split"),
             limit: Optional[int] = typer.Option(None, "--limit", help="First N sentences per language."),
             out: Optional[Path] = typer.Option(None, "--out", help="Write results.json + predictions."),
             batch_size: int = typer.Option(64, "--batch-size"),
             threads: int = typer.Option(1, "--threads")) -> None:
    """Score TOPRO per language: seqeval F1 (NER), token weighted F1, and cost (prompts, passes, seconds)."""
    import torch

    from llmie.config import data_dir
    from llmie.topro.train import markdown
    from llmie.topro.verbalizer import VerbalizerError

    _check_task(task)
    torch.set_num_threads(max(1, threads))
    try:
        files = test_files(task, data or data_dir(), langs.split(",") if langs else None, split, test)
        res = run(task, model, files, llm=llm, mode=mode, backend=backend, reuse_prefix=reuse_prefix, mark=mark,
                  limit=limit, out=out, batch_size=batch_size)
    except (VerbalizerError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    typer.echo(markdown(res))
    if out:
        from llmie.io.atomic import atomic_write_text

        atomic_write_text(out / "results.md", markdown(res))
        typer.echo(f"wrote {out / 'results.json'}")


def bench_eval(bench: str, method: str, model: str, data: Path, langs: Optional[str], split: str,
               limit: Optional[int], out: Optional[Path], backend: str) -> None:
    """`llmie eval --bench udpos|masakhaner|uner --method topro|topro-llm`: a trained encoder folder
    (topro) or zero-shot LLM TOPRO (topro-llm, --model an LLM)."""
    from llmie.topro.train import markdown

    task = "pos" if bench == "udpos" else "ner"
    llm = method == "topro-llm"
    if not llm and (model == "embedded" or not (Path(model) / "topro.json").is_file()):
        _fail(f"--bench {bench} --method topro needs --model DIR from `llmie topro train --task {task} --out DIR` "
              "(or --method topro-llm for zero-shot LLM TOPRO)")
    lang_list = langs.split(",") if langs else None
    if bench == "masakhaner" and not lang_list:
        from llmie.bench.ner import MASAKHANER

        lang_list = MASAKHANER
    if bench == "uner":
        lang_list = ["en"]
    try:
        files = test_files(task, data, lang_list, split)
        res = run(task, model, files, llm=llm, backend=backend if backend in ("hf", "vllm") else "hf",
                  limit=limit, out=out)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    res["bench"] = bench
    if out:
        from llmie.io import write_json_atomic

        write_json_atomic(res, out / "results.json")
        from llmie.io.atomic import atomic_write_text

        atomic_write_text(out / "results.md", markdown(res))
    typer.echo(markdown(res))


os.environ.setdefault("OMP_NUM_THREADS", "1")
