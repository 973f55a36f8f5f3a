"""The registered benches (llmie.bench.BENCHES): each turns an EvalConfig into one results dict.

Why here and not in the CLI: notebooks and eval/ scripts run a bench with the same defaults as
`llmie eval` (``BENCHES.load("exp").run(EvalConfig("exp", method="pvp"))``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmie.bench import Bench, EvalConfig
from llmie.registry import Registry


def _data(cfg: EvalConfig, sub: str = "") -> Path:
    """--data, else the bench's folder under $LLMIE_DATA_DIR (llmie.datasets)."""
    from llmie import datasets as corpora
    from llmie.settings import data_dir

    root = cfg.data or {"exp": corpora.exp_dir, "word_alignment": corpora.word_alignment_dir}.get(sub, data_dir)()
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder (pass --data or set LLMIE_DATA_DIR)")
    return root


def run_exp(cfg: EvalConfig) -> dict[str, Any]:
    """EXP label projection (EM/SM per file) with any projection method (llmie.projection.METHODS)."""
    from llmie.bench.exp import run_exp as run
    from llmie.projection.project import load_projector

    method = cfg.method or "awesome"
    root = _data(cfg, "exp")
    if cfg.out and (cfg.out / "results.json").exists():
        prev = json.loads((cfg.out / "results.json").read_text(encoding="utf-8"))
        if prev.get("method") != method:
            raise ValueError(f"{cfg.out} holds results of method {prev.get('method')!r}; use another --out")
    try:
        fn = load_projector(method, cfg.model, batch_size=cfg.batch_size, best_run=cfg.best_run,
                            elision=cfg.elision, adapter=cfg.adapter, backend=cfg.backend or "hf",
                            device=cfg.device)
    except (FileNotFoundError, RuntimeError, OSError) as e:
        raise RuntimeError(f"cannot load the {method} projector ({cfg.model}): {e}") from e
    return run(fn, method, root, cfg.out, cfg.pairs, cfg.limit, cfg.adversarial, cfg.files, progress=cfg.progress)


def run_align(cfg: EvalConfig) -> dict[str, Any]:
    """Word-alignment AER on the held-out 20% of each gold file (awesome | binary)."""
    from llmie.bench.align import PAIRS, run_align_bench
    from llmie.projection.project import METHODS, get_aligner

    method = cfg.method or "awesome"
    root = _data(cfg, "word_alignment")
    aligner = get_aligner(method, cfg.model, **METHODS.options(method, adapter=cfg.adapter, device=cfg.device))
    res = run_align_bench(aligner, root, tuple(cfg.pairs) if cfg.pairs else PAIRS, cfg.limit, split="heldout")
    summary = {"bench": "align", "method": method, "split": "heldout (last 20% of each file)", "pairs": res}
    if cfg.out:
        from llmie.io import write_json_atomic

        write_json_atomic(summary, cfg.out / "results.json")
    return summary


def align_markdown(res: dict[str, Any]) -> str:
    return json.dumps(res)


def _massie(cfg: EvalConfig, bench: str) -> dict[str, Any]:
    from llmie.bench.ner import load_schema, run_ner_bench
    from llmie.massie import extract
    from llmie.massie.extract import default_adapter

    root = _data(cfg)
    schema = load_schema(bench)
    be = _backend(cfg)
    try:
        adapter = default_adapter(cfg.model, cfg.backend or "vllm", cfg.adapter)
        return run_ner_bench(bench, lambda docs: extract(docs, schema, backend=be, keep_unaligned=cfg.keep_unaligned,
                                                         adapter=adapter or False),
                             root, cfg.out, cfg.langs, cfg.split, cfg.limit, method="massie", model=cfg.model,
                             progress=cfg.progress, extra={"keep_unaligned": cfg.keep_unaligned, "adapter": adapter})
    finally:
        be.close()


def _transfusion(cfg: EvalConfig, bench: str) -> dict[str, Any]:
    from llmie.transfusion.bench import run_tf_bench, translator_for

    method = cfg.method or "transfusion"
    if method != "plain" and cfg.langs:  # refuse languages without MT before the model loads
        translator_for(method, cfg.langs, cfg.translator, cfg.translations)
    be = _backend(cfg)
    try:
        return run_tf_bench(bench, method, be, _data(cfg), cfg.out, cfg.langs, cfg.split, cfg.limit, model=cfg.model,
                            adapter=cfg.adapter, translator=cfg.translator, translations=cfg.translations,
                            max_tokens=cfg.max_tokens, progress=cfg.progress, keep_unaligned=cfg.keep_unaligned)
    finally:
        be.close()


def _topro(cfg: EvalConfig, bench: str) -> dict[str, Any]:
    from llmie.topro.bench import bench_eval

    return bench_eval(bench, cfg.method or "topro", cfg.model, _data(cfg), cfg.langs, cfg.split, cfg.limit, cfg.out,
                      cfg.backend or "vllm")


def _backend(cfg: EvalConfig):
    from llmie.backends import get_backend

    kw = {"api_base": cfg.api_base} if cfg.api_base else {}
    name = cfg.backend or "vllm"
    try:
        return get_backend(name, cfg.model, cache=True, **kw)
    except (FileNotFoundError, ValueError, RuntimeError, OSError, ImportError) as e:
        raise RuntimeError(f"cannot start the {name} backend for {cfg.model!r}: {e}") from e


# NER method -> runner(cfg, bench): MASSIE batched-schema prompting, TransFusion (plain = no translation), TOPRO
NER_METHODS = Registry("NER bench method", {
    "massie": "llmie.bench.runners:_massie",
    "plain": "llmie.bench.runners:_transfusion",
    "transfusion": "llmie.bench.runners:_transfusion",
    "transfusion-wo-annotate": "llmie.bench.runners:_transfusion",
    "topro": "llmie.bench.runners:_topro",
    "topro-llm": "llmie.bench.runners:_topro",
})


def _ner(bench: str):
    def run(cfg: EvalConfig) -> dict[str, Any]:
        return NER_METHODS.load(cfg.method or "massie")(cfg, bench)
    return run


def ner_markdown(res: dict[str, Any]) -> str:
    if "task" in res:  # TOPRO results
        from llmie.topro.train import markdown

        return markdown(res)
    from llmie.bench.ner import markdown

    return markdown(res)


def _exp_md(res: dict[str, Any]) -> str:
    from llmie.bench.exp import markdown_table

    return markdown_table(res)


def run_udpos(cfg: EvalConfig) -> dict[str, Any]:
    return _topro(cfg, "udpos")


_PROJ = ("awesome", "binary", "binary-w", "pvp", "llm")
EXP = Bench(run_exp, _exp_md, "avg.em", _PROJ, "awesome")
ALIGN = Bench(run_align, align_markdown, "pairs", ("awesome", "binary"), "awesome")
MASAKHANER = Bench(_ner("masakhaner"), ner_markdown, "avg.lf1", tuple(NER_METHODS), "massie")
UNER = Bench(_ner("uner"), ner_markdown, "avg.lf1", tuple(NER_METHODS), "massie")
UDPOS = Bench(run_udpos, ner_markdown, "avg.token_weighted_f1", ("topro", "topro-llm"), "topro")
