"""`LiveSession`: the audio callback of `rtverb live` and the buffers it uses.

Real-time contract of `LiveSession.callback` (sounddevice's rules): it copies the input (the
device's, or a file's through a preallocated `rtverb.live.io.Ring`) into a preallocated
(channels, block_size) array, runs the optional pre chain, ``engine.process(x, out=y)``, the
optional post chain, and copies into ``outdata`` and the recording ring. No locks, no file I/O,
no model inference, no array allocated (numpy's small view objects aside: tests/test_live.py
measures the callback in exactly this configuration); statistics are plain attributes. An
exception is counted and its block silenced; the stream keeps running. Floating-point warnings
are off in the callback (a warning allocates and prints): the engine's guard silences NaN and
Inf.

The exception: a pedalboard chain (--pre/--post) has no in-place `process`, so each returns a
new (channels, block_size) array per block: 2 kB at 2 x 256, and 5 us (HighpassFilter) to 12 us
(HighpassFilter | Compressor) per block on this machine.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from rtverb.live.io import Ring

#: Smoothing of the displayed callback load (exponential moving average per callback).
LOAD_SMOOTHING = 0.02
#: The callback numbers of this many first xruns are kept (when in the run they happened).
XRUN_LOG = 16


class LiveStats:
    """Figures written by the audio callback (plain attributes: no locks on the audio thread)."""

    def __init__(self) -> None:
        self.callbacks = 0
        self.frames = 0
        self.xruns = 0  # callbacks the audio server flagged (input overflow / output underflow)
        self.xrun_at = np.full(XRUN_LOG, -1, np.int64)  # callback numbers of the first xruns
        self.late_callbacks = 0  # callbacks that ran longer than their block
        self.callback_exceptions = 0
        self.first_exception = ""
        self.worst_s = 0.0
        self.busy_s = 0.0
        self.load = 0.0
        self.peak = 0.0
        self.input_underruns = 0  # blocks the file could not fill in time
        self.record_dropped_frames = 0


class LiveSession:
    """The audio callback and the buffers it uses, all allocated up front (see the module's
    real-time contract). ``engine`` is an `rtverb.Engine`; ``pre``/``post`` are pedalboard
    chains or None."""

    def __init__(
        self,
        engine: Any,
        *,
        channels: int,
        block_size: int,
        sample_rate_hz: float,
        source_ring: Ring | None = None,
        record_ring: Ring | None = None,
        pre: Any = None,
        post: Any = None,
    ) -> None:
        self.engine, self.channels, self.block_size = engine, channels, block_size
        self.sample_rate_hz = sample_rate_hz
        self.block_s = block_size / sample_rate_hz
        self.source_ring, self.record_ring = source_ring, record_ring
        self.pre, self.post = pre, post
        self.source_finished = False  # set by the main thread once the file has ended
        self.stats = LiveStats()
        #: Called at the start of every callback (timed with it) and at its end, after the
        #: figures (the audio process takes new IRs and gains, and publishes its figures).
        self.before: Callable[[], None] | None = None
        self.after: Callable[[], None] | None = None
        self._x = np.zeros((channels, block_size), np.float32)
        self._y = np.zeros((channels, block_size), np.float32)

    def callback(self, *args: Any) -> None:
        """sounddevice callback: ``(indata, outdata, frames, time, status)`` for a duplex
        stream, ``(outdata, frames, time, status)`` for output only."""
        t0 = time.perf_counter()
        s = self.stats
        indata = args[0] if len(args) == 5 else None
        outdata, frames, _, status = args[-4:]
        try:
            if self.before is not None:
                self.before()
            if status.output_underflow or status.input_overflow:
                if s.xruns < XRUN_LOG:
                    s.xrun_at[s.xruns] = s.callbacks
                s.xruns += 1
            with np.errstate(all="ignore"):  # a warning would allocate (and print); the
                for i in range(0, frames, self.block_size):  # engine's guard silences NaN and Inf
                    m = min(self.block_size, frames - i)
                    self._process(indata, outdata, i, m)
        except Exception:
            s.callback_exceptions += 1
            if not s.first_exception:
                s.first_exception = traceback.format_exc(limit=4)
            outdata.fill(0)
        elapsed = time.perf_counter() - t0
        budget = frames / self.sample_rate_hz
        s.callbacks += 1
        s.frames += frames
        s.busy_s += elapsed
        s.worst_s = max(s.worst_s, elapsed)
        s.load += LOAD_SMOOTHING * (elapsed / budget - s.load)
        if elapsed > budget:
            s.late_callbacks += 1
        if self.after is not None:
            self.after()

    def _process(self, indata: Any, outdata: Any, i: int, m: int) -> None:
        x, y = self._x[:, :m], self._y[:, :m]
        if indata is not None:
            inp = indata[i : i + m].T
            x[:] = inp[: self.channels] if inp.shape[0] >= self.channels else inp[:1]
        elif self.source_ring is not None:
            got = self.source_ring.read_into(x)
            if got < m:
                x[:, got:] = 0
                if not self.source_finished:
                    self.stats.input_underruns += 1
        if self.pre is not None:
            x = self.pre.process(x, self.sample_rate_hz, buffer_size=m, reset=False)
        y = self.engine.process(x, out=y)
        if self.post is not None:
            y = self.post.process(y, self.sample_rate_hz, buffer_size=m, reset=False)
        outdata[i : i + m] = y.T
        self.stats.peak = max(self.stats.peak, float(y.max()), -float(y.min()))
        if self.record_ring is not None:
            self.stats.record_dropped_frames += m - self.record_ring.write(y)
