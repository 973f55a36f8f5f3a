"""Consensus filter for PVP synthetic points: keep a span only where a second projector reproduces its proposal.

Usage: python eval/pvp_consensus_filter.py OUT_DIR POINTS.jsonl ... [--method pvp] [--adapter DIR]
Every (source span, proposed target span) of the EXP-style point files is projected alone by `--method` (default: the
shipped `pvp`); spans whose projection differs (or abstains) are dropped, records left without spans too. Writes
`OUT_DIR/train.<parent folder>.<rest of the file name>` per input and `verify_counts.json` (points / agreeing).
A ladder rung (`eval/pvp_ladder.sh stage2-consensus`): the verifier of Alg. 2 with a stronger model. Measured
(awesome-proposed UD + name points, shipped pvp as the second projector): 88-97% agree per language; training
stage 2 on the agreeing points did not beat stage 2 on all points (README, PVP ladder).
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    import torch

    from llmie.io.exp import parse_pair
    from llmie.projection.project import project

    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--method", default="pvp")
    ap.add_argument("--adapter", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    kw = {"adapter": args.adapter} if args.adapter else {}
    counts = {}
    for f in args.files:
        recs = [json.loads(line) for line in f.open(encoding="utf-8") if line.strip()]
        singles, owner = [], []
        for i, r in enumerate(recs):
            for j, (s, t) in enumerate(zip(r["src_spans"], r["tgt_spans"])):
                singles.append(parse_pair(dict(r, id=f"{r['id']}#{j}", src_spans=[s], tgt_spans=[t]), file=str(f),
                                          line=i + 1))
                owner.append((i, j))
        keep: dict[int, list[int]] = defaultdict(list)
        for (i, j), doc in zip(owner, project(singles, args.method, "embedded", batch_size=32, **kw)):
            t = recs[i]["tgt_spans"][j]
            if doc.meta.get("status") == "ok" and doc.spans and (doc.spans[0].start, doc.spans[0].end) == (
                    t["start"], t["end"]):
                keep[i].append(j)
        name = f"train.{f.parent.name}.{f.name.split('.', 1)[1]}"
        with (args.out / name).open("w", encoding="utf-8") as fo:
            for i, js in sorted(keep.items()):
                r = recs[i]
                fo.write(json.dumps(dict(r, src_spans=[r["src_spans"][j] for j in js],
                                         tgt_spans=[r["tgt_spans"][j] for j in js],
                                         meta=dict(r.get("meta") or {}, consensus=args.method)),
                                    ensure_ascii=False) + "\n")
        counts[str(f)] = {"points": len(singles), "agree": sum(len(v) for v in keep.values())}
        print(f, counts[str(f)], flush=True)
    (args.out / "verify_counts.json").write_text(json.dumps(counts, indent=1))


if __name__ == "__main__":
    main()
