"""The reference simulator: pyroomacoustics' hybrid image-source + ray-tracing shoebox.

The configuration is fixed so results compare across the project: ``max_order=3``,
``ray_tracing=True``, ``air_absorption=True``, `set_ray_tracing` at its defaults except the
number of rays, which is ``ray_factor`` times pyroomacoustics' own default (more rays, less
label noise). One source, one listener, per-surface octave-band materials.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from rtverb.room.params import BANDS_HZ, SURFACES
from rtverb.room.room import Room

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pyroomacoustics as pra  # noqa: E402

#: Simulation rate of the training and truth data. At 48 kHz pyroomacoustics uses 8 octave
#: bands (125 Hz ... 16 kHz), so the model learns all bands a 48 kHz IR needs.
SIM_RATE_HZ = 48000
MAX_ORDER = 3
#: Ray-tracing energy histograms are kept for this many 4 ms bins (4 s).
N_BINS = 1000
HIST_BIN_S = 0.004
#: pyroomacoustics delays every RIR by half its fractional-delay filter (81 taps).
SIM_DELAY_SAMPLES = 40

pra.constants.set("num_threads", 1)


@dataclass
class Simulation:
    hist: np.ndarray  # (bands, N_BINS) ray-tracing energy per 4 ms bin, no air absorption
    rir: np.ndarray | None  # (samples,) float32 at SIM_RATE_HZ
    n_rays: int


def shoebox(room: Room, sample_rate_hz: int = SIM_RATE_HZ, ray_factor: float = 1.0) -> pra.ShoeBox:
    """The reference pyroomacoustics room for ``room``."""
    absorption = room.absorption()
    materials = {
        surface: pra.Material(
            {"coeffs": list(absorption[i]), "center_freqs": list(BANDS_HZ)}, room.scattering
        )
        for i, surface in enumerate(SURFACES)
    }
    sim = pra.ShoeBox(
        list(room.size_m),
        fs=sample_rate_hz,
        materials=materials,
        max_order=MAX_ORDER,
        ray_tracing=True,
        air_absorption=True,
    )
    sim.set_ray_tracing()
    if ray_factor != 1.0:
        sim.set_ray_tracing(n_rays=int(round(sim.rt_args["n_rays"] * ray_factor)))
    sim.add_source(list(room.source_position_m))
    sim.add_microphone(list(room.listener_position_m))
    return sim


def simulate(
    room: Room,
    seed: int,
    ray_factor: float = 1.0,
    with_rir: bool = True,
    sample_rate_hz: int = SIM_RATE_HZ,
) -> Simulation:
    """Run the reference simulation; deterministic for a given seed (numpy and libroom)."""
    pra.random.seed(numpy=seed, libroom=seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (pyroomacoustics draws from the global RNG)
    sim = shoebox(room, sample_rate_hz, ray_factor)
    sim.image_source_model()
    sim.ray_tracing()
    raw = np.asarray(sim.rt_histograms[0][0][0], dtype=np.float64)  # (bands, bins)
    hist = np.zeros((raw.shape[0], N_BINS), dtype=np.float32)
    n = min(N_BINS, raw.shape[1])
    hist[:, :n] = raw[:, :n]
    rir = None
    if with_rir:
        sim.compute_rir()
        rir = np.asarray(sim.rir[0][0], dtype=np.float32)
    return Simulation(hist=hist, rir=rir, n_rays=int(sim.rt_args["n_rays"]))
