"""Room-acoustic parameters of an impulse response (ISO 3382-1): T20, T30, EDT, C50, C80, D50, DRR.

All measures come from octave-band Schroeder energy decay curves (EDC), started at the direct
sound. Octave bands are filtered with zero-phase Butterworth band-passes so onsets keep their
timing. Their ringing lengthens a 125 Hz T30 by 1% at T60 = 0.1 s (the model domain's shortest)
and by 20% at 0.05 s; higher bands and longer decays are unaffected.

Measured IRs end in a noise floor, which would flatten the EDC and lengthen T30. Where the IR
ends in a steady floor, each band's decay is cut where it meets the noise (Lundeby et al.
1995), the noise energy is subtracted, and the energy the cut removes is added back from the
fitted late decay. An IR that ends while still decaying (a clean simulation) has no floor and
is integrated as it is, exactly like a plain Schroeder integral.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import signal

from rtverb.room.params import BANDS_HZ
from rtverb.room.room import SPEED_OF_SOUND_M_S
from rtverb.synth.early import octave_band_sos

#: Half-width of the window around the direct sound that counts as "direct" for DRR, seconds.
DIRECT_WINDOW_S = 0.0025
#: Zeros padded around an IR before band filtering, in periods of the band centre: the
#: filter's response falls 90 dB in 13 periods.
FILTER_PAD_PERIODS = 15
#: Onset detection without a known distance: first sample within this many dB of the peak.
ONSET_THRESHOLD_DB = -20.0

#: The last tenth of an IR is a noise floor when its two halves' levels differ by less than
#: this, dB; otherwise the IR ends while still decaying and is integrated as it is.
NOISE_FLATNESS_DB = 3.0
#: Lundeby: first averaging interval, s (the paper: 10-50 ms).
LUNDEBY_INTERVAL_S = 0.01
#: Lundeby: averaging intervals per 10 dB of decay once the slope is known (the paper: 3-10).
LUNDEBY_INTERVALS_PER_10DB = 5
#: Lundeby: the noise is measured from where the fitted decay is this far below it, dB (5-10).
LUNDEBY_NOISE_MARGIN_DB = 10.0
#: Lundeby: the late-decay fit ends this far above the noise, dB (the paper: 5-10) ...
LUNDEBY_HEADROOM_DB = 5.0
#: ... and spans this many dB (the paper: 10-20).
LUNDEBY_FIT_RANGE_DB = 20.0
#: Lundeby: most iterations (the estimate usually settles in 2-3).
LUNDEBY_MAX_ITERATIONS = 5


@dataclass(frozen=True)
class Metrics:
    """Per octave band (``bands_hz``) and broadband parameters; NaN where not measurable."""

    bands_hz: list[float]
    T20_s: list[float]
    T30_s: list[float]
    EDT_s: list[float]
    C50_db: list[float]
    C80_db: list[float]
    D50: list[float]
    C50_broadband_db: float
    DRR_db: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None)."""

        def clean(v: Any) -> Any:
            if isinstance(v, list):
                return [clean(x) for x in v]
            return None if isinstance(v, float) and not np.isfinite(v) else v

        return {k: clean(v) for k, v in asdict(self).items()}


def octave_band(ir: np.ndarray, sample_rate_hz: float, center_hz: float) -> np.ndarray | None:
    """Zero-phase octave band of ``ir`` around ``center_hz`` (float64, same length as ``ir``).

    The IR is taken as zero outside its samples (an IR that stops abruptly must not be
    mirrored, as `scipy.signal.sosfiltfilt` pads by default). None if the band reaches Nyquist.
    """
    sos = octave_band_sos(float(sample_rate_hz), float(center_hz))
    if sos is None:
        return None
    pad = int(np.ceil(FILTER_PAD_PERIODS / center_hz * sample_rate_hz))
    padded = np.pad(ir.astype(np.float64), pad)
    return np.asarray(signal.sosfiltfilt(sos, padded, padtype=None)[pad:-pad])


