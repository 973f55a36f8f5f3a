"""TOPRO evaluation runs: the test files of a task and language, encoder or zero-shot LLM TOPRO over them
(`llmie topro eval` and `llmie eval --bench udpos|masakhaner|uner --method topro|topro-llm`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def test_files(task: str, data: Path, langs: list[str] | None, split: str = "test",
               extra: list[str] | None = None) -> dict[str, Path]:
    """{lang: file}: ner en -> UNER English-EWT, other codes -> MasakhaNER; pos en -> UD-EWT plus any
    other `pos/ud_<lang>_*/*-ud-<split>.conllu` under the data folder; ``extra`` adds `lang=PATH` items."""
    from llmie.datasets import masakhaner, ud_files, uner_en

    files: dict[str, Path] = {}
    if task == "ner":
        for lang in langs or ["en"]:
            files[lang] = uner_en(split, data) if lang in ("en", "eng") else masakhaner(lang, split, data)
    else:
        found = ud_files(split, data)
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


def run_topro(task: str, model: str, files: dict[str, Path], *, llm: bool = False, mode: str = "score",
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


def bench_eval(bench: str, method: str, model: str, data: Path, langs: list[str] | None, split: str,
               limit: int | None, out: Path | None, backend: str) -> dict[str, Any]:
    """`llmie eval --bench udpos|masakhaner|uner --method topro|topro-llm`: a trained encoder folder
    (topro) or zero-shot LLM TOPRO (topro-llm, --model an LLM)."""
    from llmie.topro.train import markdown

    task = "pos" if bench == "udpos" else "ner"
    llm = method == "topro-llm"
    if not llm and (model == "embedded" or not (Path(model) / "topro.json").is_file()):
        raise ValueError(f"--bench {bench} --method topro needs --model DIR from `llmie topro train --task {task} "
                         "--out DIR` (or --method topro-llm for zero-shot LLM TOPRO)")
    lang_list = langs
    if bench == "masakhaner" and not lang_list:
        from llmie.bench.ner import MASAKHANER

        lang_list = MASAKHANER
    if bench == "uner":
        lang_list = ["en"]
    files = test_files(task, data, lang_list, split)
    res = run_topro(task, model, files, llm=llm, backend=backend if backend in ("hf", "vllm") else "hf",
                    limit=limit, out=out)
    res["bench"] = bench
    if out:
        from llmie.io import write_json_atomic

        write_json_atomic(res, out / "results.json")
        from llmie.io.atomic import atomic_write_text

        atomic_write_text(out / "results.md", markdown(res))
    return res
