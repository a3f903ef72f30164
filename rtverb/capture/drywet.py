"""The impulse response between a dry and a processed (wet) recording of the same material.

Regularized (Tikhonov) spectral division over an FFT twice the recordings' length::

    H = W conj(D) / (|D|^2 + lam),   lam = mean(|D|^2) * 10 ** (-snr_db / 10)

Music and speech leave some frequencies with almost no energy; dividing there would turn the
wet's noise into a loud IR, while regularizing too much leaves those frequencies' share of the
IR out. ``lam`` follows the pair's own signal-to-noise ratio: a first, barely regularized pass
(`MAX_RANGE_DB`) gives the IR; the wet's energy that IR does not explain is its noise, and
bins where the dry is that far below its mean power are regularized in the second pass
(clamped to `MIN_RANGE_DB`-`MAX_RANGE_DB`).

The pair is refused when the response peaks at a negative lag or later than `MAX_LAG_S`
(misaligned), or when the IR explains less than `MIN_EXPLAINED` of the wet's energy (not the
same material).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import fft

from rtverb.capture.chain import DEFAULT_MAX_IR_S, Capture
from rtverb.capture.sweep import CaptureError, trim_to_noise

#: Bounds of the regularization range: bins this far below the dry's mean power, dB.
MIN_RANGE_DB = 20.0
MAX_RANGE_DB = 80.0
#: The wet may lag the dry by at most this much, seconds.
MAX_LAG_S = 0.5
#: Least fraction of the wet's energy the IR must explain (0.9: residual 10 dB below the wet).
MIN_EXPLAINED = 0.9


def capture_dry_wet(
    dry: np.ndarray,
    wet: np.ndarray,
    sample_rate_hz: float,
    max_ir_s: float = DEFAULT_MAX_IR_S,
    progress: Callable[[float], None] | None = None,
) -> Capture:
    """The IR from ``dry`` to ``wet``: (wet channels, taps) float32.

    Args:
        dry: (channels, frames) or (frames,); several channels are averaged to one.
        wet: (channels, frames) or (frames,), the same length as ``dry``.
        sample_rate_hz: both recordings' rate.
        max_ir_s: longest IR kept.
        progress: called with the fraction of the work done after each pass.

    Raises:
        CaptureError: different lengths, a silent dry or wet, a misaligned or unrelated pair.
    """
    d = np.atleast_2d(np.asarray(dry, dtype=np.float64)).mean(axis=0)
    w = np.atleast_2d(np.asarray(wet, dtype=np.float64))
    if len(d) != w.shape[-1]:
        raise CaptureError(
            f"dry and wet differ in length ({len(d)} vs {w.shape[-1]} frames); export them "
            "with the same length (pad the dry with silence to cover the wet's tail)"
        )
    for name, x in (("dry", d), ("wet", w)):
        if not np.any(x):
            raise CaptureError(f"the {name} recording is silent")
    fs = float(sample_rate_hz)
    n = fft.next_fast_len(2 * len(d), real=True)
    spectrum = fft.rfft(d, n)
    wet_spectrum = fft.rfft(w, n, axis=-1)
    taps = min(int(round(max_ir_s * fs)), len(d))
    ir, explained = _deconvolve(spectrum, wet_spectrum, w, taps, MAX_RANGE_DB, fs, n)
    if progress:
        progress(0.5)
    if explained < MIN_EXPLAINED:
        raise CaptureError(
            f"an IR explains only {100 * max(explained, 0):.0f} % of the wet's energy (at least "
            f"{100 * MIN_EXPLAINED:.0f} % needed): the wet is not the dry through a reverb "
            "(different takes, or a nonlinear or time-varying effect?)"
        )
    snr_db = -10 * np.log10(max(1.0 - explained, 1e-12))
    range_db = float(np.clip(snr_db, MIN_RANGE_DB, MAX_RANGE_DB))
    if range_db < MAX_RANGE_DB:
        ir, _ = _deconvolve(spectrum, wet_spectrum, w, taps, range_db, fs, n)
    if progress:
        progress(0.5)
    trimmed, pnr_db = trim_to_noise(ir, fs)
    return Capture(trimmed.astype(np.float32), fs, pnr_db)


def _deconvolve(
    spectrum: np.ndarray,
    wet_spectrum: np.ndarray,
    wet: np.ndarray,
    taps: int,
    range_db: float,
    fs: float,
    n: int,
) -> tuple[np.ndarray, float]:
    """(IR (channels, taps), fraction of the wet's energy it explains); refuses misalignment."""
    power = np.abs(spectrum) ** 2
    lam = power.mean() * 10 ** (-range_db / 10)
    response = fft.irfft(wet_spectrum * np.conj(spectrum) / (power + lam), n, axis=-1)
    peak = int(np.argmax(np.max(np.abs(response), axis=0)))
    lag = peak if peak < n // 2 else peak - n
    if lag < 0 or lag > MAX_LAG_S * fs:
        where = "before" if lag < 0 else "after"
        raise CaptureError(
            f"the wet follows the dry {abs(lag) / fs:.3f} s {where} it should: the pair is "
            f"misaligned (at most {MAX_LAG_S:g} s of delay, never negative); align the files' "
            "starts"
        )
    ir = response[:, :taps]
    frames = wet.shape[-1]
    predicted = fft.irfft(fft.rfft(ir, n, axis=-1) * spectrum, n, axis=-1)[:, :frames]
    explained = 1.0 - float(np.sum((wet - predicted) ** 2)) / float(np.sum(wet**2))
    return ir, explained