def _fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``y = intercept + slope * x``; returns (intercept, slope)."""
    xm, ym = x.mean(), y.mean()
    dx = x - xm
    # Sums, not `@`: a threaded BLAS dot product is ~500x slower on a busy 2-core machine.
    denominator = float(np.sum(dx * dx))
    slope = float(np.sum(dx * (y - ym))) / denominator if denominator > 0 else 0.0
    return float(ym - slope * xm), slope


def _block_levels_db(energy: np.ndarray, interval: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean energy of consecutive ``interval``-sample blocks: (centres in samples, levels in dB)."""
    n_blocks = len(energy) // interval
    means = energy[: n_blocks * interval].reshape(n_blocks, interval).mean(axis=1)
    with np.errstate(divide="ignore"):
        return (np.arange(n_blocks) + 0.5) * interval, 10.0 * np.log10(means)


def _is_flat(tail: np.ndarray) -> bool:
    """Whether the end of an IR is a steady noise floor rather than a decay still going on."""
    half = len(tail) // 2
    first, second = float(tail[:half].mean()), float(tail[half:].mean())
    return first > 0 and second > 0 and abs(10.0 * np.log10(first / second)) < NOISE_FLATNESS_DB


def _fit_range(level: np.ndarray, high_db: float, low_db: float) -> tuple[int, int]:
    """Blocks from the first at or below ``high_db`` (after the peak) to the first at ``low_db``."""
    peak = int(np.argmax(level))
    below_high = np.nonzero(level[peak:] <= high_db)[0]
    start = peak + (int(below_high[0]) if len(below_high) else 0)
    below_low = np.nonzero(level[start:] <= low_db)[0]
    return start, start + (int(below_low[0]) if len(below_low) else len(level) - start)


