"""What a room is matched to: T30, EDT and C50 per octave band (250-4000 Hz) and DRR.

Measured from an impulse response (`target_from_ir`, which refuses an IR that is silent, all
noise, too short for T30 or holds several onsets) or given as numbers (`target_from_text`).
Missing values are NaN and are left out of the fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rtverb.analysis.acoustics import measure, onset_index

#: Octave bands a room is matched in, Hz.
MATCH_BANDS_HZ: tuple[float, ...] = (250.0, 500.0, 1000.0, 2000.0, 4000.0)
#: An IR whose last tenth is within this many dB of its first tenth does not decay: all noise.
MIN_DECAY_DB = 20.0
#: T30 fits 35 dB of decay starting 5 dB down: an IR must fall at least this far, first tenth
#: to last, or it was cut short (its T30 would be biased).
MIN_T30_DECAY_DB = 40.0
#: A second onset: a peak this close to the largest one (dB) ...
SECOND_ONSET_DB = -3.0
#: ... this long after the first onset, seconds (later than any strong early reflection).
SECOND_ONSET_AFTER_S = 0.05


class MatchError(ValueError):
    """A target or a match request is invalid; the message names the problem and the fix."""


@dataclass(frozen=True)
class Target:
    """Per `MATCH_BANDS_HZ` band: T30 and EDT in seconds, C50 in dB (NaN: not given); DRR dB."""

    T30_s: tuple[float, ...]
    EDT_s: tuple[float, ...]
    C50_db: tuple[float, ...]
    DRR_db: float = math.nan
    source: str = ""


def _check_onsets(ir: np.ndarray, sample_rate_hz: float) -> None:
    envelope = np.abs(ir)
    first = onset_index(ir, sample_rate_hz)
    later = envelope[first + int(SECOND_ONSET_AFTER_S * sample_rate_hz) :]
    if len(later) and later.max() >= envelope.max() * 10 ** (SECOND_ONSET_DB / 20):
        at = first + int(SECOND_ONSET_AFTER_S * sample_rate_hz) + int(np.argmax(later))
        raise MatchError(
            f"the IR has several onsets (another peak as loud as the first at "
            f"{at / sample_rate_hz:.2f} s); give a single impulse response, e.g. cut the file "
            "before the second one"
        )


def target_from_ir(ir: np.ndarray, sample_rate_hz: float, source: str = "") -> Target:
    """Measure a (taps,) impulse response, or each channel of a (channels, taps) one, as a target.

    A multichannel IR (a microphone pair) gives each metric averaged over its channels, as
    ISO 3382-1 averages over receiver positions.

    Raises:
        MatchError: silent, no decay (all noise), several onsets, or no band's T30 measurable.
    """
    ir = np.asarray(ir, dtype=np.float64)
    if ir.ndim == 2:
        each = [target_from_ir(channel, sample_rate_hz, source) for channel in ir]

        def mean(field: str) -> tuple[float, ...]:
            return tuple(map(float, np.mean([getattr(t, field) for t in each], axis=0)))

        drr_db = float(np.mean([t.DRR_db for t in each]))
        return Target(mean("T30_s"), mean("EDT_s"), mean("C50_db"), drr_db, source)
    if not np.any(ir) or not np.all(np.isfinite(ir)):
        raise MatchError(f"{source or 'the target'} is silent or not finite; give a recorded IR")
    tenth = max(len(ir) // 10, 1)
    onset = onset_index(ir, sample_rate_hz)
    head = float(np.mean(np.square(ir[onset : onset + tenth])))
    tail = float(np.mean(np.square(ir[-tenth:])))
    decay_db = 10 * math.log10(head / tail) if tail > 0 else math.inf
    name = source or "the target"
    if decay_db < MIN_DECAY_DB:
        raise MatchError(
            f"{name} does not decay (its end is within {MIN_DECAY_DB:g} dB of its start): it "
            "is noise, not an impulse response"
        )
    if decay_db < MIN_T30_DECAY_DB:
        raise MatchError(
            f"{name} is too short or too noisy for T30: it falls {decay_db:.0f} dB from start "
            f"to end, T30 needs {MIN_T30_DECAY_DB:g}; give the whole decay, or the numbers "
            "with --t30"
        )
    _check_onsets(ir, sample_rate_hz)
    m = measure(ir, sample_rate_hz, bands_hz=MATCH_BANDS_HZ)
    if all(math.isnan(t) for t in m.T30_s):
        raise MatchError(
            f"{name} is too short or too noisy for T30 in every band "
            f"({len(ir) / sample_rate_hz:.2f} s; T30 needs 35 dB of decay above the noise): "
            "give a longer IR, or the numbers with --t30"
        )
    return Target(tuple(m.T30_s), tuple(m.EDT_s), tuple(m.C50_db), m.DRR_db, source)


def parse_bands(text: str, what: str) -> tuple[float, ...]:
    """``"500:1.8,1000:1.7"`` (band:value) or ``"1.8"`` (every band) -> values per band."""
    values = [math.nan] * len(MATCH_BANDS_HZ)
    bands = ", ".join(f"{b:g}" for b in MATCH_BANDS_HZ)
    for item in text.split(","):
        band, sep, value = item.strip().rpartition(":")
        try:
            number = float(value)
            indices = [MATCH_BANDS_HZ.index(float(band))] if sep else range(len(values))
        except ValueError:
            raise MatchError(
                f"{what}: expected BAND:VALUE pairs (bands {bands} Hz) or one value for all "
                f'bands, e.g. "500:1.8,1000:1.7"; got {text!r}'
            ) from None
        if not math.isfinite(number):
            raise MatchError(f"{what}: {value!r} is not a finite number")
        for i in indices:
            values[i] = number
    return tuple(values)


def target_from_text(
    t30: str | None = None, edt: str | None = None, c50: str | None = None, drr: str | None = None
) -> Target:
    """A target from numbers; at least one T30 is needed, times must be 0.05-20 s."""
    nan = (math.nan,) * len(MATCH_BANDS_HZ)
    t30_s = parse_bands(t30, "--t30") if t30 else nan
    edt_s = parse_bands(edt, "--edt") if edt else nan
    if all(math.isnan(t) for t in t30_s):
        raise MatchError('give at least one T30, e.g. --t30 "500:1.8,1000:1.7" or --t30 1.5')
    for name, values in (("--t30", t30_s), ("--edt", edt_s)):
        if any(not 0.05 <= v <= 20 for v in values if not math.isnan(v)):
            raise MatchError(f"{name}: reverberation times must be 0.05-20 s")
    try:
        drr_db = float(drr) if drr is not None else math.nan
    except ValueError:
        raise MatchError(f"--drr: expected a number of dB, got {drr!r}") from None
    c50_db = parse_bands(c50, "--c50") if c50 else nan
    parts = [f"{k} {v}" for k, v in (("T30", t30), ("EDT", edt), ("C50", c50), ("DRR", drr)) if v]
    return Target(t30_s, edt_s, c50_db, drr_db, ", ".join(parts))
