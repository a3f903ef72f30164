"""Exact physics of a shoebox room: octave filter bank, image sources, air absorption.

These reproduce the reference simulator (pyroomacoustics' shoebox, image sources up to order
3, air absorption) so that rtverb's direct sound and early reflections are exact, and only the
late energy envelope is learned. The runtime never imports pyroomacoustics; tests in
``tests/test_ism.py`` compare against it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache, lru_cache

import numpy as np
from scipy import signal

from rtverb.room.mics import Capsule
from rtverb.room.room import SPEED_OF_SOUND_M_S
from rtverb.synth.physics import AIR_ABSORPTION_PER_M, MODEL_BANDS_HZ, RoomPhysics

#: Highest image-source order (the reference simulator's ``max_order``).
MAX_ORDER = 3
#: The simulator delays every IR by half of its 81-tap fractional-delay filter.
DELAY_SAMPLES = 40
#: Length of the octave band-pass filters (pyroomacoustics' ``octave_bands_n_fft``).
FILTER_TAPS = 512
#: Sub-sample phases of the fractional-delay table: arrival times are exact to 1/32 sample.
FRACTIONAL_PHASES = 16
_FRAC_TAPS = FILTER_TAPS + 8
_TAP_INDICES = np.arange(_FRAC_TAPS)
#: Butterworth order of the analysis octave band-pass `octave_band_sos` (applied forward and
#: backward: twice this order).
BAND_FILTER_ORDER = 3
#: The simulator high-passes every IR at 10 Hz (2nd-order Butterworth, forward and backward).
HIGHPASS_HZ = 10.0


@cache
def highpass_sos(sample_rate_hz: float) -> np.ndarray:
    """The simulator's 10 Hz high-pass (second-order sections)."""
    return np.asarray(
        signal.butter(2, HIGHPASS_HZ, btype="highpass", fs=sample_rate_hz, output="sos")
    )


