"""The late part: fixed-seed noise split into octave bands, shaped by an energy envelope."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache, lru_cache
from typing import NamedTuple

import numpy as np
from scipy import ndimage, signal

from rtverb.synth import equalize, features
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


def add_late(
    early: np.ndarray,
    envelope_db: np.ndarray,
    fs: float,
    onset: int | None = None,
    c50_db: np.ndarray | None = None,
) -> np.ndarray:
    """The early part plus the late part (`late_ir`) delayed by `DELAY_SAMPLES`, float32.

    With the direct sound's sample ``onset``, the late part's bands from 250 Hz to 1 kHz are
    equalized so that their energy in windows after it is the envelope's
    (`rtverb.synth.equalize`; ``c50_db``: the room encoder's C50 per band, which the first
    50 ms move towards).
    """
    amplitude, n_bins = _late_amplitude(envelope_db, fs)
    lead, first = _layout(fs)
    length = max(len(early), DELAY_SAMPLES + n_bins * _bin_samples(fs))
    buffer = np.empty(max(lead + length, first + (n_bins + 1) * _bin_samples(fs)), np.float32)
    table = _noise_segments(fs, n_bins + 1)
    _render(buffer, amplitude, table, fs)
    if onset is not None:
        path = equalize.Path((early,), amplitude, onset, _mix_energy(fs, 0, 1.0, 0.0), c50_db)
        _equalize([path], [[(buffer, table, 1.0)]], fs)
    buffer[lead : lead + len(early)] += early
    return buffer[lead : lead + length]


def add_late_pairs(
    early: Sequence[Sequence[np.ndarray]],
    envelopes_db: Sequence[np.ndarray],
    fs: float,
    powers: Sequence[float],
    coherence: np.ndarray,
    onsets: Sequence[Sequence[int]] | None = None,
    c50_db: np.ndarray | None = None,
) -> np.ndarray:
    """Each source's two capsules' early parts plus their late parts, (sources, 2, taps)
    float32: one buffer for all of them (a view of it), shorter sources zero-padded.

    ``early[i]`` and ``envelopes_db[i]`` are source i's. Each capsule's late part is the
    envelope scaled by its diffuse-field power (``powers``). Per band b source i's left one is
    noise table 2i, the right one mixes it with table 2i + 1 as ``coherence[b]`` and
    sqrt(1 - coherence[b]^2) (`_mixed_table`): the two are that coherent in band b. Rendered in
    place as `add_late` does. With each path's direct sound ``onsets[i][capsule]``, source i's
    pair is equalized on its mid (the mean of its capsules: what a mono downmix hears; source
    i's C50 ``c50_db[i]``) and both capsules are scaled alike. Where the capsules are coherent
    (low bands, close spacing) that equalizes each; where they are not, each keeps half its
    draw's variance (the mid's correction is the mean of theirs).
    """
    plans = [_late_amplitude(envelope_db, fs) for envelope_db in envelopes_db]
    bin_samples = _bin_samples(fs)
    lead, first = _layout(fs)
    length = max(
        *(DELAY_SAMPLES + n_bins * bin_samples for _, n_bins in plans),
        *(len(e) for pair in early for e in pair),
    )
    width = max(lead + length, *(first + (n_bins + 1) * bin_samples for _, n_bins in plans))
    buffer = np.empty((len(plans), 2, width), dtype=np.float32)
    gains = np.sqrt(np.asarray(powers, dtype=np.float32))
    rho = np.asarray(coherence, np.float32).tobytes()
    # a pair's mid has (g_l + g_r rho) / 2 of its left table's noise, g_r sigma / 2 of the next
    rho_b = np.asarray(coherence, np.float64)
    sigma_b = np.sqrt(np.maximum(1 - rho_b * rho_b, 0.0))
    mix = ((gains[0] + gains[1] * rho_b) / 2, gains[1] * sigma_b / 2)
    paths, members = [], []
    for i, ((amplitude, n_bins), pair_rows) in enumerate(zip(plans, buffer, strict=True)):
        n = n_bins + 1
        left = _noise_segments(fs, n, 2 * i)
        right = _mixed_table(fs, 2 * i, rho)[:, :n].transpose(1, 0, 2)  # laid out as `left`
        tables = (left, right)
        for row, gain, table in zip(pair_rows, gains, tables, strict=True):
            _render(row, amplitude * gain, table, fs)
        if onsets is not None:
            c50 = None if c50_db is None else c50_db[i]
            onset = int(round(np.mean(onsets[i])))
            paths.append(
                equalize.Path(tuple(early[i]), amplitude, onset, _mix_energy(fs, 2 * i, *mix), c50)
            )
            members.append(list(zip(pair_rows, tables, gains, strict=True)))
    if paths:
        _equalize(paths, members, fs)
    for pair_rows, pair in zip(buffer, early, strict=True):
        for row, e in zip(pair_rows, pair, strict=True):
            row[lead : lead + len(e)] += e
    return buffer[:, :, lead : lead + length]


def _layout(fs: float) -> tuple[int, int]:
    """Where a late part's buffer puts the IR's sample 0 (``lead``) and its first segment.

    The late segments start half a bin before `DELAY_SAMPLES` (that half is silent) and run
    past the late part's end: they are rendered in place, in a buffer with room for both.
    """
    half = _bin_samples(fs) // 2
    lead = max(0, half - DELAY_SAMPLES)
    return lead, lead + DELAY_SAMPLES - half


def _render(
    row: np.ndarray, amplitude: np.ndarray, table: np.ndarray, fs: float, bins: slice = slice(None)
) -> None:
    """Render a late part of ``amplitude`` (bands, bins) from ``table`` (its noise segments,
    `_noise_segments`' layout) into ``row`` (`_layout`), silent outside it; only the segments
    ``bins`` (segment s spans from bin s - 1's centre to bin s's)."""
    bin_samples = _bin_samples(fs)
    lead, first = _layout(fs)
    weights = _weights(amplitude)[bins]
    start = range(len(table))[bins].start
    n = len(weights)
    at = first + start * bin_samples
    np.matmul(weights, table[bins], out=row[at : at + n * bin_samples].reshape(n, 1, bin_samples))
    row[: lead + DELAY_SAMPLES] = 0.0
    row[lead + DELAY_SAMPLES + amplitude.shape[1] * bin_samples :] = 0.0


def _equalize(
    paths: list[equalize.Path], members: list[list[tuple[np.ndarray, np.ndarray, float]]], fs: float
) -> None:
    """Equalize late parts rendered by `_render`: path i is measured on the mean of its
    members' rows (row, table, gain: rendered from ``table`` with the path's amplitude x
    ``gain``) and each member is rendered again where `rtverb.synth.equalize.Equalizer`
    scales the path's amplitude."""
    lead = _layout(fs)[0]
    eq = equalize.Equalizer(paths, _bin_samples(fs), DELAY_SAMPLES, fs)
    scaled = eq.scaled([[row[lead:] for row, _, _ in group] for group in members])
    for (amplitude, bins), group in zip(scaled, members, strict=True):
        if bins.stop > bins.start:  # segments s and s + 1 interpolate bin s
            for row, table, gain in group:
                _render(row, amplitude * gain, table, fs, slice(bins.start, bins.stop + 1))


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


