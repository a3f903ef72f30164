"""What the model sees and what it predicts, shared by training (``train/``) and the runtime.

The model predicts the late (ray-traced) energy envelope of a room per octave band, in dB,
on a fixed time grid (`N_FRAMES` frames of `FRAME_S`). Its input is a stack of channels along
that grid: a time coordinate, time since the direct sound in mean free times, the analytic
(Eyring, diffuse-field) envelope of every band, and the room's parameters normalized from the
parameter table (`rtverb.room.params`), each broadcast along time. The model's output fields become
a correction to the analytic envelope (`correction_db`): it rescales each band's analytic decay
and reshapes it.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from rtverb.room.params import AXES, BANDS_HZ, DOMAIN_CLEARANCE_M, PARAMS_BY_NAME, SURFACES
from rtverb.room.room import SPEED_OF_SOUND_M_S
from rtverb.synth.early import image_sources
from rtverb.synth.physics import AIR_ABSORPTION_PER_M, MODEL_BANDS_HZ, RoomPhysics

#: Frame length of the predicted envelope: two of the simulator's 4 ms histogram bins.
FRAME_S = 0.008
N_FRAMES = 512
HIST_BIN_S = 0.004
N_BANDS = len(MODEL_BANDS_HZ)
#: Envelopes are energies per 4 ms bin on the simulator's scale; dB below this are silence.
FLOOR_DB = -160.0
#: Diffuse-field late energy = DIFFUSE_GAIN x (1 - a) / (S a), fitted once on simulated rooms
#: (median over the training set; the learned model corrects it per room).
DIFFUSE_GAIN = 35.0
#: The analytic envelope enters the model as dB / this (about -0.2 ... -1.6).
BASELINE_SCALE_DB = 100.0

#: Time coordinate of each frame's centre, seconds.
FRAME_TIMES_S = (np.arange(N_FRAMES) + 0.5) * FRAME_S
_TIME_CHANNEL = FRAME_TIMES_S / (N_FRAMES * FRAME_S)  # the model's first input channel


def analytic_envelope_db(physics: RoomPhysics) -> np.ndarray:
    """Diffuse-field (Eyring) late envelope per band, (8, N_FRAMES), dB per 4 ms bin.

    It starts at the direct sound and decays exponentially; air absorption is excluded, as in
    the simulator's histograms (synthesis applies it). This is also the Sabine/Eyring baseline.
    """
    alpha, area = physics.mean_absorption, physics.surface_m2
    tau = physics.eyring_no_air_s / np.log(1e6)  # energy time constant
    total = DIFFUSE_GAIN * (1 - alpha) / (area * alpha)
    t = FRAME_TIMES_S - physics.direct_s
    # 10 log10(total x bin / tau x exp(-t / tau)), in closed form: a third of the time of
    # exp and log10 per frame, and equal to them within 1e-13 dB
    start_db = 10 * np.log10(total * (HIST_BIN_S / tau))
    db = start_db[:, None] - (10 / np.log(10)) * (np.maximum(t, 0) / tau[:, None])
    return np.where(t[None, :] >= 0, np.maximum(db, FLOOR_DB), FLOOR_DB)


def room_vector(physics: RoomPhysics) -> np.ndarray:
    """The room's parameters normalized from the parameter table, clipped to [-0.5, 1.5].

    Sizes and scattering are scaled by their model domain; positions are fractions of the room;
    absorption is log-scaled between its domain bounds; plus log decay times, log distance (from
    the domain's clearance) and log volume (between the domain's smallest and largest rooms); the
    bounds are the parameter table's (`rtverb.room.params`). Clipping keeps out-of-domain rooms
    from driving the model far off its data.
    """
    room = physics.room
    size = np.array(room.size_m)
    size_low, size_width = _size_domains_m()
    log_low, log_width = _log_absorption_domains()
    volume_low, volume_high = _volume_domain_m3()
    scattering = PARAMS_BY_NAME["room/scattering"]
    parts = np.concatenate(
        [
            (size - size_low) / size_width,  # ParamSpec.domain_fraction, per axis
            np.array(room.source_position_m) / size,
            np.array(room.listener_position_m) / size,
            [scattering.domain_fraction(room.scattering)],
            ((np.log(physics.absorption[:, : len(BANDS_HZ)]) - log_low) / log_width).ravel(),
            (np.log(physics.eyring_s) - np.log(0.05)) / np.log(100.0),
            [np.log(physics.distance_m / DOMAIN_CLEARANCE_M) / np.log(60.0)],
            [np.log(physics.volume_m3 / volume_low) / np.log(volume_high / volume_low)],
        ]
    )
    return np.clip(parts.astype(np.float32), -0.5, 1.5)


@cache
def _size_domains_m() -> tuple[np.ndarray, np.ndarray]:
    """Lower bound and width of each axis's model domain (the table's sizes), shape (3,)."""
    specs = [PARAMS_BY_NAME[f"room/size/{axis}"] for axis in AXES]
    low = np.array([s.domain_min for s in specs])
    return low, np.array([s.domain_max for s in specs]) - low


@cache
def _volume_domain_m3() -> tuple[float, float]:
    """Volumes of the model domain's smallest and largest rooms."""
    low, width = _size_domains_m()
    return float(np.prod(low)), float(np.prod(low + width))


