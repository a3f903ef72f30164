"""The late part: fixed-seed noise split into octave bands, shaped by an energy envelope."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache, lru_cache
from typing import NamedTuple

import numpy as np
from scipy import ndimage, signal

from rtverb.synth import features
from rtverb.synth.early import DELAY_SAMPLES, band_count, band_split
from rtverb.synth.physics import MODEL_BANDS_HZ

#: The late part ends where every band is this far below the envelope's peak.
TAIL_FLOOR_DB = -90.0
_NOISE_SEED = 20261121
#: The noise bands are flattened over this many periods of their centre frequency. Flattening
#: spreads a band's spectrum into its neighbours' analysis bands: over 4 periods, 2.3 % of the
#: 250 Hz reading is the 125 Hz band's noise, against 1.9 % unflattened
#: (`calibrate.band_leakage`).
#: (With the earlier cosine bank, 2 ms, half a bin, cost the held-out rooms rendered from the
#: simulator's own envelopes 0.2 points of T30 and 0.3 of EDT against 4 periods.)
FLATTEN_PERIODS = 4.0


def add_late(early: np.ndarray, envelope_db: np.ndarray, fs: float) -> np.ndarray:
    """The early part plus the late part (`late_ir`) delayed by `DELAY_SAMPLES`, float32."""
    weights, n_bins = _late_weights(envelope_db, fs)
    bin_samples = _bin_samples(fs)
    n_late = n_bins * bin_samples
    length = max(len(early), DELAY_SAMPLES + n_late)
    # The late segments start half a bin before DELAY_SAMPLES (that half is silent) and run
    # past the late part's end: render them in place, in a buffer with room for both.
    half = bin_samples // 2
    lead = max(0, half - DELAY_SAMPLES)
    first = lead + DELAY_SAMPLES - half
    end = first + len(weights) * bin_samples
    buffer = np.empty(max(lead + length, end), dtype=np.float32)
    segments = buffer[first:end].reshape(len(weights), 1, bin_samples)
    np.matmul(weights, _noise_segments(fs, len(weights)), out=segments)
    buffer[: lead + DELAY_SAMPLES] = 0.0
    buffer[lead + DELAY_SAMPLES + n_late :] = 0.0
    out = buffer[lead : lead + length]
    out[: len(early)] += early
    return out


def add_late_pairs(
    early: Sequence[Sequence[np.ndarray]],
    envelopes_db: Sequence[np.ndarray],
    fs: float,
    powers: Sequence[float],
    coherence: np.ndarray,
) -> np.ndarray:
    """Each source's two capsules' early parts plus their late parts, (sources, 2, taps)
    float32: one buffer for all of them (a view of it), shorter sources zero-padded.

    ``early[i]`` and ``envelopes_db[i]`` are source i's. Each capsule's late part is the
    envelope scaled by its diffuse-field power (``powers``). Per band b source i's left one is
    noise table 2i, the right one mixes it with table 2i + 1 as ``coherence[b]`` and
    sqrt(1 - coherence[b]^2) (`_mixed_table`): the two are that coherent in band b. Rendered in
    place as `add_late` does.
    """
    plans = [_late_weights(envelope_db, fs) for envelope_db in envelopes_db]
    bin_samples = _bin_samples(fs)
    half = bin_samples // 2
    lead = max(0, half - DELAY_SAMPLES)
    first = lead + DELAY_SAMPLES - half
    length = max(
        *(DELAY_SAMPLES + n_bins * bin_samples for _, n_bins in plans),
        *(len(e) for pair in early for e in pair),
    )
    width = max(lead + length, *(first + len(weights) * bin_samples for weights, _ in plans))
    buffer = np.empty((len(plans), 2, width), dtype=np.float32)
    gains = np.sqrt(np.asarray(powers, dtype=np.float32))
    rho = np.asarray(coherence, np.float32).tobytes()
    for i, ((weights, n_bins), rows, pair) in enumerate(zip(plans, buffer, early, strict=True)):
        n, end = len(weights), first + len(weights) * bin_samples
        left = _noise_segments(fs, n, 2 * i)
        right = _mixed_table(fs, 2 * i, rho)[:, :n].transpose(1, 0, 2)  # laid out as `left`
        for row, gain, table in zip(rows, gains, (left, right), strict=True):
            np.matmul(weights * gain, table, out=row[first:end].reshape(n, 1, bin_samples))
        rows[:, : lead + DELAY_SAMPLES] = 0.0
        rows[:, lead + DELAY_SAMPLES + n_bins * bin_samples :] = 0.0
        for row, e in zip(rows[:, lead:], pair, strict=True):
            row[: len(e)] += e
    return buffer[:, :, lead : lead + length]


def _bin_samples(fs: float) -> int:
    """Samples per 4 ms envelope bin (`features.HIST_BIN_S`) at ``fs``."""
    return int(np.floor(fs * features.HIST_BIN_S))


@cache
def _noise_table(fs: float, table: int = 0) -> np.ndarray:
    """Band-split fixed-seed noise in interpolation layout: (2 x bands, bins + 1, bin) float32.

    ``table`` picks an independent draw (its own seed): one per late path of a stereo room.

    Segment s covers samples s*bin - bin/2 ... ; tables 0..bands-1 (T0) are weighted by (1 - w),
    tables bands.. (T1) by w, w rising 0 -> 1 across the segment, so a per-bin amplitude A gives
    linear interpolation between bin centres: late = sum_b T0[b] * A[b, s] + T1[b] * A[b, s + 1].
    """
    bin_samples = _bin_samples(fs)
    n_bins = int(np.ceil(2 * features.N_FRAMES * features.HIST_BIN_S * fs / bin_samples))
    half = bin_samples // 2
    rng = np.random.default_rng(_NOISE_SEED + table)
    # unit energy per bin
    white = rng.standard_normal((n_bins + 1) * bin_samples) / np.sqrt(bin_samples)
    white[:half] = 0.0
    bands = band_split(white, fs)  # as the simulator splits its ray-tracing noise
    # Flatten each band's envelope: band-limited noise fluctuates by about 1 / sqrt(bandwidth x
    # duration) (1.3 dB over 50 ms at 250 Hz), which would put one random draw into C50 and EDT.
    # Dividing by its smoothed Hilbert envelope removes the fluctuation; smoothed over
    # `FLATTEN_PERIODS` of the band's centre (at least half a bin), so that the division
    # spreads the band's spectrum little into its neighbours' analysis bands.
    magnitude = np.abs(signal.hilbert(bands, axis=-1))
    envelope = np.stack(
        [
            ndimage.uniform_filter1d(row, max(bin_samples // 2, round(FLATTEN_PERIODS * fs / fc)))
            for row, fc in zip(magnitude, MODEL_BANDS_HZ, strict=False)
        ]
    )
    flat = bands / np.maximum(envelope, 1e-12)
    flat[:, :half] = 0.0
    energy, flat_energy = (bands**2).sum(axis=-1), (flat**2).sum(axis=-1)
    # above ~200 kHz the 250 Hz band's filter has no FFT bin: that band is silent, not NaN
    gain = np.divide(energy, flat_energy, out=np.zeros_like(energy), where=flat_energy > 0)
    bands = flat * np.sqrt(gain)[:, None]
    seg = bands.reshape(len(bands), n_bins + 1, bin_samples).astype(np.float32)
    w = (np.arange(bin_samples, dtype=np.float32) / bin_samples)[None, None, :]
    return np.concatenate([seg * (1 - w), seg * w])


def noise_bands(fs: float, table: int = 0) -> np.ndarray:
    """`_noise_table`'s bands as plain signals, (bands, samples) float32."""
    segments = _noise_table(fs, table)
    bands = len(segments) // 2
    return (segments[:bands] + segments[bands:]).reshape(bands, -1)