@cache
def _highpass_biquad(sample_rate_hz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """`highpass_sos` as one biquad: b, a, steady-state initial conditions, edge padding."""
    sos = highpass_sos(sample_rate_hz)
    if len(sos) != 1:
        raise ValueError(f"expected one second-order section, got {len(sos)}")
    # scipy.signal.sosfiltfilt's default padding: 3 x (taps of the filter)
    return sos[0, :3], sos[0, 3:], signal.sosfilt_zi(sos)[0], 3 * (2 * len(sos) + 1)


def highpass(x: np.ndarray, sample_rate_hz: float) -> np.ndarray:
    """The simulator's zero-phase 10 Hz high-pass of ``x`` (1-D), float64 (a reversed view).

    ``scipy.signal.sosfiltfilt(highpass_sos(fs), x)`` step by step (odd extension, steady-state
    initial conditions, forward and backward), with its per-call setup (the initial conditions
    solve a linear system) done once per rate: a third of the time on an early part. Equal to
    it within float64 rounding (`lfilter` orders the biquad's additions differently).
    """
    b, a, zi, edge = _highpass_biquad(sample_rate_hz)
    if len(x) <= edge:
        raise ValueError(f"the input must be longer than {edge} samples, got {len(x)}")
    ext = np.concatenate(
        (2 * x[0] - x[edge:0:-1], x, 2 * x[-1] - x[-2 : -edge - 2 : -1]), dtype=np.float64
    )
    y, _ = signal.lfilter(b, a, ext, zi=zi * ext[0])
    y, _ = signal.lfilter(b, a, y[::-1], zi=zi * y[-1])
    return y[-edge - 1 : edge - 1 : -1]  # backward again, without the padding (a view)


def band_count(sample_rate_hz: float) -> int:
    """Octave bands that fit below Nyquist (as the simulator counts them), at most 8."""
    return min(len(MODEL_BANDS_HZ), math.floor(math.log2(sample_rate_hz / MODEL_BANDS_HZ[0])))


@lru_cache(maxsize=64)
def octave_band_sos(sample_rate_hz: float, center_hz: float) -> np.ndarray | None:
    """The analysis octave band-pass around ``center_hz`` that band metrics are measured through
    (`rtverb.analysis.acoustics.octave_band`; `rtverb.synth.calibrate` predicts what it reads);
    None if the band reaches Nyquist."""
    low, high = center_hz / np.sqrt(2), center_hz * np.sqrt(2)
    if high >= 0.5 * sample_rate_hz * 0.98:
        return None
    sos = signal.butter(
        BAND_FILTER_ORDER, [low, high], btype="bandpass", fs=sample_rate_hz, output="sos"
    )
    return np.asarray(sos)


#: Antoni's filter bank: each band's transition to the next spans this share of the octave
#: above the edge on both sides (pyroomacoustics' ``band_overlap_ratio``), with a sine/cosine
#: crossfade (``slope`` 0).
BAND_OVERLAP_RATIO = 0.5


def antoni_windows(n_fft: int, sample_rate_hz: float) -> np.ndarray:
    """Magnitude windows G (bands, n_fft // 2 + 1) of Antoni's octave filter bank on an
    ``n_fft`` FFT grid, the simulator's (pyroomacoustics' `AntoniOctaveFilterBank`).

    The bands meet at fc / sqrt(2) with a sine/cosine crossfade: sum over bands of G^2 is one at
    every frequency (J. Antoni, "Orthogonal-like fractional-octave-band filters", JASA 127(2),
    2010; adapted from pyroomacoustics and pyfar, MIT licence). A band filtered through the bank
    has the spectrum X G^2: the bands sum back to the input.
    """
    centers = np.array(MODEL_BANDS_HZ[: band_count(sample_rate_hz)])
    n_freq = n_fft // 2 + 1
    k_low = np.round(centers / np.sqrt(2) / sample_rate_hz * n_fft).astype(int)
    k_mid = np.round(centers / sample_rate_hz * n_fft).astype(int)
    k_high = np.round(centers * np.sqrt(2) / sample_rate_hz * n_fft).astype(int)
    overlap = np.round(BAND_OVERLAP_RATIO * (k_high - k_mid)).astype(int)
    g = np.ones((len(centers), n_freq))
    for b in range(1, len(centers)):
        edge, p = k_low[b], overlap[b]
        if p > 0:
            phi = 0.5 * (np.arange(-p, p + 1) / p + 1)
            lo, hi = max(edge - p, 0), edge + p + 1
            g[b - 1, lo:hi] = np.cos(np.pi / 2 * phi)[lo - (edge - p) :][: n_freq - lo]
            g[b, lo:hi] = np.sin(np.pi / 2 * phi)[lo - (edge - p) :][: n_freq - lo]
        g[b - 1, edge + p :] = 0.0
        g[b, : max(edge - p, 0)] = 0.0
    return g


def band_split(x: np.ndarray, sample_rate_hz: float) -> np.ndarray:
    """``x`` (1-D) through each band of the simulator's filter bank, (bands, len(x)): zero
    phase, X G^2 on an FFT grid of at least twice its length (its ``analysis``)."""
    n_fft = 1 << int(np.ceil(np.log2(2 * len(x))))
    g = antoni_windows(n_fft, sample_rate_hz)
    return np.fft.irfft(np.fft.rfft(x, n=n_fft) * g * g, n=n_fft, axis=-1)[:, : len(x)]


@cache
def band_filters(sample_rate_hz: float) -> np.ndarray:
    """The simulator's octave filters for image sources, shape (bands, FILTER_TAPS): an impulse
    split by `band_split` (what pyroomacoustics' ``synthesis`` gives each band), centred on
    tap (FILTER_TAPS - 1) // 2; a filter is applied "same"-aligned (tap m lands m - 255
    samples after the input sample). The filters sum to that impulse (perfect reconstruction).
    """
    impulse = np.zeros(FILTER_TAPS)
    impulse[(FILTER_TAPS - 1) // 2] = 1.0
    return band_split(impulse, sample_rate_hz)


@cache
def _fractional_filters(sample_rate_hz: float) -> np.ndarray:
    """Band filters delayed by q/FRACTIONAL_PHASES samples: (phases, bands, taps) float32."""
    h = band_filters(sample_rate_hz)
    n_fft = 2 * FILTER_TAPS
    spectrum = np.fft.rfft(h, n=n_fft, axis=-1)
    freqs = np.arange(n_fft // 2 + 1) / n_fft
    shifts = np.arange(FRACTIONAL_PHASES) / FRACTIONAL_PHASES
    phase = np.exp(-2j * np.pi * shifts[:, None, None] * freqs[None, None, :])
    out = np.fft.irfft(spectrum[None] * phase, n=n_fft, axis=-1)[..., :_FRAC_TAPS]
    return np.ascontiguousarray(out, dtype=np.float32)


@cache
def _image_indices() -> np.ndarray:
    """(n, p) per axis for every image of order <= MAX_ORDER: shape (images, 3 axes, 2)."""
    per_axis = [(n, p) for n in range(-2, 3) for p in (0, 1)]
    out = []
    for ax in per_axis:
        for ay in per_axis:
            for az in per_axis:
                order = sum(abs(n - p) + abs(n) for n, p in (ax, ay, az))
                if order <= MAX_ORDER:
                    out.append((ax, ay, az))
    return np.array(out)


@cache
def _image_lattice() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image: 2n (images, 3), 1 - 2p (images, 3) and reflections per surface (6, images)."""
    idx = _image_indices()
    n, p = idx[..., 0], idx[..., 1]
    # surfaces in rtverb.room.params.SURFACES order: floor, ceiling, east, west, north, south
    hits = np.stack(
        [
            np.abs(n - p)[:, 2],
            np.abs(n)[:, 2],
            np.abs(n)[:, 0],
            np.abs(n - p)[:, 0],
            np.abs(n)[:, 1],
            np.abs(n - p)[:, 1],
        ]
    )
    return 2 * n, 1 - 2 * p, hits.astype(np.float64)


def image_sources(physics: RoomPhysics) -> tuple[np.ndarray, np.ndarray]:
    """Image sources up to order 3: distances to the listener (n,) and band dampings (8, n).

    `image_arrivals` at the room's source and listener, without the directions.
    """
    room = physics.room
    _, dist, damping = image_arrivals(physics, room.source_position_m, room.listener_position_m)
    return dist, damping


def image_arrivals(
    physics: RoomPhysics, source_m: Sequence[float], listener_m: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image sources of ``source_m`` heard at ``listener_m``: the vectors from the listener to
    them (n, 3), their lengths (n,) and their band dampings (8, n).

    Along an axis of length L, image (n, p) sits at 2nL + (1 - 2p)s and has reflected |n - p|
    times off the wall at 0 (west/south/floor) and |n| times off the wall at L
    (east/north/ceiling). Each reflection scales the amplitude by
    sqrt((1 - absorption) (1 - scattering)), as in the simulator's hybrid model.
    """
    room = physics.room
    two_n, sign, hits = _image_lattice()
    pos = two_n * np.array(room.size_m) + sign * np.array(source_m)
    d = pos - np.array(listener_m)
    dist = np.sqrt(np.add.reduce(d * d, axis=1))  # np.linalg.norm's own arithmetic
    alpha = np.minimum(physics.absorption, 1 - 1e-12)
    # the specular part keeps (1 - scattering) of the energy; the rest goes to the late part
    log_reflection = 0.5 * (np.log1p(-alpha) + np.log1p(-min(room.scattering, 1 - 1e-12)))
    damping = np.exp(log_reflection.T @ hits)  # (8, images)
    return d, dist, damping


def onset_sample(source_m: Sequence[float], listener_m: Sequence[float], fs: float) -> int:
    """The direct sound's sample in the IR (where the analysis puts a known distance's onset:
    `rtverb.analysis.acoustics.onset_index`)."""
    distance = float(np.linalg.norm(np.subtract(source_m, listener_m)))
    return int(round(distance / SPEED_OF_SOUND_M_S * fs)) + DELAY_SAMPLES


def early_ir(
    physics: RoomPhysics,
    sample_rate_hz: float,
    source_m: Sequence[float] | None = None,
    capsule: Capsule | None = None,
) -> np.ndarray:
    """Direct sound and image sources up to order 3, as the simulator renders them (float32).

    Amplitude per band = damping / distance x air absorption; each arrival is the band-weighted
    sum of the octave filters, delayed to its exact (fractional) time plus `DELAY_SAMPLES`.
    ``source_m`` (default: the room's source) is heard by ``capsule`` (default: an omni at the
    listener position), whose first-order pattern weighs each arrival by its direction.
    """
    fs = float(sample_rate_hz)
    bands = band_count(fs)
    room = physics.room
    source = room.source_position_m if source_m is None else source_m
    listener = room.listener_position_m if capsule is None else capsule.position_m
    d, dist, damping = image_arrivals(physics, source, listener)
    amp = damping[:bands] / dist * np.exp(-0.5 * AIR_ABSORPTION_PER_M[:bands, None] * dist)
    if capsule is not None:
        a = capsule.omni_weight
        amp *= a + (1 - a) * (d @ np.array(capsule.axis)) / dist
    when = dist / SPEED_OF_SOUND_M_S * fs + DELAY_SAMPLES
    whole = np.floor(when).astype(np.int64)
    phase = np.minimum(
        np.round((when - whole) * FRACTIONAL_PHASES).astype(np.int64), FRACTIONAL_PHASES - 1
    )
    table = _fractional_filters(fs)[phase]  # (images, bands, taps)
    # (images, 1, bands) @ (images, bands, taps): a batched product, 1.6x as fast as einsum
    arrivals = np.matmul(amp.T.astype(np.float32)[:, None, :], table)[:, 0]
    start = whole - (FILTER_TAPS - 1) // 2
    offset = max(0, -int(start.min()))
    out = np.zeros(int(start.max()) + offset + _FRAC_TAPS, dtype=np.float32)
    # overlap-add, image after image as a loop would, in half its time
    np.add.at(out, ((start + offset)[:, None] + _TAP_INDICES).ravel(), arrivals.ravel())
    return highpass(out[offset:], fs).astype(np.float32)
