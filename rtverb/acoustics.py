"""Room-acoustic parameters of an impulse response (ISO 3382-1): T20, T30, EDT, C50, C80, D50, DRR.

All measures come from the octave-band Schroeder energy decay curve (EDC). Octave bands are
filtered with zero-phase Butterworth band-passes so onsets keep their timing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import signal

from rtverb.params import BANDS_HZ
from rtverb.room import SPEED_OF_SOUND_M_S

#: Half-width of the window around the direct sound that counts as "direct" for DRR, seconds.
DIRECT_WINDOW_S = 0.0025
#: Butterworth order of the octave band-pass (applied forward and backward: twice this order).
BAND_FILTER_ORDER = 3
#: Onset detection without a known distance: first sample within this many dB of the peak.
ONSET_THRESHOLD_DB = -20.0


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
    """Zero-phase octave band of ``ir`` around ``center_hz``; None if the band exceeds Nyquist."""
    low, high = center_hz / np.sqrt(2), center_hz * np.sqrt(2)
    if high >= 0.5 * sample_rate_hz * 0.98:
        return None
    sos = signal.butter(BAND_FILTER_ORDER, [low, high], btype="bandpass", fs=sample_rate_hz, output="sos")
    return np.asarray(signal.sosfiltfilt(sos, ir.astype(np.float64)))


def schroeder_db(x: np.ndarray) -> np.ndarray:
    """Schroeder backward-integrated energy decay curve, dB relative to its start."""
    energy = np.cumsum(np.square(x, dtype=np.float64)[::-1])[::-1]
    total = energy[0]
    if total <= 0:
        return np.full(len(x), -np.inf)
    with np.errstate(divide="ignore"):
        return np.asarray(10.0 * np.log10(energy / total))


def decay_time_s(edc_db: np.ndarray, sample_rate_hz: float, start_db: float, end_db: float) -> float:
    """Time to decay 60 dB, from a least-squares line fitted to the EDC between two levels."""
    above_start = np.nonzero(edc_db <= start_db)[0]
    below_end = np.nonzero(edc_db <= end_db)[0]
    if len(above_start) == 0 or len(below_end) == 0:
        return float("nan")
    i0, i1 = above_start[0], below_end[0]
    if i1 - i0 < 3:
        return float("nan")
    t = np.arange(i0, i1) / sample_rate_hz
    slope, _ = np.polyfit(t, edc_db[i0:i1], 1)
    return float(-60.0 / slope) if slope < 0 else float("nan")


def onset_index(ir: np.ndarray, sample_rate_hz: float, distance_m: float | None = None,
                delay_samples: int = 0) -> int:
    """Sample index of the direct sound.

    With ``distance_m`` the onset is the geometric direct path (plus ``delay_samples``, e.g. the
    simulator's fractional-delay filter offset); otherwise the first sample within
    `ONSET_THRESHOLD_DB` of the peak.
    """
    if distance_m is not None:
        return int(round(distance_m / SPEED_OF_SOUND_M_S * sample_rate_hz)) + delay_samples
    mag = np.abs(ir)
    return int(np.argmax(mag >= mag.max() * 10 ** (ONSET_THRESHOLD_DB / 20)))


def _clarity_db(energy: np.ndarray, onset: int, split: int) -> float:
    early = energy[onset : onset + split].sum()
    late = energy[onset + split :].sum()
    return float(10 * np.log10(early / late)) if early > 0 and late > 0 else float("nan")


def measure(ir: np.ndarray, sample_rate_hz: float, distance_m: float | None = None,
            delay_samples: int = 0, bands_hz: tuple[float, ...] = BANDS_HZ) -> Metrics:
    """Measure an impulse response (1-D float array).

    Raises:
        ValueError: not 1-D, empty, non-finite or silent.
    """
    ir = np.asarray(ir)
    if ir.ndim != 1:
        raise ValueError(f"expected a 1-D impulse response, got shape {ir.shape}; pick one channel")
    if ir.size == 0:
        raise ValueError("the impulse response is empty")
    if not np.all(np.isfinite(ir)):
        raise ValueError("the impulse response contains NaN or Inf")
    if not np.any(ir):
        raise ValueError("the impulse response is silent (all zeros)")
    fs = float(sample_rate_hz)
    onset = min(onset_index(ir, fs, distance_m, delay_samples), len(ir) - 1)
    half = int(round(DIRECT_WINDOW_S * fs))
    ms50, ms80 = int(round(0.05 * fs)), int(round(0.08 * fs))
    per_band: dict[str, list[float]] = {k: [] for k in ("T20_s", "T30_s", "EDT_s", "C50_db", "C80_db", "D50")}
    for center in bands_hz:
        x = octave_band(ir, fs, center)
        if x is None:
            for values in per_band.values():
                values.append(float("nan"))
            continue
        edc = schroeder_db(x[onset:])
        energy = np.square(x)
        per_band["T20_s"].append(decay_time_s(edc, fs, -5.0, -25.0))
        per_band["T30_s"].append(decay_time_s(edc, fs, -5.0, -35.0))
        per_band["EDT_s"].append(decay_time_s(edc, fs, 0.0, -10.0))
        per_band["C50_db"].append(_clarity_db(energy, onset, ms50))
        per_band["C80_db"].append(_clarity_db(energy, onset, ms80))
        total = energy[onset:].sum()
        per_band["D50"].append(float(energy[onset : onset + ms50].sum() / total) if total > 0 else float("nan"))
    energy = np.square(ir.astype(np.float64))
    start = max(onset - half, 0)
    direct = energy[start : onset + half + 1].sum()
    reverberant = energy[onset + half + 1 :].sum()
    drr = float(10 * np.log10(direct / reverberant)) if direct > 0 and reverberant > 0 else float("nan")
    return Metrics(
        bands_hz=[float(b) for b in bands_hz],
        C50_broadband_db=_clarity_db(energy, start, ms50),
        DRR_db=drr,
        **per_band,
    )
