"""PVP ablation ladder (paper Table 30): proposer-only data -> + verifier -> + pair augmentation -> + WGL.

Each rung trains the projector with the same budget (recipe values, overridable) and is evaluated with
EM/SM/EP on EXP. Synthetic data for the first rung comes from `llmie synth --no-verify`.
Usage: python eval/pvp_ablation.py --data runs/pvp-data --noverify-data runs/pvp-data-noverify \
           --steps 350 --out runs/pvp-ablation [--limit 100]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="verified synthetic data (llmie synth)")
    ap.add_argument("--noverify-data", required=True, help="proposer-only data (llmie synth --no-verify)")
    ap.add_argument("--steps", type=int, default=350)
    ap.add_argument("--limit", type=int, default=None, help="EXP pairs per file")
    ap.add_argument("--out", default="runs/pvp-ablation")
    args = ap.parse_args()
    from llmie.bench.exp import run_exp
    from llmie.settings import data_dir
    from llmie.projection.project import project
    from llmie.projection.train_pvp import load_recipe, train_projector

    out = Path(args.out)
    base = load_recipe("recipes/pvp_encoder.yaml", [f"max_steps={args.steps}"])

    def files(d: str, split: str) -> list[str]:
        return [str(p) for p in sorted(Path(d).glob(f"{split}.*.jsonl"))]

    rungs = {
        "proposer": {"train": files(args.noverify_data, "train"), "dev": files(args.noverify_data, "dev"),
                     "p_swap": 0.0, "p_neg": 0.0, "wgl_k": 1.0},
        "+verifier": {"train": files(args.data, "train"), "dev": files(args.data, "dev"),
                      "p_swap": 0.0, "p_neg": 0.0, "wgl_k": 1.0},
        "+verifier+PA": {"train": files(args.data, "train"), "dev": files(args.data, "dev"), "wgl_k": 1.0},
        "+verifier+PA+WGL": {"train": files(args.data, "train"), "dev": files(args.data, "dev")},
    }
    table = {}
    for name, over in rungs.items():
        folder = train_projector({**base, **over, "out": str(out / name / "model")})
        res = run_exp(lambda pairs, f=str(folder): list(project(pairs, "pvp", adapter=f)), "pvp",
                      data_dir() / "exp", out / name / "exp", limit=args.limit)
        table[name] = res["avg"]
        print(name, json.dumps(res["avg"]), flush=True)
    (out / "ablation.json").write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
