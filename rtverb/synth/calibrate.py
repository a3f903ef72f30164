"""Calibrate a late envelope so that the rendered IR measures the room encoder's T30.

The encoder's heads predict each band's T30 from the room's physics features more accurately
than the FNO's envelope decays (docs/evaluation.md); the FNO shapes the envelope's onset and
curvature, which set EDT and C50. `calibrate_t30` keeps that shape up to the point where the
band's energy decay curve has fallen `HINGE_DB`, and from there tilts the band's late
envelope (dB per second) until the T30 the analysis would read off the rendered IR is the
head's.

What the analysis reads is predicted on the envelope's frame grid: the late energy as the
analysis octave filters (`rtverb.synth.early.octave_band_sos`) see the renderer's noise bands
(each band's noise leaks into its neighbours' analysis bands: `band_leakage`), plus the exact
early part, integrated backwards (Schroeder), and a least-squares line from -5 to -35 dB, as
`rtverb.analysis.acoustics.measure` fits. Damped secant steps on the tilt per band; the best
iterate is kept (a decay with two slopes can make T30 jump between iterations).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
from scipy import signal

from rtverb.room.params import BANDS_HZ
from rtverb.synth import features
from rtverb.synth.early import octave_band_sos
from rtverb.synth.late import noise_bands

#: The tilt starts where the band's energy decay curve has fallen this far (dB): before it,
#: the FNO's envelope (EDT is read from 0 to -10 dB) is kept as it is.
HINGE_DB = -10.0
#: Secant iterations on the tilt, and the step taken of each (damped: leakage couples bands).
ITERATIONS = 8
STEP = 0.8
#: Iterations stop once every band's predicted T30 is this close to its target (log ratio).
CONVERGED = 0.003
#: The iterations read the decay curves down to this far below the loudest frame (dB): what
#: is fainter moves T30's -35 dB point by less than 0.01 dB.
TRIM_DB = -100.0
#: The secant's slope (reading's rate per tilt) is taken as at least this.
MIN_SLOPE = 0.1
#: The tilt changes a band's decay rate (dB/s) by at most these fractions of the envelope's
#: own rate: slower by 80 %, faster by 5x (a head far outside that is not trusted).
MAX_SLOWER, MAX_FASTER = 0.8, 5.0
#: The rate the leakage is measured at; it depends on the filters' shapes, not the rate.
_LEAKAGE_RATE_HZ = 48000.0
_T30_RANGE_DB = (-5.0, -35.0)
_LN10_10 = np.log(10.0) / 10
_AIR_DB = features.air_db()


@cache
def band_leakage() -> np.ndarray:
    """(analysis bands, model bands): the share of each analysis band's late energy that
    comes from each model band's noise, rows summing to one.

    The renderer's noise bands are the simulator's bands of flattened noise
    (`rtverb.synth.late`); the analysis filter of band b (applied forward and backward) weighs
    their power spectra: about 2.5 % of the 500 Hz reading is the 250 Hz band's noise, 5 % the
    1 kHz band's.
    """
    fs = _LEAKAGE_RATE_HZ
    bands = noise_bands(fs)
    power = np.abs(np.fft.rfft(bands, axis=1)) ** 2
    freq = np.fft.rfftfreq(bands.shape[1], 1 / fs)
    rows = []
    for center in BANDS_HZ:
        sos = octave_band_sos(fs, center)
        response = np.abs(signal.sosfreqz(sos, worN=freq, fs=fs)[1]) ** 4  # forward-backward
        rows.append(power @ response)
    leakage = np.array(rows)
    return leakage / leakage.sum(axis=1, keepdims=True)


def edc_db(envelope_db: np.ndarray, early: np.ndarray) -> np.ndarray:
    """The analysis bands' energy decay curves (dB, 0 at the first frame) from a late envelope
    (8, frames) dB and the early part's energy per frame (`features.early_energy`), both from
    the first frame on (the envelope's frames or its first ones)."""
    late = np.exp((envelope_db + _AIR_DB[:, : envelope_db.shape[1]]) * _LN10_10)
    energy = band_leakage() @ late + early[: len(BANDS_HZ)]
    tail = np.cumsum(energy[:, ::-1], axis=1)[:, ::-1]
    with np.errstate(divide="ignore"):
        return 10 * np.log10(tail / np.maximum(tail[:, :1], 1e-300))


def decay_times_s(edc_db: np.ndarray, top_db: float, bottom_db: float) -> np.ndarray:
    """Per band: -60 / the least-squares slope of ``edc_db`` (dB per s) between ``top_db`` and
    ``bottom_db``; NaN where fewer than 2 frames lie there or the line does not fall."""
    t = features.FRAME_TIMES_S[: edc_db.shape[1]]
    mask = (edc_db <= top_db) & (edc_db >= bottom_db)
    n = mask.sum(axis=1)
    safe = np.where(mask, edc_db, 0.0)
    t_mean = (mask * t).sum(axis=1) / np.maximum(n, 1)
    y_mean = safe.sum(axis=1) / np.maximum(n, 1)
    dt = np.where(mask, t - t_mean[:, None], 0.0)
    slope = (dt * (safe - y_mean[:, None])).sum(axis=1) / np.maximum((dt * dt).sum(axis=1), 1e-12)
    with np.errstate(divide="ignore"):
        return np.where((n >= 2) & (slope < 0), -60 / np.minimum(slope, -1e-12), np.nan)


def calibrate_t30(envelope_db: np.ndarray, early: np.ndarray, t30_s: np.ndarray) -> np.ndarray:
    """The envelope (8, N_FRAMES) dB with each analysis band's decay after `HINGE_DB` tilted
    so that its predicted T30 is ``t30_s`` (per model band; NaN or a band above the analysis
    bands: left alone). A new array."""
    return apply_tilt(envelope_db, early, tilt_db_s(envelope_db, early, t30_s))


def _tilter(
    envelope_db: np.ndarray, early: np.ndarray
) -> tuple[np.ndarray, Callable[..., np.ndarray]]:
    """The envelope's decay curves and a function of a tilt per analysis band (dB/s, positive:
    faster) and a frame count that returns the envelope's first frames tilted after the hinge."""
    n = len(BANDS_HZ)
    t = features.FRAME_TIMES_S
    on = envelope_db[:n] > features.FLOOR_DB
    edc = edc_db(envelope_db, early)
    below = edc <= HINGE_DB
    hinge_s = np.where(below.any(axis=1), t[np.argmax(below, axis=1)], t[-1])
    onset_s = np.where(on.any(axis=1), t[np.argmax(on, axis=1)], t[-1])
    start = np.maximum(hinge_s, onset_s)
    ramp = np.maximum(t - start[:, None], 0.0)  # (bands, frames) s
    # a slower decay never lifts the envelope above its level where the tilt starts (a flat
    # or rising stretch of it would otherwise grow without bound)
    ceiling = np.where(
        ramp > 0,
        envelope_db[np.arange(n), np.searchsorted(t, start).clip(max=len(t) - 1)][:, None],
        np.inf,
    )

    def tilted(tilt: np.ndarray, frames: int = envelope_db.shape[1]) -> np.ndarray:
        out = envelope_db[:, :frames].copy()
        shaped = np.minimum(out[:n] - tilt[:, None] * ramp[:, :frames], ceiling[:, :frames])
        shaped = np.maximum(shaped, features.FLOOR_DB)
        out[:n] = np.where(on[:, :frames], shaped, out[:n])
        return out

    return edc, tilted


def apply_tilt(envelope_db: np.ndarray, early: np.ndarray, tilt_db_s: np.ndarray) -> np.ndarray:
    """The envelope with each analysis band's decay after `HINGE_DB` made faster by
    ``tilt_db_s`` (per analysis band, dB/s; `tilt_db_s` finds it). A new array."""
    return _tilter(envelope_db, early)[1](np.asarray(tilt_db_s, dtype=np.float64))


def tilt_db_s(envelope_db: np.ndarray, early: np.ndarray, t30_s: np.ndarray) -> np.ndarray:
    """Per analysis band, the tilt (dB/s) after `HINGE_DB` that makes the envelope's predicted
    T30 ``t30_s`` (0 where that band has no target, or no decay to read)."""
    n = len(BANDS_HZ)
    edc, tilted = _tilter(envelope_db, early)
    target = np.asarray(t30_s[:n], dtype=np.float64)
    rate = 60 / decay_times_s(edc, *_T30_RANGE_DB)  # the envelope's own, dB/s
    usable = np.isfinite(target) & (target > 0) & np.isfinite(rate)
    wanted = 60 / np.where(usable, target, 1.0)
    lo, hi = -MAX_SLOWER * rate, (MAX_FASTER - 1) * rate
    # the iterations read the curves only down to `TRIM_DB` below the loudest frame
    level = (envelope_db[:n] + _AIR_DB[:n]).max(axis=0)
    loud = np.nonzero((level > level.max() + TRIM_DB) | (early[:n].max(axis=0) > 0))[0]
    frames = int(loud[-1]) + 1 if len(loud) else envelope_db.shape[1]
    tilt, slope = np.zeros(n), np.ones(n)
    last_tilt, last_rate = np.full(n, np.nan), np.full(n, np.nan)
    best_tilt, best_error = tilt.copy(), np.full(n, np.inf)
    stalled = np.zeros(n, dtype=int)  # iterations since a band last came closer
    for step in range(ITERATIONS + 1):
        got = 60 / decay_times_s(edc_db(tilted(tilt, frames), early[:, :frames]), *_T30_RANGE_DB)
        ok = usable & np.isfinite(got)
        error = np.where(ok, np.abs(np.log(np.where(ok, got, 1.0) / wanted)), np.inf)
        better = error < best_error
        best_error, best_tilt = (
            np.where(better, error, best_error),
            np.where(better, tilt, best_tilt),
        )
        stalled = np.where(better, 0, stalled + 1)
        done = (best_error < CONVERGED) | (stalled >= 2)  # there, or out of reach
        if step == ITERATIONS or np.all(done[usable]):
            break
        # secant: how much the reading's rate moved per unit of tilt (leakage from a slower
        # neighbour and the untilted part before the hinge make it less than one)
        moved = tilt - last_tilt
        with np.errstate(invalid="ignore", divide="ignore"):
            secant = np.where(np.abs(moved) > 1e-9, (got - last_rate) / moved, np.nan)
        slope = np.where(np.isfinite(secant), np.clip(secant, MIN_SLOPE, 2.0), slope)
        last_tilt, last_rate = tilt, got
        step_db_s = np.where(ok, STEP * (wanted - np.where(ok, got, 0.0)) / slope, 0.0)
        tilt = np.where(usable, np.clip(tilt + step_db_s, lo, hi), 0.0)
    return best_tilt
