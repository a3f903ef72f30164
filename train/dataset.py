"""Shards from `train.datagen` as model inputs and targets."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtverb.room.params import SURFACES
from rtverb.room.room import Room
from rtverb.synth import features
from rtverb.synth.physics import RoomPhysics


@dataclass
class EnvelopeSet:
    """Rooms as arrays: inputs (n, C, N_FRAMES); analytic envelopes, targets (n, 8, N_FRAMES) dB;
    physics features (n, N_PHYSICS_FEATURES)."""

    rooms: list[Room]
    x: np.ndarray
    physics: np.ndarray
    baseline_db: np.ndarray
    target_db: np.ndarray
    metrics: dict[str, np.ndarray]  # measured on the simulated RIRs: key -> (n, runs, ...) arrays
    early: np.ndarray  # (n, 8, N_FRAMES) energy of the exact early part (features.early_energy)
    rir: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rooms)

    def split(self, fraction: float, seed: int) -> tuple[EnvelopeSet, EnvelopeSet]:
        """A seeded random split: (the rest, ``fraction`` of the rooms)."""
        order = np.random.default_rng(seed).permutation(len(self))
        cut = len(self) - max(1, int(round(fraction * len(self))))
        return self.subset(order[:cut]), self.subset(order[cut:])

    def subset(self, idx: np.ndarray) -> EnvelopeSet:
        return EnvelopeSet(
            rooms=[self.rooms[i] for i in idx],
            x=self.x[idx],
            physics=self.physics[idx],
            baseline_db=self.baseline_db[idx],
            target_db=self.target_db[idx],
            metrics={k: v[idx] for k, v in self.metrics.items()},
            early=self.early[idx],
            rir=None if self.rir is None else self.rir[idx],
        )


#: Offsets into `rtverb.synth.features.room_vector`.
_SIZE, _SRC, _LST, _ABS = 0, 3, 6, 10
_SURFACE = {name: i for i, name in enumerate(SURFACES)}


def symmetric_variants(vec: np.ndarray) -> np.ndarray:
    """The 16 room vectors of the same shoebox mirrored along x, y, z and with x, y swapped.

    These are exact symmetries of the simulator (the expected histogram does not change), so
    every variant keeps the room's target: 16 training examples per simulated room.
    ``vec`` (..., ROOM_VECTOR_SIZE) -> (16, ..., ROOM_VECTOR_SIZE).
    """
    out = []
    bands = (features.ROOM_VECTOR_SIZE - _ABS - features.N_BANDS - 2) // 6
    for swap_xy in (False, True):
        for mirror in range(8):
            v = vec.copy()
            walls = v[..., _ABS : _ABS + 6 * bands].reshape(*v.shape[:-1], 6, bands)
            order = list(range(6))
            pairs = (("west", "east"), ("south", "north"), ("floor", "ceiling"))
            for axis, (lo, hi) in enumerate(pairs):
                if mirror >> axis & 1:
                    for start in (_SRC, _LST):
                        v[..., start + axis] = 1 - v[..., start + axis]
                    i, j = _SURFACE[lo], _SURFACE[hi]
                    order[i], order[j] = order[j], order[i]
            if swap_xy:
                for start in (_SIZE, _SRC, _LST):
                    v[..., [start, start + 1]] = v[..., [start + 1, start]]
                for a, b in (("east", "north"), ("west", "south")):
                    i, j = _SURFACE[a], _SURFACE[b]
                    order[i], order[j] = order[j], order[i]
            v[..., _ABS : _ABS + 6 * bands] = walls[..., order, :].reshape(*v.shape[:-1], -1)
            out.append(v)
    return np.stack(out)


def load_shards(
    folder: str | Path, limit: int | None = None, with_rir: bool = False
) -> EnvelopeSet:
    """Read every finished shard in ``folder`` (sorted), at most ``limit`` rooms."""
    paths = sorted(Path(folder).glob("shard_*.npz"))
    if not paths:
        raise FileNotFoundError(
            f"{folder}: no shard_*.npz files; generate data with `python -m train.datagen`"
        )
    rooms: list[Room] = []
    xs, bases, targets, rirs, early, physics_rows = [], [], [], [], [], []
    metrics: dict[str, list[np.ndarray]] = {}
    for path in paths:
        with np.load(path) as shard:
            for i, room_json in enumerate(shard["room_json"]):
                room = Room.from_dict(json.loads(str(room_json)))
                physics = RoomPhysics.of(room)
                x, base = features.model_input(physics)
                rooms.append(room)
                xs.append(x)
                physics_rows.append(features.physics_features(physics))
                bases.append(base)
                targets.append(features.hist_to_frames_db(shard["hist"][i]))
                early.append(features.early_energy(physics).astype(np.float32))
                for key in (
                    "T30_s",
                    "EDT_s",
                    "C50_db",
                    "C80_db",
                    "D50",
                    "DRR_db",
                    "C50_broadband_db",
                ):
                    metrics.setdefault(key, []).append(shard[key][i])
                if with_rir and "rir" in shard:
                    rirs.append(shard["rir"][i])
                if limit is not None and len(rooms) >= limit:
                    break
        if limit is not None and len(rooms) >= limit:
            break
    rir = None
    if rirs:
        length = max(len(r) for r in rirs)
        rir = np.stack([np.pad(r, (0, length - len(r))) for r in rirs])
    return EnvelopeSet(
        rooms=rooms,
        x=np.stack(xs),
        physics=np.stack(physics_rows),
        baseline_db=np.stack(bases).astype(np.float32),
        target_db=np.stack(targets),
        metrics={k: np.stack(v) for k, v in metrics.items()},
        early=np.stack(early),
        rir=rir,
    )
