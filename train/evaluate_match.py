"""How well `rtverb.match` finds rooms: ``python -m train.evaluate_match --rooms 20``.

Rooms are sampled from the model domain as `train.datagen` samples them, with a seed the
training (1) and truth (2) sets do not use, and simulated once by the reference simulator
(`train.simulate`); each single-run IR is a target. Prints per band the median absolute error
of the matched room's T30 and EDT (%) and C50 (dB), DRR, and the time per match.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from rtverb.matching import match, target_from_ir
from rtverb.matching.target import MATCH_BANDS_HZ
from train.datagen import sample_room

#: Room seed: not 1 (training) nor 2 (truth).
MATCH_SEED = 17


def main(argv: list[str] | None = None) -> int:
    from train.simulate import SIM_RATE_HZ, simulate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"{args.rooms} rooms (seed {MATCH_SEED}), load average {os.getloadavg()[0]:.2f}")
    errors: dict[str, list[np.ndarray]] = {"T30 %": [], "EDT %": [], "C50 dB": []}
    drr, times = [], []
    for i in range(args.rooms):
        room = sample_room(np.random.default_rng([MATCH_SEED, i]))
        sim = simulate(room, seed=i)
        assert sim.rir is not None
        target = target_from_ir(sim.rir, SIM_RATE_HZ, f"room {i}")
        result = match(target, SIM_RATE_HZ)
        m = result.metrics
        errors["T30 %"].append(100 * np.abs(np.array(m.T30_s) / target.T30_s - 1))
        errors["EDT %"].append(100 * np.abs(np.array(m.EDT_s) / target.EDT_s - 1))
        errors["C50 dB"].append(np.abs(np.array(m.C50_db) - target.C50_db))
        drr.append(abs(m.DRR_db - target.DRR_db))
        times.append(result.elapsed_s)
        print(
            f"room {i}: {result.elapsed_s:.1f} s, {result.evaluations} rooms synthesized, "
            f"T30 err % {np.round(errors['T30 %'][-1], 1)}",
            flush=True,
        )
    print(f"\nmedian absolute error over {args.rooms} rooms, per band")
    print(f"{'':8}" + "".join(f"{b:>9g}" for b in MATCH_BANDS_HZ))
    for name, values in errors.items():
        print(f"{name:8}" + "".join(f"{v:9.2f}" for v in np.nanmedian(values, axis=0)))
    print(f"DRR: median {np.nanmedian(drr):.2f} dB")
    print(
        f"time per match: median {np.median(times):.1f} s, max {np.max(times):.1f} s "
        f"(load average now {os.getloadavg()[0]:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
