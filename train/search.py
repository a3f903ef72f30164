"""Random hyperparameter search: ``python -m train.search --trials 8 --epochs 15``.

Each trial samples a configuration (seeded), trains it briefly with `train.fit` on the same
split, and the table of validation losses is printed and saved (``runs/search/results.json``).
Trials already in the results file are skipped, so an interrupted search resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from train.dataset import load_shards
from train.fit import FitConfig, fit
from train.model import ModelConfig

SPACE = {
    "width": [16, 24, 32, 48],
    "modes": [16, 32, 48, 64],
    "layers": [3, 4, 5],
    "lr": [5e-4, 1e-3, 2e-3, 4e-3],
    "weight_decay": [0.0, 1e-5, 1e-4, 1e-3],
    "batch_size": [8, 16, 32],
}
# The loss weights stay fixed: validation losses of different weightings do not compare.


def sample(rng: np.random.Generator) -> dict:
    return {k: v[int(rng.integers(len(v)))] for k, v in SPACE.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data/train")
    p.add_argument("--out", type=Path, default=Path("runs/search"))
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--limit", type=int, default=None, help="rooms to use")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else []
    data = load_shards(args.data, limit=args.limit)
    rng = np.random.default_rng(args.seed)
    for trial in range(args.trials):
        params = sample(rng)
        if trial < len(results):
            continue
        model = ModelConfig(
            **{k: v for k, v in params.items() if k in ("width", "modes", "layers")}
        )
        cfg = FitConfig(
            out=str(args.out / f"trial_{trial:03d}"),
            epochs=args.epochs,
            seed=args.seed,
            patience=args.epochs,
            model=model,
            **{k: v for k, v in params.items() if k in ("lr", "weight_decay", "batch_size")},
        )
        state = fit(cfg, data=data, log=lambda s: None)
        results.append(
            {
                "trial": trial,
                **params,
                "best_val": state["best_val"],
                "best_epoch": state["best_epoch"],
                "config": dataclasses.asdict(cfg),
            }
        )
        results_path.write_text(json.dumps(results, indent=1))
        print(f"trial {trial}: {params} -> val {state['best_val']:.3f}", flush=True)
    print("\n| trial | width | modes | layers | lr | weight decay | batch | best val loss (dB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(results, key=lambda r: r["best_val"]):
        print(
            f"| {r['trial']} | {r['width']} | {r['modes']} | {r['layers']} | {r['lr']:g} | "
            f"{r['weight_decay']:g} | {r['batch_size']} | {r['best_val']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
