"""Each loss term between two independent simulations of the same rooms: the labels' noise.

``python -m train.noise_floor --one data/twin1 --two data/twin2 [--run runs/enc]``

``--one`` holds the rooms simulated once and ``--two`` the same rooms (same ``--seed``)
simulated twice, so its first run is ``--one``'s: the second run's histogram is twice
``--two``'s mean minus ``--one``'s, and its metrics are stored per run. The terms of
`train.fit` between run 2 (as the prediction) and run 1 (as the target) are what no model can
go below on single-run labels; ``--run`` prints a training run's validation terms beside them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from rtverb.synth import features
from train.dataset import load_shards
from train.fit import envelope_terms, head_labels, head_terms


def _hists(folder: str) -> np.ndarray:
    paths = sorted(Path(folder).glob("shard_*.npz"))
    return np.concatenate([np.load(p)["hist"] for p in paths]).astype(np.float64)


def noise_floor(one: str, two: str) -> dict[str, float]:
    """The loss terms between two runs of each room (means over rooms)."""
    first, both = load_shards(one), load_shards(two)
    if [r.to_dict() for r in first.rooms] != [r.to_dict() for r in both.rooms]:
        raise SystemExit(f"{one} and {two} do not hold the same rooms; use the same --seed")
    if both.metrics["T30_s"].shape[1] != 2:
        raise SystemExit(f"{two}: expected rooms simulated twice (train.datagen --runs 2)")
    h1 = _hists(one)
    h2 = np.maximum(2 * _hists(two) - h1, 0.0)
    run1 = torch.from_numpy(features.hist_to_frames_db(h1))
    run2 = torch.from_numpy(features.hist_to_frames_db(h2))
    early = torch.from_numpy(first.early)
    terms = {k: v.item() for k, v in envelope_terms(run2, run1, early).items()}
    labels = torch.from_numpy(head_labels(both))  # (n, 2 runs, 3, 7)
    as_heads = torch.nn.functional.pad(labels[:, 1], (0, features.N_BANDS - labels.shape[-1]))
    terms.update({k: v.item() for k, v in head_terms(as_heads, labels[:, :1]).items()})
    return terms


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--one", default="data/twin1", help="the rooms simulated once")
    p.add_argument("--two", default="data/twin2", help="the same rooms simulated twice")
    p.add_argument("--run", type=Path, help="a train.fit output folder: its validation terms")
    args = p.parse_args(argv)
    floor = noise_floor(args.one, args.two)
    model = json.loads((args.run / "state.json").read_text())["val_terms"] if args.run else {}
    print(f"{'term':10s} {'two runs':>10s}" + (f" {'model':>10s}" if model else ""))
    for key, value in floor.items():
        extra = f" {model[key]:10.3f}" if key in model else ""
        print(f"{key:10s} {value:10.3f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