@cache
def _log_absorption_domains() -> tuple[np.ndarray, np.ndarray]:
    """Log of each surface's lower domain bound, and the log width, shape (6, 1)."""
    specs = [PARAMS_BY_NAME[f"room/surface/{surface}"] for surface in SURFACES]
    low = np.log([[s.domain_min] for s in specs])
    return low, np.log([[s.domain_max] for s in specs]) - low


ROOM_VECTOR_SIZE = 3 + 6 + 1 + 42 + N_BANDS + 2
N_INPUT_CHANNELS = 2 + N_BANDS + ROOM_VECTOR_SIZE


def model_input(physics: RoomPhysics) -> tuple[np.ndarray, np.ndarray]:
    """The model's input (N_INPUT_CHANNELS, N_FRAMES) float32 and the analytic envelope (dB)."""
    baseline = analytic_envelope_db(physics)
    mean_free_s = physics.mean_free_path_m / SPEED_OF_SOUND_M_S
    since_direct = (FRAME_TIMES_S - physics.direct_s) / mean_free_s
    x = np.empty((N_INPUT_CHANNELS, N_FRAMES), dtype=np.float32)
    x[0] = _TIME_CHANNEL
    x[1] = np.clip(since_direct, -5.0, 50.0) / 10.0
    x[2 : 2 + N_BANDS] = baseline / BASELINE_SCALE_DB
    x[2 + N_BANDS :] = room_vector(physics)[:, None]
    return x, baseline


#: What the room encoder sees (`physics_features`): version, size, and where the decay times
#: and Barron's C50 the encoder's heads are relative to sit in it.
PHYSICS_VERSION = 1
EYRING_LOG_S = slice(0, N_BANDS)
EYRING_NO_AIR_LOG_S = slice(N_BANDS, 2 * N_BANDS)
BARRON_C50_DB = slice(2 * N_BANDS, 3 * N_BANDS)


def physics_features(physics: RoomPhysics) -> np.ndarray:
    """The room encoder's input (N_PHYSICS_FEATURES,) float32: what physics says per band.

    Per model band: log Eyring times with and without air, Barron's C50 (dB) (the heads'
    references, first), log Sabine, Fitzroy and Arau-Puchades times, log absorption area and
    mean absorption, log mean absorption per axis (x and y as the lesser and greater, z) with
    their max/min ratio, the spread of log absorption over the surfaces (area-weighted), log
    distance over critical distance. Then log volume, surface, mean free path, distance,
    source's and listener's distance to the nearest surface, the two aspect ratios (sizes
    sorted), and scattering. Unscaled: the model standardizes them with its training set's
    statistics. Mirroring the room or swapping x and y leaves them unchanged.
    """
    room = physics.room
    log_alpha = np.log(np.maximum(physics.absorption, 1e-6))
    weights = physics.areas_m2[:, None] / physics.surface_m2
    mean_log = (weights * log_alpha).sum(axis=0)
    spread = np.sqrt((weights * (log_alpha - mean_log) ** 2).sum(axis=0))
    # x and y enter as the lesser and greater: the same room with x and y swapped is the same
    log_axis = np.log(physics.axis_absorption)
    log_axis = np.stack([log_axis[:2].min(axis=0), log_axis[:2].max(axis=0), log_axis[2]])
    size = np.array(room.size_m)
    sides = np.sort(size)
    gaps = [
        min(min(pos), float((size - np.array(pos)).min()))
        for pos in (room.source_position_m, room.listener_position_m)
    ]
    per_band = [
        np.log(physics.eyring_s),
        np.log(physics.eyring_no_air_s),
        physics.barron_c50_db,
        np.log(physics.sabine_s),
        np.log(physics.fitzroy_s),
        np.log(physics.arau_s),
        np.log(physics.surface_m2 * physics.mean_absorption),
        np.log(physics.mean_absorption),
        *log_axis,
        log_axis.max(axis=0) - log_axis.min(axis=0),
        spread,
        np.log(physics.distance_m / physics.critical_distance_m),
    ]
    scalars = [
        np.log(physics.volume_m3),
        np.log(physics.surface_m2),
        np.log(physics.mean_free_path_m),
        np.log(physics.distance_m),
        *np.log(gaps),
        np.log(sides[2] / sides[0]),
        np.log(sides[1] / sides[0]),
        room.scattering,
    ]
    return np.concatenate([*per_band, scalars]).astype(np.float32)


