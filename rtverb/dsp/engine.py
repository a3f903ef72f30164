"""`Engine`: the reverb's signal path: convolver, wet and dry gains, pre-delay, output guard.

``process(block)`` is the one entry point that live I/O, file rendering and the benchmark
drive. The dry signal is delayed by the convolver's latency so that dry and wet stay aligned;
the output is ``wet_gain * (x * ir) + dry_gain * x``, both delayed by `latency_samples`.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from rtverb.dsp.convolver import CROSSFADE_MS, Convolver, check_block
from rtverb.room.params import PARAMS_BY_NAME, SILENT_DB

#: Gain changes ramp linearly over this long (no zipper noise).
GAIN_RAMP_MS = 20.0
#: Longest pre-delay, from the parameter table.
MAX_PREDELAY_MS = PARAMS_BY_NAME["mix/predelay_ms"].max


def db_to_gain(db: float) -> float:
    """Linear gain of ``db`` decibels; `SILENT_DB` or below is silence (0)."""
    return 0.0 if db <= SILENT_DB else 10.0 ** (db / 20.0)


def _finite(x: np.ndarray, flags: np.ndarray) -> bool:
    """No NaN or Inf in ``x``, using ``flags`` (bool, at least x's shape) as scratch.

    No temporary array and no floating-point warning (an ``np.errstate`` costs more than this);
    counting the flags costs a seventh of reducing them (``np.logical_and.reduce``) on a block.
    """
    ok = flags[: x.shape[0], : x.shape[1]]
    np.isfinite(x, out=ok)
    return bool(np.count_nonzero(ok) == ok.size)


def with_predelay(ir: np.ndarray, predelay_ms: float, sample_rate_hz: float) -> np.ndarray:
    """``ir`` delayed by ``predelay_ms`` (leading zeros on its last axis)."""
    frames = round(predelay_ms * sample_rate_hz / 1000.0)
    if frames == 0 or not isinstance(ir, np.ndarray) or ir.ndim not in (1, 2, 3):
        return ir  # the convolver names whatever is wrong with ir
    pad = [(0, 0)] * (ir.ndim - 1) + [(frames, 0)]
    return np.pad(ir, pad)


def check_gain_db(name: str, value: float) -> float:
    """``value`` of the mix gain ``name`` ("wet_db" or "dry_db"), checked: a finite number up to
    the parameter table's maximum.

    Raises:
        ValueError: names the gain, the bound and the value.
    """
    spec = PARAMS_BY_NAME[f"mix/{name}"]
    if not (isinstance(value, int | float) and math.isfinite(value) and value <= spec.max):
        raise ValueError(f"{name}: expected a number <= {spec.max:g} dB, got {value!r}")
    return float(value)


def check_predelay_ms(value: float) -> float:
    """``value`` as a float if it is a pre-delay in 0..`MAX_PREDELAY_MS`, else ValueError."""
    if not (isinstance(value, int | float) and 0.0 <= value <= MAX_PREDELAY_MS):
        raise ValueError(f"predelay_ms: expected 0..{MAX_PREDELAY_MS:g} ms, got {value!r}")
    return float(value)


class _Ramp:
    """A gain that moves linearly to its target over a fixed number of frames."""

    __slots__ = ("value", "target", "step", "left", "frames")

    def __init__(self, value: float, frames: int) -> None:
        self.value = self.target = value
        self.step, self.left, self.frames = 0.0, 0, max(1, frames)

    def segment(self, target: float, out: np.ndarray, ramp: np.ndarray) -> np.ndarray | float:
        """The next ``len(out)`` gains: a float while steady, else ``out`` filled in place."""
        if target != self.target:  # a new target: ramp from where we are
            self.target, self.left = target, self.frames
            self.step = (target - self.value) / self.frames
        if self.left == 0:
            return self.value
        n = len(out)
        m = min(n, self.left)
        np.multiply(ramp[1 : m + 1], self.step, out=out[:m])
        out[:m] += self.value
        out[m:] = self.target
        self.left -= m
        self.value = self.target if self.left == 0 else self.value + m * self.step
        return out


class Engine:
    """Convolution reverb with smoothed wet/dry gains (dB), pre-delay (ms) and an output guard.

    Blocks are (channels, frames) float32, any number of frames. ``ir`` is (taps,),
    (channels, taps) or a true-stereo (channels, channels, taps) matrix (see `Convolver`), at
    most ``max_ir_s`` long. `set_ir` and `set_mix` may be called from
    any thread; `process` and `reset` from the audio thread. The real-time contract is the
    `Convolver`'s: with ``out`` given (as the live callback does), `process` allocates no array.

    A block whose input holds NaN or Inf enters as silence (the state stays finite, the tail
    rings on). An output block that holds NaN or Inf (e.g. an overflow from absurd levels) is
    replaced by silence and the state is reset, a bounded share per block (`Convolver.reset`).
    Both are counted in `nonfinite_blocks`.
    """

    def __init__(
        self,
        ir: np.ndarray,
        *,
        channels: int = 2,
        block_size: int = 256,
        sample_rate_hz: float = 48000.0,
        wet_db: float = PARAMS_BY_NAME["mix/wet_db"].default,
        dry_db: float = PARAMS_BY_NAME["mix/dry_db"].default,
        predelay_ms: float = PARAMS_BY_NAME["mix/predelay_ms"].default,
        crossfade_ms: float = CROSSFADE_MS,
        max_ir_s: float = 12.0,
    ) -> None:
        self.max_ir_s = float(max_ir_s)
        self.sample_rate_hz = float(sample_rate_hz)
        self._predelay_ms = check_predelay_ms(predelay_ms)
        self._conv = Convolver(
            self._with_predelay(self._check_length(ir), self._predelay_ms),
            block_size,
            sample_rate_hz,
            channels=channels,
            crossfade_ms=crossfade_ms,
            max_ir_s=max_ir_s + MAX_PREDELAY_MS / 1000.0,
        )
        self._ir = ir
        self._control = threading.Lock()  # serializes set_ir / set_mix(predelay); never audio
        self.channels, self.block_size = channels, block_size
        #: Frames between a frame going in and its (dry and wet) output.
        self.latency_samples = self._conv.latency_samples
        self._wet_target = db_to_gain(check_gain_db("wet_db", wet_db))
        self._dry_target = db_to_gain(check_gain_db("dry_db", dry_db))
        ramp_frames = round(GAIN_RAMP_MS * sample_rate_hz / 1000.0)
        self._wet = _Ramp(self._wet_target, ramp_frames)
        self._dry = _Ramp(self._dry_target, ramp_frames)
        self._ramp = np.arange(block_size + 1, dtype=np.float32)
        self._gain = np.zeros((2, block_size), np.float32)
        self._wet_buf = np.zeros((channels, block_size), np.float32)
        self._flags = np.zeros((channels, block_size), bool)
        self._dry_buf = np.zeros((channels, block_size), np.float32)
        self._zeros = np.zeros((channels, block_size), np.float32)
        #: Output blocks replaced by silence because they held NaN or Inf.
        self.nonfinite_blocks = 0
        #: Crossfades to a new IR (or pre-delay) begun by the audio thread, and
        #: `time.perf_counter()` when the last one began (copied from the convolver).
        self.swaps_started = 0
        self.last_swap_started_s = 0.0

    # ---- control side ------------------------------------------------------------------

    def _check_length(self, ir: np.ndarray) -> np.ndarray:
        if isinstance(ir, np.ndarray) and ir.ndim in (1, 2, 3):
            taps = ir.shape[-1]
            if taps > round(self.max_ir_s * self.sample_rate_hz):
                raise ValueError(
                    f"ir: {taps} taps ({taps / self.sample_rate_hz:.2f} s) is longer than "
                    f"max_ir_s = {self.max_ir_s:g} s"
                )
        return ir

    def _with_predelay(self, ir: np.ndarray, predelay_ms: float) -> np.ndarray:
        return with_predelay(ir, predelay_ms, self.sample_rate_hz)

    def set_ir(self, ir: np.ndarray, *, predelay_ms: float | None = None) -> None:
        """Crossfade to ``ir`` (prepared on this thread), with a new pre-delay if given: one
        prepared IR for both. On ValueError the IR and pre-delay stay as they were."""
        predelay = self._predelay_ms if predelay_ms is None else check_predelay_ms(predelay_ms)
        with self._control:
            self._conv.set_ir(self._with_predelay(self._check_length(ir), predelay))
            self._ir, self._predelay_ms = ir, predelay

    def set_mix(
        self,
        *,
        wet_db: float | None = None,
        dry_db: float | None = None,
        predelay_ms: float | None = None,
    ) -> None:
        """Change gains (ramped over `GAIN_RAMP_MS`) and pre-delay (crossfaded like an IR)."""
        wet = None if wet_db is None else db_to_gain(check_gain_db("wet_db", wet_db))
        dry = None if dry_db is None else db_to_gain(check_gain_db("dry_db", dry_db))
        if predelay_ms is not None:
            predelay_ms = check_predelay_ms(predelay_ms)
            with self._control:
                if predelay_ms != self._predelay_ms:
                    self._conv.set_ir(self._with_predelay(self._ir, predelay_ms))
                    self._predelay_ms = predelay_ms
        if wet is not None:
            self._wet_target = wet
        if dry is not None:
            self._dry_target = dry

    @property
    def predelay_ms(self) -> float:
        return self._predelay_ms

    @property
    def convolver(self) -> Convolver:
        return self._conv

    # ---- audio side --------------------------------------------------------------------

    def reset(self) -> None:
        """Silence all state (convolver, dry delay) over the next blocks (`Convolver.reset`);
        gains jump to their targets."""
        self._conv.reset()
        self._wet.value = self._wet.target = self._wet_target
        self._dry.value = self._dry.target = self._dry_target
        self._wet.left = self._dry.left = 0

    def process(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Reverberate ``block`` (channels, frames) float32 into ``out`` (or a new array).

        ``out`` may be ``block`` itself (in-place processing).
        """
        out = check_block(block, self.channels, out)
        conv, size, frames, flags = self._conv, self.block_size, block.shape[1], self._flags
        for i in range(0, frames, size):
            m = min(size, frames - i)
            x, y = block[:, i : i + m], out[:, i : i + m]
            if not _finite(x, flags):  # keep NaN and Inf out of the state
                x = self._zeros[:, :m]
                self.nonfinite_blocks += 1
            wet, dry = self._wet_buf[:, :m], self._dry_buf[:, :m]
            conv.stream(x, wet, dry)  # reads x before y is written: in place is fine
            gw = self._wet.segment(self._wet_target, self._gain[0, :m], self._ramp)
            gd = self._dry.segment(self._dry_target, self._gain[1, :m], self._ramp)
            np.multiply(wet, gw, out=y)
            np.multiply(dry, gd, out=dry)
            np.add(y, dry, out=y)
            if not _finite(y, flags):  # e.g. overflow from absurd input levels
                return self._silence(out)
        self.swaps_started = conv.swaps_started
        self.last_swap_started_s = conv.last_swap_started_s
        return out

    def _silence(self, out: np.ndarray) -> np.ndarray:
        out.fill(0)
        self.nonfinite_blocks += 1
        self.reset()
        return out
