"""TOPRO benchmark (heavy; CPU-sized budgets): encoder TOPRO vs vanilla, zero-shot MasakhaNER, LLM TOPRO cost.

    OMP_NUM_THREADS=1 .venv/bin/python eval/bench_topro.py --out runs/topro_bench

1. UD-EWT English POS and UNER English NER: encoder TOPRO vs vanilla token classification, same encoder
   (embedded multilingual-e5-small), same training sentences; vanilla twice: same epochs (the paper's budget)
   and same number of optimizer steps as TOPRO (a stronger baseline). Both metrics (seqeval F1 for NER,
   token-level weighted F1 for both), plus cost (prompts, forward passes, seconds).
2. Zero-shot NER on MasakhaNER languages with the English-trained NER models (DATE gold -> O: the models
   know PER/ORG/LOC only).
3. LLM TOPRO (embedded SmolLM2-135M-Instruct, hf backend) on UNER English test words: restricted scoring
   with and without KV prefix reuse (same predictions; seconds and tokens), against one sentence-level
   prompt (prefill only, and prefill + decoding 2 tokens per word), and generate-then-match.
Results: OUT/results.json and OUT/results.md (rewritten after every stage).
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from llmie.settings import data_dir
from llmie.topro.train import ToproTrainConfig, default_file, evaluate, read_tagged, scores, train


def _write(res: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1))
    (out / "results.md").write_text(markdown(res))


def markdown(res: dict) -> str:
    lines = ["# TOPRO benchmark (CPU, 1 thread)", "", "## Encoder (multilingual-e5-small), English training",
             "", "| task | method | train sents | steps | train s | test lang | n | seqeval F1 | token wF1 | acc | "
             "prompts | fwd passes | test s |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in res.get("encoder", {}).items():
        tr = r["train"]
        for lang, v in r["eval"]["langs"].items():
            c = v["cost"]
            lines.append(f"| {r['task']} | {r['method_label']} | {tr['sentences']} | {tr['steps']} | {tr['seconds']} | "
                         f"{lang} | {v['n']} | {v.get('seqeval_f1', '-')} | {v['token_weighted_f1']} | "
                         f"{v['token_accuracy']} | {c['prompts']} | {c['forward_passes']} | {c['seconds']} |")
    if "llm" in res:
        L = res["llm"]
        lines += ["", f"## LLM TOPRO ({L['model']}, hf backend, {L['words']} words / {L['sentences']} sentences)", "",
                  "| run | token wF1 | seqeval F1 | tokens | forward passes | seconds |", "|---|---|---|---|---|---|"]
        for k, v in L["runs"].items():
            lines.append(f"| {k} | {v.get('token_weighted_f1', '-')} | {v.get('seqeval_f1', '-')} | "
                         f"{v['cost']['tokens']} | {v['cost']['forward_passes']} | {v['cost']['seconds']} |")
        lines += ["", "ratios: " + json.dumps(L["ratios"])]
    if "vllm" in res:
        V = res["vllm"]
        lines += ["", f"## vLLM restricted scoring ({V['words']} words / {V['sentences']} sentences)", "",
                  "| run | token wF1 | seqeval F1 | prompt tokens | cached tokens | seconds |", "|---|---|---|---|---|---|"]
        for k, v in V["runs"].items():
            lines.append(f"| {k} | {v['token_weighted_f1']} | {v['seqeval_f1']} | {v['cost']['tokens']} | "
                         f"{v['cost'].get('cached_tokens', '-')} | {v['cost']['seconds']} |")
        lines += ["", f"off/on seconds: {V['off/on (seconds)']}"]
    return "\n".join(lines) + "\n"


def encoder_part(args, res: dict, out: Path, data: Path) -> None:
    res.setdefault("encoder", {})
    for task in args.tasks.split(","):
        n_train = args.n_train_pos if task == "pos" else args.n_train_ner
        files = {"en": default_file(task, "test", data)}
        if task == "pos" and args.pos_extra:  # e.g. pt=runs/silver_pos/pt_silver-ud-test.conllu (build_silver_pos.py)
            files.update(dict(kv.split("=", 1) for kv in args.pos_extra.split(",")))
        extra = {}
        if task == "ner" and args.masakhaner:
            extra = {lang: data / "ner/masakhaner2" / lang / "test.txt" for lang in args.masakhaner.split(",")}
        topro_steps = None
        for label, method, kw in (("TOPRO", "topro", {}), ("vanilla (same epochs)", "vanilla", {}),
                                  ("vanilla (same steps)", "vanilla", {"steps": True})):
            key = f"{task}:{label}"
            if key in res["encoder"]:
                topro_steps = topro_steps or (res["encoder"][f"{task}:TOPRO"]["train"]["steps"])
                continue
            cfg = ToproTrainConfig(task=task, method=method, n_train=n_train, epochs=args.epochs, lr=args.lr,
                                   head_lr=args.head_lr or None, batch_size=args.batch_size, seed=args.seed, mark=args.mark, log_every=20)
            if kw.get("steps"):
                cfg.epochs, cfg.max_steps = 10_000, topro_steps
            t = train(cfg, data)
            if method == "topro":
                topro_steps = t.log["steps"]
            ev = evaluate(t, files, limit=args.n_test)
            if extra:
                ev_mk = evaluate(t, extra, limit=args.n_mk, keep_types=("PER", "ORG", "LOC"))
                ev["langs"].update(ev_mk["langs"])
                ev["masakhaner_avg"] = ev_mk["avg"]
            tr = {k: t.log[k] for k in ("sentences", "examples", "steps", "seconds", "loss_first10", "loss_last10")}
            res["encoder"][key] = {"task": task, "method": method, "method_label": label, "train": tr,
                                   "config": t.log["config"], "verbalizer": t.log["verbalizer"], "eval": ev}
            _write(res, out)
            del t


def llm_part(args, res: dict, out: Path, data: Path) -> None:
    from llmie.topro.decompose import load_template
    from llmie.topro.llm import build, for_seqeval

    _, sents, gold = read_tagged(default_file("ner", "test", data), "ner", limit=2000)
    pick, n = [], 0
    for s, g in zip(sents, gold):  # sentences with an entity first would bias; take them in file order
        if n >= args.llm_words:
            break
        pick.append((s, g))
        n += len(s)
    sents, gold = [p[0] for p in pick], [p[1] for p in pick]
    lt = build(load_template("topro.ner.v1"), "embedded", "hf", cache=False)
    runs: dict = {}
    res["llm_partial"] = runs  # written after each run, so a crash keeps what finished
    tags_r, c_r, lp_r = lt.score(sents, reuse_prefix=True)
    runs["score, prefix reuse"] = {**scores(gold, for_seqeval(tags_r), "ner"), "cost": c_r.as_dict()}
    _write(res, out)
    tags_n, c_n, lp_n = lt.score(sents, reuse_prefix=False, batch_size=16)
    runs["score, no reuse"] = {**scores(gold, for_seqeval(tags_n), "ner"), "cost": c_n.as_dict(),
                               "same_predictions": tags_n == tags_r,
                               "max_abs_logprob_diff": float((lp_r - lp_n).abs().max())}
    _write(res, out)
    runs["one sentence-level prompt (prefill)"] = {"cost": lt.sentence_level_cost(sents).as_dict()}
    _write(res, out)
    runs["one sentence-level prompt (prefill + 2 tokens/word)"] = {"cost": lt.sentence_generate_cost(sents).as_dict()}
    _write(res, out)
    g_sents = sents[: max(1, len(sents) * args.gen_share // 100)]
    tags_g, c_g = lt.generate(g_sents)
    runs[f"generate-then-match ({len(g_sents)} sents)"] = {
        **scores(gold[:len(g_sents)], tags_g, "ner"), "cost": c_g.as_dict()}  # <none>: wrong for token F1, O for seqeval
    sec = {k: v["cost"]["seconds"] for k, v in runs.items()}
    tok = {k: v["cost"]["tokens"] for k, v in runs.items()}
    ratios = {
        "no_reuse/reuse (seconds)": round(sec["score, no reuse"] / sec["score, prefix reuse"], 2),
        "no_reuse/reuse (tokens)": round(tok["score, no reuse"] / tok["score, prefix reuse"], 2),
        "reuse/sentence prefill (seconds)": round(sec["score, prefix reuse"] / sec["one sentence-level prompt (prefill)"], 2),
        "reuse/sentence prefill (tokens)": round(tok["score, prefix reuse"] / tok["one sentence-level prompt (prefill)"], 2),
        "reuse/sentence prefill+decode (seconds)": round(
            sec["score, prefix reuse"] / sec["one sentence-level prompt (prefill + 2 tokens/word)"], 2),
        "no_reuse/sentence prefill (seconds)": round(sec["score, no reuse"] / sec["one sentence-level prompt (prefill)"], 2),
    }
    res.pop("llm_partial", None)
    res["llm"] = {"model": "SmolLM2-135M-Instruct (embedded)", "template": "topro.ner.v1", "sentences": len(sents),
                  "words": sum(len(s) for s in sents), "verbalizer": lt.verb.as_dict(), "runs": runs, "ratios": ratios}
    lt.backend.close()
    _write(res, out)


def vllm_part(args, res: dict, out: Path, data: Path) -> None:
    """Restricted scoring on the vLLM engine (allowed_token_ids, 1 token), prefix caching on vs off."""
    from llmie.topro.decompose import load_template
    from llmie.topro.llm import build, for_seqeval

    _, sents, gold = read_tagged(default_file("ner", "test", data), "ner", limit=2000)
    n, k = 0, 0
    while k < len(sents) and n < args.llm_words:
        n += len(sents[k])
        k += 1
    sents, gold = sents[:k], gold[:k]
    runs = {}
    for caching in (True, False):
        lt = build(load_template("topro.ner.v1"), "embedded", "vllm", reuse_prefix=caching, cache=False)
        lt.score(sents[:2])  # warm-up (graph/first-batch costs are not prefix effects)
        tags, cost, _ = lt.score(sents)
        runs[f"vllm score, prefix caching {'on' if caching else 'off'}"] = {
            **scores(gold, for_seqeval(tags), "ner"), "cost": cost.as_dict()}
        lt.backend.close()
    on, off = runs["vllm score, prefix caching on"], runs["vllm score, prefix caching off"]
    res["vllm"] = {"sentences": len(sents), "words": sum(len(s) for s in sents), "runs": runs,
                   "off/on (seconds)": round(off["cost"]["seconds"] / on["cost"]["seconds"], 2)}
    _write(res, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/topro_bench"))
    ap.add_argument("--tasks", default="pos,ner")
    ap.add_argument("--n-train-pos", type=int, default=200)
    ap.add_argument("--n-train-ner", type=int, default=300)
    ap.add_argument("--n-test", type=int, default=150)
    ap.add_argument("--masakhaner", default="hau,swa,yor")
    ap.add_argument("--pos-extra", default="", help="more POS test files, lang=path,... (eval/build_silver_pos.py)")
    ap.add_argument("--n-mk", type=int, default=60)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--head-lr", type=float, default=1e-3, help="LR of the untrained head parts (0: = --lr)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--mark", action="store_true", help="mark the target word (repeated-word fix)")
    ap.add_argument("--llm-words", type=int, default=300)
    ap.add_argument("--gen-share", type=int, default=50, help="percent of the LLM sentences for generate-then-match")
    ap.add_argument("--skip-encoder", action="store_true")
    ap.add_argument("--skip-llm", action="store_true")
    ap.add_argument("--vllm", action="store_true", help="also measure vLLM prefix caching (two engine starts)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    data = data_dir()
    res = json.loads((args.out / "results.json").read_text()) if (args.out / "results.json").exists() else {}
    res["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    t0 = time.perf_counter()
    if not args.skip_llm:
        llm_part(args, res, args.out, data)
    if not args.skip_encoder:
        encoder_part(args, res, args.out, data)
    if args.vllm:
        vllm_part(args, res, args.out, data)
    res["seconds_total"] = round(time.perf_counter() - t0, 1)
    _write(res, args.out)
    print(markdown(res))


if __name__ == "__main__":
    main()