N_PHYSICS_FEATURES = 14 * N_BANDS + 9

#: The network's fields are in units of this many dB (keeps its activations near 1).
OUTPUT_SCALE_DB = 10.0


def correction_db(fields: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The envelope correction (..., 8, N_FRAMES) dB from the network's 16 fields.

    Fields c_b(t) (the first 8) and g_b(t) (the last 8): ``OUTPUT_SCALE_DB * c_b(t) +
    mean_t(g_b) * A_b(t)``, A_b the analytic envelope in dB. The mean of g_b rescales each
    band's analytic decay, level and slope together (the simulated decay differs from Eyring's
    by 10-50 %, a multiplicative error an additive field learns poorly); c_b shapes the onset
    and any bend. `train.model.EnvelopeModel` computes the same in torch.
    """
    analytic_db = BASELINE_SCALE_DB * x[..., 2 : 2 + N_BANDS, :]
    scale = fields[..., N_BANDS:, :].mean(axis=-1, keepdims=True)
    return OUTPUT_SCALE_DB * fields[..., :N_BANDS, :] + scale * analytic_db


def air_db(times_s: np.ndarray = FRAME_TIMES_S) -> np.ndarray:
    """Air absorption the renderer applies to the late envelope at ``times_s``, (8, T) dB."""
    return -10 * np.log10(np.e) * AIR_ABSORPTION_PER_M[:, None] * SPEED_OF_SOUND_M_S * times_s


def early_energy(physics: RoomPhysics) -> np.ndarray:
    """Energy of the direct sound and image sources per frame, (8, N_FRAMES), per 4 ms bin.

    On the envelope's scale (a late envelope of E per bin and an arrival of energy E render
    the same band energy), with air absorption: training adds it to the late envelopes to see
    the whole IR's decay, which T30, EDT, C50 and DRR are measured on.
    """
    dist, damping = image_sources(physics)
    energy = (damping / dist) ** 2 * np.exp(-AIR_ABSORPTION_PER_M[:, None] * dist)
    frame = np.minimum((dist / SPEED_OF_SOUND_M_S / FRAME_S).astype(np.int64), N_FRAMES - 1)
    out = np.zeros((N_BANDS, N_FRAMES))
    np.add.at(out.T, frame, energy.T)
    return out / (FRAME_S / HIST_BIN_S)


def hist_to_frames_db(hist: np.ndarray) -> np.ndarray:
    """Simulator histograms (..., 8, 1000 bins of 4 ms) to the model's target (..., 8, N_FRAMES) dB.

    Each frame holds the mean energy per 4 ms bin over its two bins (bins past 4 s are dropped).
    """
    n = 2 * N_FRAMES
    h = np.zeros((*hist.shape[:-1], n), dtype=np.float64)
    m = min(n, hist.shape[-1])
    h[..., :m] = hist[..., :m]
    frames = h.reshape(*hist.shape[:-1], N_FRAMES, 2).mean(axis=-1)
    return np.maximum(10 * np.log10(np.maximum(frames, 1e-30)), FLOOR_DB).astype(np.float32)