def lundeby(energy: np.ndarray, sample_rate_hz: float) -> tuple[int, float, float]:
    """Where a decay meets its noise floor (Lundeby, Vigran, Bietz & Vorländer 1995).

    Args:
        energy: (samples,) squared impulse response (one band), starting at the onset.
        sample_rate_hz: its sample rate.

    Returns:
        (truncation point in samples, compensation energy, noise energy per sample): integrate
        ``energy - noise`` up to the point and add the compensation (the fitted late decay's
        energy from the point on). Without a noise floor: ``(len(energy), 0.0, 0.0)``.
    """
    n = len(energy)
    no_floor = (n, 0.0, 0.0)
    interval = max(int(round(LUNDEBY_INTERVAL_S * sample_rate_hz)), 1)
    tail = energy[n - max(n // 10, 2) :]
    if n < 10 * interval or not _is_flat(tail):
        return no_floor
    noise_db = 10.0 * np.log10(float(tail.mean()))
    # First estimate: one line from the peak to 10 dB above the noise (in dB per sample).
    t, level = _block_levels_db(energy, interval)
    start, stop = _fit_range(level, np.inf, noise_db + 10.0)
    if stop - start < 2:
        return no_floor
    intercept, slope = _fit_line(t[start:stop], level[start:stop])
    if slope >= 0:
        return no_floor
    cross = (noise_db - intercept) / slope
    for _ in range(LUNDEBY_MAX_ITERATIONS):
        interval = max(int(round(-10.0 / slope / LUNDEBY_INTERVALS_PER_10DB)), 1)
        t, level = _block_levels_db(energy, interval)
        noise_start = int(cross - LUNDEBY_NOISE_MARGIN_DB / slope)
        noise = float(energy[min(max(noise_start, 0), n - max(n // 10, 2)) :].mean())
        if noise <= 0 or len(level) < 4:
            break
        noise_db = 10.0 * np.log10(noise)
        low = noise_db + LUNDEBY_HEADROOM_DB
        start, stop = _fit_range(level, low + LUNDEBY_FIT_RANGE_DB, low)
        if stop - start < 2:
            break
        new_intercept, new_slope = _fit_line(t[start:stop], level[start:stop])
        if new_slope >= 0:
            break
        intercept, slope = new_intercept, new_slope
        new_cross = (noise_db - intercept) / slope
        converged = abs(new_cross - cross) < interval
        cross = new_cross
        if converged:
            break
    point = int(min(max(cross, 1.0), n))
    # Energy of the fitted decay 10 ** ((intercept + slope * t) / 10) from the point on.
    decay_per_sample = -slope * np.log(10.0) / 10.0
    compensation = 10.0 ** ((intercept + slope * point) / 10.0) / decay_per_sample
    return point, float(compensation), 10.0 ** (noise_db / 10.0)


def energy_decay_db(x: np.ndarray, sample_rate_hz: float, noise_floor: bool = True) -> np.ndarray:
    """Schroeder energy decay curve of ``x`` from its first sample, dB re its start.

    With ``noise_floor`` (default) a noise floor is found and removed (`lundeby`): the curve
    then stops where the decay met the noise, so it can be shorter than ``x``.
    """
    energy = np.square(x, dtype=np.float64)
    point, compensation, noise = lundeby(energy, sample_rate_hz) if noise_floor else (len(x), 0, 0)
    edc = np.cumsum((energy[:point] - noise)[::-1])[::-1] + compensation
    end = _first(edc <= 0)
    edc = edc if end is None else edc[:end]  # noise subtraction can overshoot at the end
    if len(edc) == 0:
        return np.full(1, -np.inf)
    return np.asarray(10.0 * np.log10(edc / edc[0]))


def _first(mask: np.ndarray) -> int | None:
    """Index of the first True in ``mask``, None if there is none (one pass, no index array)."""
    i = int(np.argmax(mask))
    return i if mask.size and mask[i] else None


def schroeder_db(x: np.ndarray) -> np.ndarray:
    """Plain Schroeder backward-integrated energy decay curve, dB relative to its start."""
    return energy_decay_db(x, 1.0, noise_floor=False)


def decay_time_s(
    edc_db: np.ndarray, sample_rate_hz: float, start_db: float, end_db: float
) -> float:
    """Time to decay 60 dB, from a least-squares line fitted to the EDC between two levels.

    NaN if the EDC does not reach ``end_db`` (not enough dynamic range above the noise).
    """
    i0, i1 = _first(edc_db <= start_db), _first(edc_db <= end_db)
    if i0 is None or i1 is None or i1 - i0 < 3:
        return float("nan")
    _, slope = _fit_line(np.arange(i0, i1) / sample_rate_hz, edc_db[i0:i1])
    return float(-60.0 / slope) if slope < 0 else float("nan")


def onset_index(
    ir: np.ndarray, sample_rate_hz: float, distance_m: float | None = None, delay_samples: int = 0
) -> int:
    """Sample index of the direct sound.

    With ``distance_m`` the onset is the geometric direct path (plus ``delay_samples``, e.g. the
    simulator's fractional-delay filter offset); otherwise the first sample within
    `ONSET_THRESHOLD_DB` of the peak.
    """
    if distance_m is not None:
        return int(round(distance_m / SPEED_OF_SOUND_M_S * sample_rate_hz)) + delay_samples
    mag = np.abs(ir)
    return int(np.argmax(mag >= mag.max() * 10 ** (ONSET_THRESHOLD_DB / 20)))


def _remaining(edc_db: np.ndarray, index: int) -> float:
    """Fraction of the energy after ``index`` (0 past the end of the curve)."""
    return float(10.0 ** (edc_db[index] / 10.0)) if index < len(edc_db) else 0.0


def _ratio_db(edc_db: np.ndarray, split: int) -> float:
    """Energy before ``split`` over energy after it, dB, from an EDC."""
    late = _remaining(edc_db, split)
    return float(10 * np.log10((1.0 - late) / late)) if 0 < late < 1 else float("nan")


def _check_ir(ir: np.ndarray) -> np.ndarray:
    ir = np.asarray(ir)
    if ir.ndim != 1:
        raise ValueError(f"expected a 1-D impulse response, got shape {ir.shape}; pick one channel")
    if ir.size == 0:
        raise ValueError("the impulse response is empty")
    if not np.all(np.isfinite(ir)):
        raise ValueError("the impulse response contains NaN or Inf")
    if not np.any(ir):
        raise ValueError("the impulse response is silent (all zeros)")
    return ir


def band_decays_db(
    ir: np.ndarray,
    sample_rate_hz: float,
    distance_m: float | None = None,
    delay_samples: int = 0,
    bands_hz: tuple[float, ...] = BANDS_HZ,
) -> list[np.ndarray | None]:
    """Each band's energy decay curve (dB, from the onset, noise floor removed); None above Nyquist.

    The curves `measure` fits, for plotting: sample ``i`` is ``i / sample_rate_hz`` s after
    the onset.
    """
    ir = _check_ir(ir)
    fs = float(sample_rate_hz)
    onset = min(onset_index(ir, fs, distance_m, delay_samples), len(ir) - 1)
    bands = (octave_band(ir, fs, center) for center in bands_hz)
    return [None if x is None else energy_decay_db(x[onset:], fs) for x in bands]


def measure(
    ir: np.ndarray,
    sample_rate_hz: float,
    distance_m: float | None = None,
    delay_samples: int = 0,
    bands_hz: tuple[float, ...] = BANDS_HZ,
) -> Metrics:
    """Measure an impulse response.

    Args:
        ir: (samples,) impulse response, any scale.
        sample_rate_hz: its sample rate.
        distance_m: source-listener distance if known: the onset is then the geometric direct
            path plus ``delay_samples`` (e.g. a simulator's filter delay); otherwise detected.
        delay_samples: see ``distance_m``.
        bands_hz: octave-band centres; bands reaching Nyquist come out NaN.

    Raises:
        ValueError: not 1-D, empty, non-finite or silent.
    """
    ir = _check_ir(ir)
    fs = float(sample_rate_hz)
    onset = min(onset_index(ir, fs, distance_m, delay_samples), len(ir) - 1)
    half = int(round(DIRECT_WINDOW_S * fs))
    ms50, ms80 = int(round(0.05 * fs)), int(round(0.08 * fs))
    keys = ("T20_s", "T30_s", "EDT_s", "C50_db", "C80_db", "D50")
    per_band: dict[str, list[float]] = {k: [] for k in keys}
    for edc in band_decays_db(ir, fs, distance_m, delay_samples, bands_hz):
        if edc is None:
            for values in per_band.values():
                values.append(float("nan"))
            continue
        per_band["T20_s"].append(decay_time_s(edc, fs, -5.0, -25.0))
        per_band["T30_s"].append(decay_time_s(edc, fs, -5.0, -35.0))
        per_band["EDT_s"].append(decay_time_s(edc, fs, 0.0, -10.0))
        per_band["C50_db"].append(_ratio_db(edc, ms50))
        per_band["C80_db"].append(_ratio_db(edc, ms80))
        per_band["D50"].append(1.0 - _remaining(edc, ms50))
    start = max(onset - half, 0)
    broadband = energy_decay_db(ir[start:], fs)
    return Metrics(
        bands_hz=[float(b) for b in bands_hz],
        C50_broadband_db=_ratio_db(broadband, ms50),
        DRR_db=_ratio_db(broadband, onset + half + 1 - start),
        **per_band,
    )


#: Inter-channel coherence is measured on the late part: from this long after the onset, s.
COHERENCE_START_S = 0.08


def interchannel_coherence(
    left: np.ndarray,
    right: np.ndarray,
    sample_rate_hz: float,
    bands_hz: tuple[float, ...] = BANDS_HZ,
) -> list[float]:
    """Coherence of two channels' late parts per octave band: their zero-lag normalized
    correlation, from `COHERENCE_START_S` after the earlier onset (1: identical, 0:
    uncorrelated, -1: opposite). NaN where a band reaches Nyquist or is silent.

    Raises:
        ValueError: either channel is not 1-D, empty, non-finite or silent, or their lengths
            differ.
    """
    left, right = _check_ir(left), _check_ir(right)
    if len(left) != len(right):
        raise ValueError(f"the channels differ in length: {len(left)} and {len(right)} samples")
    fs = float(sample_rate_hz)
    start = min(onset_index(left, fs), onset_index(right, fs)) + round(COHERENCE_START_S * fs)
    out = []
    for band in bands_hz:
        a, b = octave_band(left, fs, band), octave_band(right, fs, band)
        if a is None or b is None:
            out.append(float("nan"))
            continue
        a, b = a[start:], b[start:]
        power = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
        out.append(float(np.dot(a, b)) / power if power > 0 else float("nan"))
    return out