@cache
def _table_energy(fs: float, first: int, second: int) -> np.ndarray:
    """`rtverb.synth.equalize.noise_energy` of two noise tables (~50 ms, once per pair)."""
    return equalize.noise_energy(
        noise_bands(fs, first), noise_bands(fs, second), fs, _bin_samples(fs)
    )


def _mix_energy(
    fs: float, table: int, weight: float | np.ndarray, other: float | np.ndarray
) -> np.ndarray:
    """What a late part rendered from ``weight`` x table ``table`` + ``other`` x table
    ``table + 1`` (each a number, or one per band of the rate) passes each equalized band's
    filter on average (`equalize.noise_energy`), from the tables' own and cross terms: each
    table's own average, not the mean over draws (a 4 s draw's differs from another's by up
    to 0.2 dB at 500 Hz), so the equalized windows keep the level of the rest of their tail."""
    own = _table_energy(fs, table, table)
    bands = own.shape[1]
    a, b = (np.resize(np.asarray(w, np.float64), bands) for w in (weight, other))
    out = np.outer(a, a) * own
    if np.any(b):
        cross = _table_energy(fs, table, table + 1)
        out = out + np.outer(b, b) * _table_energy(fs, table + 1, table + 1)
        out = out + np.outer(a, b) * cross + np.outer(b, a) * cross.transpose(0, 2, 1)
    return out


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


def _late_amplitude(envelope_db: np.ndarray, fs: float) -> tuple[np.ndarray, int]:
    """The late part's amplitude per band at each bin centre, (bands, bins) float32, and the
    length in bins: it ends where every band is `TAIL_FLOOR_DB` below the envelope's peak."""
    db = _late_db(envelope_db, fs)
    audible = np.nonzero(db.max(axis=0) > db.max() + TAIL_FLOOR_DB)[0]
    n_bins = int(audible[-1]) + 1 if len(audible) else 1
    # amplitude sqrt(10^(dB/10) x bin ratio), with exp: 1.5x as fast as a power of ten
    scale = np.sqrt(_bin_samples(fs) / fs / features.HIST_BIN_S)
    return (np.exp(db[:, :n_bins] * (np.log(10.0) / 20)) * scale).astype(np.float32), n_bins


def _weights(amplitude: np.ndarray) -> np.ndarray:
    """Weights of `_noise_segments` for an amplitude per band and bin: (bins + 1, 1, 2 x
    bands) float32; segment s interpolates from bin s - 1's centre to bin s's."""
    bands = len(amplitude)
    ext = np.concatenate([amplitude[:, :1], amplitude, amplitude[:, -1:]], axis=1).T
    weights = np.empty((len(ext) - 1, 1, 2 * bands), dtype=np.float32)
    weights[:, 0, :bands] = ext[:-1]  # T0: A[s]
    weights[:, 0, bands:] = ext[1:]  # T1: A[s + 1]
    return weights


def _late_weights(envelope_db: np.ndarray, fs: float) -> tuple[np.ndarray, int]:
    """`_weights` of the envelope's `_late_amplitude`, and the length in bins."""
    amplitude, n_bins = _late_amplitude(envelope_db, fs)
    return _weights(amplitude), n_bins


def late_ir(envelope_db: np.ndarray, sample_rate_hz: float) -> np.ndarray:
    """Late part from an envelope (8, N_FRAMES) in dB per 4 ms bin; starts at time zero."""
    fs = float(sample_rate_hz)
    weights, n_bins = _late_weights(envelope_db, fs)
    bin_samples = _bin_samples(fs)
    out = np.matmul(weights, _noise_segments(fs, len(weights)))
    half = bin_samples // 2
    return out.ravel()[half : half + n_bins * bin_samples]
