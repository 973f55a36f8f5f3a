"""`llmie eval --bench NAME`: options -> llmie.bench.EvalConfig -> the registered bench -> its summary."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmie.cli.common import BEST_RUN_HELP, DEVICE_OPT, ELISION_HELP, app, fail, set_threads, split_list


@app.command("eval")
def eval_cmd(bench: str = typer.Option(..., "--bench", help="exp | align | masakhaner | uner | udpos"),
          method: Optional[str] = typer.Option(None, "--method", help="exp: awesome (default) | binary | binary-w | "
                                                                       "pvp | llm; align: awesome | binary; "
                                                                       "masakhaner/uner: massie (default) | plain | "
                                                                       "transfusion | transfusion-wo-annotate | "
                                                                       "topro | topro-llm; udpos: topro | topro-llm"),
          data: Optional[Path] = typer.Option(None, "--data", help="Data folder (default: $LLMIE_DATA_DIR/<bench>)."),
          pairs: Optional[str] = typer.Option(None, "--pairs", help="Comma-separated language pairs, e.g. en-de,en-es."),
          limit: Optional[int] = typer.Option(None, "--limit", help="At most N pairs per file."),
          out: Optional[Path] = typer.Option(None, "--out", help="Write results.json, results.md, predictions, plots."),
          model: str = typer.Option("embedded", "--model", help="Encoder: embedded, a local folder or a hub id."),
          adversarial: bool = typer.Option(False, "--adversarial", help="Also measure the adversarial projection rate."),
          files: Optional[str] = typer.Option(None, "--files", help="Glob of files under --data (default *.test.jsonl)."),
          batch_size: int = typer.Option(32, "--batch-size"),
          threads: int = typer.Option(1, "--threads"),
          langs: Optional[str] = typer.Option(None, "--langs", help="masakhaner: languages, e.g. hau,swa."),
          split: str = typer.Option("test", "--split", help="masakhaner/uner split: train | dev | test."),
          backend: Optional[str] = typer.Option(None, "--backend", help="LLM backend: masakhaner/uner (default "
                                                                        "vllm); exp --method llm (default hf)."),
          api_base: Optional[str] = typer.Option(None, "--api-base", help="OpenAI-compatible server URL."),
          adapter: Optional[str] = typer.Option(None, "--adapter", help="binary/pvp: trained folder; masakhaner/uner "
                                                                        "plain|transfusion: a LoRA adapter folder."),
          translator: str = typer.Option("auto", "--translator", help="transfusion: MT engine for translate-test."),
          translations: Optional[Path] = typer.Option(None, "--translations", help="transfusion: pre-translated "
                                                      "JSONL ({source, translation} rows) instead of MT."),
          max_tokens: int = typer.Option(256, "--max-tokens", help="plain/transfusion: generation budget."),
          best_run: bool = typer.Option(True, "--best-run/--strict-runs", help=BEST_RUN_HELP),
          elision: bool = typer.Option(False, "--elision", help=ELISION_HELP),
          keep_unaligned: bool = typer.Option(False, "--keep-unaligned", help="masakhaner/uner (massie, plain, transfusion): keep "
                                              "predicted spans not found in the text (default: dropped, counted)."),
          device: str = DEVICE_OPT) -> None:
    """Run a benchmark and print its summary; --out writes machine-readable results."""
    from rich.progress import Progress

    from llmie.bench import BENCHES, EvalConfig
    from llmie.schema import LlmieDataError

    if bench not in BENCHES:
        fail(f"unknown bench {bench!r}; available: {', '.join(BENCHES)}")
    b = BENCHES.load(bench)
    if method is not None and method not in b.methods:
        fail(f"--bench {bench} has no method {method!r}; choose one of {', '.join(b.methods)}")
    set_threads(threads)
    cfg = EvalConfig(bench=bench, method=method, data=data, out=out, model=model, limit=limit, pairs=split_list(pairs),
                     files=files, adversarial=adversarial, batch_size=batch_size, langs=split_list(langs), split=split,
                     backend=backend, api_base=api_base, adapter=adapter, translator=translator,
                     translations=translations, max_tokens=max_tokens, best_run=best_run, elision=elision,
                     device=device, keep_unaligned=keep_unaligned)
    with Progress(transient=True) as prog:
        task = prog.add_task(f"{bench} ({method or b.default_method})", total=None)
        cfg.progress = lambda key, n: prog.update(task, advance=n, description=f"{bench} {key}")
        try:
            res = b.run(cfg)
        except (LlmieDataError, ValueError, FileNotFoundError, RuntimeError) as e:
            prog.stop()
            fail(str(e))
    typer.echo(b.markdown(res))
    if out and (out / "results.json").exists():
        typer.echo(f"wrote {out / 'results.json'}")