@lru_cache(maxsize=4)
def _mixed_table(fs: float, first_table: int, coherence: bytes) -> np.ndarray:
    """Per band b, ``rho[b] x table first + sqrt(1 - rho[b]^2) x table first + 1`` in
    `_noise_table`'s layout; ``coherence``: rho per band, float32 bytes (a cache key).

    Made once per pair kind, spacing and angle (~5 ms): a room change then renders the right
    capsule with one product, as the left one.
    """
    rho = np.tile(np.frombuffer(coherence, np.float32), 2)[:, None, None]
    own = np.sqrt(np.maximum(1 - rho * rho, 0))
    return rho * _noise_table(fs, first_table) + own * _noise_table(fs, first_table + 1)


def _noise_segments(fs: float, n: int, table: int = 0) -> np.ndarray:
    """The first ``n`` segments of `_noise_table`, (n, 2 x bands, bin): a view, band-major.

    One batched product per segment against this view measured faster than against a
    segment-major copy of the table (and as fast as two products of 8 bands).
    """
    return _noise_table(fs, table)[:, :n].transpose(1, 0, 2)


class _LateGrid(NamedTuple):
    """Bin centres on the envelope's frame grid, for `np.interp`'s arithmetic on all bands."""

    centres_s: np.ndarray
    lower: np.ndarray  # the frame at or before each centre (clipped to the grid's inside)
    offset_s: np.ndarray  # centre minus that frame's time
    spacing_s: np.ndarray  # from each frame to the next
    n_before: int  # the first centres lie before the first frame: they take its value
    past: int  # centres from this one on lie at or past the last frame: they take its value
    air_db: np.ndarray  # air absorption at the centres, (bands, bins)


