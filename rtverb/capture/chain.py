"""Capture the impulse response of a pedalboard chain offline (`capture_chain`).

The sweep goes through the chain on two channels at once (the same signal on both): a chain
whose two outputs differ is stereo and gives a (2, taps) IR, otherwise a (1, taps) one. With
``true_stereo`` each input is swept alone and the IR is (2 inputs, 2 outputs, taps).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pedalboard

from rtverb.capture.sweep import CaptureError, Sweep, deconvolve, linear_part, sweep_duration_s
from rtverb.capture.sweep import trim_to_noise as _trim
from rtverb.offline.chain import parse_chain

#: Default longest IR captured, seconds.
DEFAULT_MAX_IR_S = 3.0
#: Default sweep level, dB re full scale.
DEFAULT_LEVEL_DB = -6.0
#: Two output channels are the same (a mono chain) when they differ by less than this, re peak.
SAME_CHANNELS_TOLERANCE = 1e-6
#: Frames the chain processes per call: the progress callback is told after each.
PROCESS_CHUNK_FRAMES = 65536


@dataclass(frozen=True)
class Capture:
    """A captured impulse response.

    ``ir`` is (outputs, taps) float32, or (inputs, outputs, taps) for a true-stereo capture;
    ``peak_to_noise_db`` is inf where the response has no noise floor; ``latency_s`` is the
    delay removed from the start (0 offline: pedalboard compensates plugin latency).
    """

    ir: np.ndarray
    sample_rate_hz: float
    peak_to_noise_db: float
    latency_s: float = 0.0

    def first_channel(self) -> np.ndarray:
        """The (taps,) IR of the first input to the first output (what analysis uses)."""
        return self.ir.reshape(-1, self.ir.shape[-1])[0]


def _run_chain(
    board: pedalboard.Pedalboard,
    x: np.ndarray,
    sample_rate_hz: float,
    progress: Callable[[float], None] | None,
) -> np.ndarray:
    """``x`` (channels, frames) through the chain in chunks; refuses a change of length."""
    board.reset()
    parts = []
    for start in range(0, x.shape[-1], PROCESS_CHUNK_FRAMES):
        chunk = x[:, start : start + PROCESS_CHUNK_FRAMES]
        parts.append(board.process(chunk, sample_rate_hz, reset=False))
        if progress:
            progress(chunk.shape[-1] / x.shape[-1])
    y = np.concatenate(parts, axis=-1)
    if y.shape[-1] != x.shape[-1]:
        raise CaptureError(
            f"the chain turned {x.shape[-1]} frames into {y.shape[-1]}: it changes the length "
            "or the sample rate, so it has no impulse response; remove resampling or "
            "time-stretching plugins"
        )
    if not np.all(np.isfinite(y)):
        raise CaptureError("the chain output NaN or Inf; check its parameters")
    return np.asarray(y, dtype=np.float64)


def capture_chain(
    chain: str | pedalboard.Pedalboard,
    sample_rate_hz: float = 48000.0,
    max_ir_s: float = DEFAULT_MAX_IR_S,
    sweep_s: float | None = None,
    level_db: float = DEFAULT_LEVEL_DB,
    true_stereo: bool = False,
    progress: Callable[[float], None] | None = None,
) -> Capture:
    """The impulse response of a chain (CHAIN text as ``rtverb render`` parses it, or a board).

    Args:
        chain: CHAIN text or a `pedalboard.Pedalboard`.
        sample_rate_hz: rate the chain runs at.
        max_ir_s: longest IR kept; the sweep is made long enough to keep harmonic distortion
            out of it (`sweep_duration_s`) unless ``sweep_s`` is given.
        level_db: sweep level, dB re full scale.
        true_stereo: sweep each of two inputs alone; the IR is (2, 2, taps).
        progress: called with the fraction of the work done after each chunk.

    Raises:
        CaptureError: bad arguments, a chain that changes the length, a silent response.
        rtverb.offline.chain.ChainError: the CHAIN text is invalid.
    """
    _check_args(sample_rate_hz, max_ir_s, level_db)
    board = parse_chain(chain) if isinstance(chain, str) else chain
    sweep = Sweep(sample_rate_hz, sweep_s or sweep_duration_s(max_ir_s, sample_rate_hz))
    x = sweep.signal() * 10 ** (level_db / 20)
    signal = np.concatenate([x, np.zeros(int(round(max_ir_s * sample_rate_hz)))])
    inputs = (
        [np.stack([signal, 0 * signal]), np.stack([0 * signal, signal])]
        if true_stereo
        else [np.stack([signal, signal])]
    )
    irs = []
    for stereo_input in inputs:
        step = None if progress is None else (lambda f: progress(f / len(inputs)))
        y = _run_chain(board, stereo_input.astype(np.float32), sample_rate_hz, step)
        response = deconvolve(y, x)
        irs.append(linear_part(response, sweep, max_ir_s))
    ir = np.stack(irs) if true_stereo else irs[0]
    if not true_stereo and np.max(np.abs(ir[0] - ir[1])) <= SAME_CHANNELS_TOLERANCE * max(
        float(np.max(np.abs(ir))), np.finfo(float).tiny
    ):
        ir = ir[:1]
    flat = ir.reshape(-1, ir.shape[-1])
    trimmed, pnr_db = _trim(flat, sample_rate_hz)
    ir = trimmed.reshape(*ir.shape[:-1], trimmed.shape[-1])
    return Capture(ir.astype(np.float32), float(sample_rate_hz), pnr_db)


def _check_args(sample_rate_hz: float, max_ir_s: float, level_db: float) -> None:
    if not 8000 <= sample_rate_hz <= 384000:
        raise CaptureError(f"the sample rate must be 8000-384000 Hz, got {sample_rate_hz:g}")
    if not 0.01 <= max_ir_s <= 30:
        raise CaptureError(f"--max-ir-s must be 0.01-30 s, got {max_ir_s:g}")
    if not -60 <= level_db <= 0:
        raise CaptureError(f"--level-db must be -60 to 0 dB re full scale, got {level_db:g}")
