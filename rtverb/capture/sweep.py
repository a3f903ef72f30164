"""The exponential sine sweep (Farina 2000), its inverse, and what a recording of it gives back.

A sweep ``x`` goes through a system; the recording ``y`` is deconvolved by spectral division
``Y X* / (|X|^2 + eps)`` over an FFT long enough that nothing wraps: on a linear system this is
exact (an identity chain gives a delta, a delay and gain give the shifted, scaled delta). ``eps``
is `INVERSE_FLOOR_DB` below the sweep's peak power: it only touches bins the sweep barely
excites (below its start frequency), where the division would amplify noise.

Harmonic distortion of order k comes out ``lag * ln(k)`` seconds *before* the linear response
(the exponential sweep's property), i.e. at the end of the circular result. The sweep is made
slow enough that the second harmonic's response ends before the linear one starts
(`sweep_duration_s`), and only the linear window is kept.

The kept IR is trimmed where its decay meets the noise floor (`trim_to_noise`, Lundeby's
method from `rtverb.analysis.acoustics`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft

from rtverb.analysis.acoustics import lundeby

#: Lowest frequency the sweep starts at, Hz.
START_HZ = 20.0
#: Fade-in and fade-out of the sweep (Hann halves), seconds: no click at either end.
FADE_S = 0.01
#: Regularization of the spectral division: this far below the sweep's peak power, dB.
INVERSE_FLOOR_DB = -120.0
#: Kept before the detected onset of an IR, seconds (anti-causal ringing of band limits).
PRE_ONSET_S = 0.002
#: A sweep lasts at most this long (the harmonic spacing then allows IRs of ~6 s at 48 kHz).
MAX_SWEEP_S = 60.0
#: A sweep lasts at least this long (short sweeps have little energy per frequency).
MIN_SWEEP_S = 1.0


class CaptureError(ValueError):
    """A capture cannot be made or makes no sense; the message names the problem and the fix."""


@dataclass(frozen=True)
class Sweep:
    """An exponential sine sweep from ``start_hz`` to ``stop_hz`` (float64, amplitude 1)."""

    sample_rate_hz: float
    duration_s: float
    start_hz: float = START_HZ
    stop_hz: float | None = None  # default: Nyquist

    @property
    def stop(self) -> float:
        return self.stop_hz if self.stop_hz is not None else 0.5 * self.sample_rate_hz

    @property
    def lag_s(self) -> float:
        """Farina's ``L``: harmonic k arrives ``L * ln(k)`` s before the linear response."""
        return self.duration_s / math.log(self.stop / self.start_hz)

    def signal(self) -> np.ndarray:
        """The sweep, (frames,) float64, Hann-faded at both ends."""
        fs = self.sample_rate_hz
        n = int(round(self.duration_s * fs))
        t = np.arange(n) / fs
        lag = self.lag_s
        x = np.sin(2 * np.pi * self.start_hz * lag * np.expm1(t / lag))
        fade = min(int(round(FADE_S * fs)), n // 2)
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        x[:fade] *= ramp
        x[n - fade :] *= ramp[::-1]
        return x

    def harmonic_lead_s(self, order: int) -> float:
        """How long before the linear response harmonic ``order`` arrives, seconds."""
        return self.lag_s * math.log(order)


def sweep_duration_s(max_ir_s: float, sample_rate_hz: float, start_hz: float = START_HZ) -> float:
    """The shortest sweep whose 2nd harmonic ends before an IR of ``max_ir_s`` begins."""
    ratio = math.log(0.5 * sample_rate_hz / start_hz)
    needed = (max_ir_s + 2 * PRE_ONSET_S) * ratio / math.log(2.0)
    return float(min(max(needed, MIN_SWEEP_S), MAX_SWEEP_S))


def deconvolve(recording: np.ndarray, sweep: np.ndarray) -> np.ndarray:
    """Circular response of ``recording`` to ``sweep``: (channels, n) float64, n >= both lengths.

    Index 0 is zero lag; negative lags (harmonic distortion, a recording that leads the sweep)
    wrap to the end.
    """
    rec = np.atleast_2d(np.asarray(recording, dtype=np.float64))
    n = fft.next_fast_len(max(rec.shape[-1], len(sweep)) + len(sweep), real=True)
    x = fft.rfft(sweep, n)
    power = np.abs(x) ** 2
    eps = power.max() * 10 ** (INVERSE_FLOOR_DB / 10)
    inverse = np.conj(x) / (power + eps)
    return np.asarray(fft.irfft(fft.rfft(rec, n, axis=-1) * inverse, n, axis=-1))


def linear_part(response: np.ndarray, sweep: Sweep, max_ir_s: float) -> np.ndarray:
    """The linear IR window of a `deconvolve` result: lag 0 to before the 2nd harmonic.

    Raises:
        CaptureError: the 2nd harmonic would overlap an IR of ``max_ir_s`` (sweep too short).
    """
    fs = sweep.sample_rate_hz
    lead = sweep.harmonic_lead_s(2)
    if max_ir_s + PRE_ONSET_S > lead:
        raise CaptureError(
            f"a {sweep.duration_s:g} s sweep separates harmonic distortion from at most "
            f"{lead - PRE_ONSET_S:.2f} s of IR, not {max_ir_s:g} s; lengthen the sweep "
            f"(--sweep-s {sweep_duration_s(max_ir_s, fs, sweep.start_hz):.1f}) or shorten "
            "--max-ir-s"
        )
    return response[..., : int(round(max_ir_s * fs))]


def trim_to_noise(
    ir: np.ndarray, sample_rate_hz: float, start: int = 0
) -> tuple[np.ndarray, float]:
    """Cut ``ir`` (channels, taps) where its broadband decay meets the noise floor.

    Returns the trimmed IR (from ``start``) and the peak-to-noise ratio in dB (inf where the
    IR has no noise floor: it ends while still decaying, or is exactly zero after it).
    """
    ir = np.atleast_2d(ir)[:, start:]
    energy = np.sum(np.square(ir, dtype=np.float64), axis=0)
    nonzero = np.nonzero(energy > 0)[0]
    if len(nonzero) == 0:
        raise CaptureError("the captured response is silent: nothing came back from the system")
    energy = energy[: nonzero[-1] + 1]
    point, _, noise = lundeby(energy, sample_rate_hz)
    pnr_db = 10 * math.log10(float(energy.max()) / noise) if noise > 0 else math.inf
    return ir[:, :point], pnr_db
