"""Choose the renderer's C50 blend on validation rooms: ``python -m train.blend``.

`rtverb.synth.equalize.C50_BLEND` moves each low band's first 50 ms from the FNO's C50
towards the room encoder's head. This renders the rooms `train.fit` holds out for validation
(its seed and fraction) with the shipped model, without equalization and at several blends,
and prints the median |dC50| and |dEDT| per band against each room's own simulation. Those
labels are single runs (noisier than the held-out truth, the same for every blend), and the
held-out truth (`train.evaluate`) plays no part in the choice.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from rtverb.synth import Synthesizer
from rtverb.synth import equalize as eq
from rtverb.synth.early import early_ir, onset_sample
from rtverb.synth.late import add_late
from rtverb.synth.physics import RoomPhysics
from train.dataset import load_shards
from train.evaluate import RATE_HZ, errors, metrics_of, summary
from train.fit import FitConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="data/train")
    p.add_argument("--rooms", type=int, default=400, help="validation rooms rendered")
    p.add_argument("--blends", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.7])
    args = p.parse_args(argv)
    config = FitConfig()
    _, val = load_shards(args.data).split(config.val_fraction, config.seed)
    val = val.subset(np.arange(min(args.rooms, len(val))))
    labels = {k: np.nanmean(val.metrics[k], axis=1) for k in ("T30_s", "EDT_s", "C50_db", "DRR_db")}
    synth, fs = Synthesizer(), float(RATE_HZ)
    rooms = []
    for room in val.rooms:
        physics = RoomPhysics.of(room)
        envelopes, c50 = synth.envelopes_and_c50_db([physics])
        onset = onset_sample(room.source_position_m, room.listener_position_m, fs)
        rooms.append((early_ir(physics, fs), envelopes[0], onset, None if c50 is None else c50[0]))
    print(f"{len(val)} validation rooms; median over rooms, bands 250-4000 Hz")
    for blend in [None, *args.blends]:
        if blend is not None:
            eq.C50_BLEND = blend
        irs = [
            add_late(early, envelope, fs, None if blend is None else onset, c50)
            for early, envelope, onset, c50 in rooms
        ]
        err = errors(metrics_of(irs, val), labels)
        s = summary(err)
        name = "not equalized" if blend is None else f"blend {blend:g}"
        print(
            f"{name:>14}: C50 {s['C50_median_db']:.3f} dB, per band "
            + " ".join(f"{v:.2f}" for v in np.nanmedian(err["C50"], axis=0))
            + f" | EDT {100 * s['EDT_median']:.2f} % | T30 {100 * s['T30_median']:.2f} %"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