@cache
def _late_grid(fs: float) -> _LateGrid:
    bin_samples = _bin_samples(fs)
    centres = (np.arange(_noise_table(fs).shape[1] - 1) + 0.5) * (bin_samples / fs)
    frames = features.FRAME_TIMES_S
    j = np.searchsorted(frames, centres, side="right") - 1  # sorted: -1s first, then ...
    lower = np.clip(j, 0, len(frames) - 2)
    return _LateGrid(
        centres,
        lower,
        centres - frames[lower],
        np.diff(frames),
        int(np.count_nonzero(j < 0)),
        int(np.searchsorted(j, len(frames) - 1)),  # ... the last frame's index last
        features.air_db(centres)[: band_count(fs)],
    )


def _late_db(envelope_db: np.ndarray, fs: float) -> np.ndarray:
    """The envelope at every bin centre, with air absorption: (bands, bins) dB.

    ``np.interp(centres, FRAME_TIMES_S, envelope_db[b])`` for every band at once, with its
    arithmetic (a slope per frame, slope x offset + value; the end frames' values beyond them).
    """
    grid = _late_grid(fs)
    env = np.asarray(envelope_db, dtype=np.float64)[: len(grid.air_db)]
    with np.errstate(invalid="ignore"):  # infinite envelopes: see below
        slope = (env[:, 1:] - env[:, :-1]) / grid.spacing_s
        db = np.take(slope, grid.lower, axis=1) * grid.offset_s  # take: 3x faster than [:, i]
        db += np.take(env, grid.lower, axis=1)
    db[:, : grid.n_before] = env[:, :1]
    db[:, grid.past :] = env[:, -1:]
    if not np.all(np.isfinite(db)):  # np.interp has its own rules for infinite values
        db = np.stack([np.interp(grid.centres_s, features.FRAME_TIMES_S, e) for e in env])
    db += grid.air_db
    return db


def _late_weights(envelope_db: np.ndarray, fs: float) -> tuple[np.ndarray, int]:
    """Weights of `_noise_segments`, (segments, 1, 2 x bands) float32, and the length in bins.

    The late part ends where every band is `TAIL_FLOOR_DB` below the envelope's peak.
    """
    db = _late_db(envelope_db, fs)
    bands = len(db)
    audible = np.nonzero(db.max(axis=0) > db.max() + TAIL_FLOOR_DB)[0]
    n_bins = int(audible[-1]) + 1 if len(audible) else 1
    # amplitude sqrt(10^(dB/10) x bin ratio), with exp: 1.5x as fast as a power of ten
    scale = np.sqrt(_bin_samples(fs) / fs / features.HIST_BIN_S)
    amp = (np.exp(db[:, :n_bins] * (np.log(10.0) / 20)) * scale).astype(np.float32)
    ext = np.concatenate([amp[:, :1], amp, amp[:, -1:]], axis=1).T  # (n_bins + 2, bands)
    weights = np.empty((n_bins + 1, 1, 2 * bands), dtype=np.float32)
    weights[:, 0, :bands] = ext[:-1]  # T0: A[s]
    weights[:, 0, bands:] = ext[1:]  # T1: A[s + 1]
    return weights, n_bins


def late_ir(envelope_db: np.ndarray, sample_rate_hz: float) -> np.ndarray:
    """Late part from an envelope (8, N_FRAMES) in dB per 4 ms bin; starts at time zero."""
    fs = float(sample_rate_hz)
    weights, n_bins = _late_weights(envelope_db, fs)
    bin_samples = _bin_samples(fs)
    out = np.matmul(weights, _noise_segments(fs, len(weights)))
    half = bin_samples // 2
    return out.ravel()[half : half + n_bins * bin_samples]
