"""The audio process of `rtverb live`: the sounddevice callback and nothing else.

Python threads share one interpreter lock. In one process, the OSC server parsing a storm of
datagrams, the room worker preparing IRs, the status line and the recorder all delay the audio
callback (measured: 23 xruns in 90 s and 137 ms OSC replies under 600 malformed datagrams per
second). Here the callback (`rtverb.live.callback.LiveSession`: engine, crossfades, metering)
runs in a child process whose main thread only sleeps in a pipe read until it is told to stop.

Everything crosses in shared memory, without locks and without the callback ever waiting:

- prepared IRs: `rtverb.live.slots` (slots plus a generation word, latest wins);
- gains and figures: float64 cells (`CELLS`), each written by one side only;
- the input file and the recording: `rtverb.live.io.Ring` single-producer single-consumer rings.

`AudioProcess` is the parent's handle: it is what the room worker publishes IRs to (``set_ir``,
``set_mix``, ``swaps_started``...), and it stops the child, or notices that it died.
"""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing import shared_memory
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from rtverb.dsp.convolver import check_ir
from rtverb.dsp.engine import (
    MAX_PREDELAY_MS,
    Engine,
    check_gain_db,
    check_predelay_ms,
    with_predelay,
)
from rtverb.dsp.partition import plan_stages
from rtverb.live.callback import XRUN_LOG, LiveSession, LiveStats
from rtverb.live.io import Ring
from rtverb.live.slots import IrSlots, SlotReader, SlotWriter, untrack

#: Longest IR the live engine takes, seconds (plus the longest pre-delay).
MAX_IR_S = 12.0
#: How long the audio process may take to start (imports, engine, schedules, device), seconds.
START_TIMEOUT_S = 60.0
#: How long it may take to stop its stream and exit before it is killed, seconds.
STOP_TIMEOUT_S = 5.0
#: SCHED_FIFO priority of the callback thread where the audio server has not made it real-time
#: (JACK gives its clients 70-80 by default; below those, above every normal thread).
REALTIME_PRIORITY = 60

#: The shared float64 cells: the callback's figures (audio -> control) and the gains and the
#: end of the input file (control -> audio).
CELLS = (
    "callbacks frames xruns late_callbacks callback_exceptions worst_s busy_s load peak "
    "input_underruns record_dropped_frames swaps_started last_swap_started_s head_free_in_s "
    "nonfinite_blocks slots_taken slots_torn realtime wet_db dry_db mix_gen source_finished"
).split()
_CELL = {name: i for i, name in enumerate(CELLS)}
_XRUN_AT = len(CELLS)  # then XRUN_LOG cells: callback numbers of the first xruns
#: The cells copied from `LiveStats` after every callback.
_FROM_STATS = [
    (_CELL[name], name)
    for name in (
        "callbacks frames xruns late_callbacks callback_exceptions worst_s busy_s load peak "
        "input_underruns record_dropped_frames"
    ).split()
]


@dataclass(frozen=True)
class AudioConfig:
    """What the audio process needs (pickled to it)."""

    sample_rate_hz: int
    block_size: int
    channels: int
    device: str | int | None
    file_input: bool
    ir: np.ndarray
    wet_db: float
    dry_db: float
    pre: str | None
    post: str | None
    slots_name: str
    cells_name: str
    source_ring: str | None
    record_ring: str | None
    ring_frames: int


def live_stages(block_size: int, sample_rate_hz: int, channels: int) -> tuple[Any, ...]:
    """The partition stages of the live engine (what `Engine` plans for `MAX_IR_S`)."""
    return plan_stages(block_size, _max_taps(sample_rate_hz), channels)


def _max_taps(sample_rate_hz: int) -> int:
    return max(1, round((MAX_IR_S + MAX_PREDELAY_MS / 1000.0) * sample_rate_hz))


class AudioProcessError(RuntimeError):
    """The audio process could not start (the message says why and what to change)."""


class AudioProcess:
    """Start the audio process and talk to it (the control side; see the module docstring).

    Raises:
        AudioProcessError: the device could not be opened (the message lists the devices), or
            the process failed to start.
    """

    def __init__(
        self,
        ir: np.ndarray,
        *,
        sample_rate_hz: int,
        block_size: int,
        channels: int,
        device: str | int | None,
        file_input: bool,
        wet_db: float,
        dry_db: float,
        predelay_ms: float,
        pre: str | None = None,
        post: str | None = None,
        ring_frames: int = 0,
        record: bool = False,
    ) -> None:
        self.sample_rate_hz, self.block_size, self.channels = sample_rate_hz, block_size, channels
        self.latency_samples = block_size
        self._shm: list[shared_memory.SharedMemory] = []
        self._lock = threading.Lock()  # one publisher at a time (the room worker)
        self.slots = IrSlots(
            live_stages(block_size, sample_rate_hz, channels), channels, _max_taps(sample_rate_hz)
        )
        self._writer = SlotWriter(self.slots)
        self.cells = self._shared_array(len(CELLS) + XRUN_LOG)
        self.cells[_XRUN_AT:] = -1
        self.cells[_CELL["wet_db"]], self.cells[_CELL["dry_db"]] = wet_db, dry_db
        self.source_ring = self._ring(ring_frames) if file_input else None
        self.record_ring = self._ring(ring_frames) if record else None
        self._ir = np.asarray(ir, np.float32)
        self._predelay_ms = float(predelay_ms)
        first = with_predelay(self._checked(self._ir), self._predelay_ms, sample_rate_hz)
        config = AudioConfig(
            sample_rate_hz,
            block_size,
            channels,
            device,
            file_input,
            first.astype(np.float32),
            wet_db,
            dry_db,
            pre,
            post,
            self.slots.name,
            self._shm[0].name,
            self._shm[1].name if self.source_ring is not None else None,
            self._shm[-1].name if self.record_ring is not None else None,
            ring_frames,
        )
        self.exit_message = ""  #: what the audio process said when it ended
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "rtverb.live.audio", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._recv = Connection(from_child_r, writable=False)
        self._stopped = self._closed = False
        self._send.send_bytes(pickle.dumps(config))
        reply = self._reply(START_TIMEOUT_S)
        if reply[0] != "ready":
            self.close()
            raise AudioProcessError(str(reply[1]))
        self.stream_latency_s: float = reply[1]

    def _shared_array(self, n: int) -> np.ndarray:
        shm = shared_memory.SharedMemory(create=True, size=8 * n)
        self._shm.append(shm)
        return np.ndarray((n,), np.float64, shm.buf)

    def _ring(self, frames: int) -> Ring:
        shm = shared_memory.SharedMemory(create=True, size=Ring.nbytes(self.channels, frames))
        self._shm.append(shm)
        return Ring(self.channels, frames, shm.buf)

    def _checked(self, ir: np.ndarray) -> np.ndarray:
        taps = round(MAX_IR_S * self.sample_rate_hz)
        return check_ir(ir, self.channels, taps, float(self.sample_rate_hz), MAX_IR_S)

    def _reply(self, timeout_s: float) -> tuple[Any, ...]:
        try:
            if not self._recv.poll(timeout_s):
                return ("timeout", f"the audio process did not answer in {timeout_s:g} s")
            reply: tuple[Any, ...] = self._recv.recv()
        except (EOFError, OSError):
            return ("died", f"the audio process died (exit code {self._proc.poll()})")
        return reply

    # ---- what the room worker and the OSC controller call (IrSink) ---------------------------

    def set_ir(self, ir: np.ndarray, *, predelay_ms: float | None = None) -> None:
        """Prepare ``ir`` (with a new pre-delay if given) into a slot and publish it."""
        with self._lock:
            predelay = self._predelay_ms if predelay_ms is None else check_predelay_ms(predelay_ms)
            checked = self._checked(ir)
            self._writer.publish(with_predelay(checked, predelay, self.sample_rate_hz))
            self._ir, self._predelay_ms = ir, predelay

    def set_mix(
        self,
        *,
        wet_db: float | None = None,
        dry_db: float | None = None,
        predelay_ms: float | None = None,
    ) -> None:
        """Gains go to the callback's cells (it ramps them); a pre-delay re-publishes the IR.

        Raises:
            ValueError: a gain or the pre-delay out of range (as `Engine.set_mix`); nothing
                is changed.
        """
        wet_db = None if wet_db is None else check_gain_db("wet_db", wet_db)
        dry_db = None if dry_db is None else check_gain_db("dry_db", dry_db)
        predelay_ms = None if predelay_ms is None else check_predelay_ms(predelay_ms)
        if wet_db is not None:
            self.cells[_CELL["wet_db"]] = wet_db
        if dry_db is not None:
            self.cells[_CELL["dry_db"]] = dry_db
        self.cells[_CELL["mix_gen"]] += 1  # after the values: the callback reads it first
        if predelay_ms is not None and predelay_ms != self._predelay_ms:
            self.set_ir(self._ir, predelay_ms=predelay_ms)

    @property
    def predelay_ms(self) -> float:
        return self._predelay_ms

    @property
    def swaps_started(self) -> int:
        return int(self.cells[_CELL["swaps_started"]])

    @property
    def last_swap_started_s(self) -> float:
        """`time.perf_counter()` in the audio process (the same clock: CLOCK_MONOTONIC)."""
        return float(self.cells[_CELL["last_swap_started_s"]])

    @property
    def convolver(self) -> AudioProcess:
        return self  # the worker reads engine.convolver.head_free_in_s()

    def head_free_in_s(self) -> float:
        return float(self.cells[_CELL["head_free_in_s"]])

    @property
    def nonfinite_blocks(self) -> int:
        return int(self.cells[_CELL["nonfinite_blocks"]])

    def waiting(self) -> bool:
        """Whether the callback has yet to take the last IR published, or to start fading it
        in."""
        taken = int(self.slots.control[1]) >= self._writer.generation
        return not taken or self.head_free_in_s() > 0

    def finish_source(self) -> None:
        """Tell the callback that the input file has ended (silence is no underrun)."""
        self.cells[_CELL["source_finished"]] = 1

    def stats(self) -> LiveStats:
        """The callback's figures now."""
        s, c = LiveStats(), self.cells
        for name in vars(s):
            if name in _CELL:
                kind = type(getattr(s, name))
                setattr(s, name, kind(c[_CELL[name]]))
        s.xrun_at = c[_XRUN_AT:].astype(np.int64)
        s.first_exception = self.exit_message if s.callback_exceptions else ""
        return s

    def alive(self) -> bool:
        return self._proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        return self._proc.poll()

    def start(self) -> None:
        """Start the stream (after the input ring is primed)."""
        self._send.send("start")

    def stop(self) -> None:
        """Stop the stream and the process (killed if it does not exit). Safe to call twice;
        the shared memory stays readable (the recording ring is drained after this)."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._send.send(None)
            reply = self._reply(STOP_TIMEOUT_S)
            self.exit_message = str(reply[1] or "")
        except (OSError, ValueError):
            pass
        try:
            self._proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(STOP_TIMEOUT_S)
        self._send.close()
        self._recv.close()

    def close(self) -> None:
        """`stop`, then free the shared memory (nothing may use the rings or slots after
        this). Safe to call twice."""
        self.stop()
        if self._closed:
            return
        self._closed = True
        self.cells = self.cells.copy()  # a last stats() still works
        self.slots.close()
        self.source_ring = self.record_ring = None
        for shm in self._shm:
            shm.close()
            shm.unlink()


# ---- the audio process ----------------------------------------------------------------------


class _Callback:
    """The stream callback: new IR and gains in, the session's block, figures out."""

    def __init__(self, session: LiveSession, reader: SlotReader, cells: np.ndarray) -> None:
        self.session, self.reader, self.cells = session, reader, cells
        self.engine: Engine = session.engine
        self._mix_gen = 0.0
        self._first = True
        session.before, session.after = self._before, self._after

    def _before(self) -> None:
        if self._first:  # the audio server's thread: make it real-time if it is not yet
            self._first = False
            self.cells[_CELL["realtime"]] = _realtime()
        self.reader.poll()
        c = self.cells
        gen = c[_CELL["mix_gen"]]
        if gen != self._mix_gen:
            self._mix_gen = gen
            self.engine.set_mix(wet_db=float(c[_CELL["wet_db"]]), dry_db=float(c[_CELL["dry_db"]]))
        if c[_CELL["source_finished"]]:
            self.session.source_finished = True

    def _after(self) -> None:
        self.reader.release()
        s, c, conv = self.session.stats, self.cells, self.engine.convolver
        for i, name in _FROM_STATS:
            c[i] = getattr(s, name)
        c[_CELL["swaps_started"]] = conv.swaps_started
        c[_CELL["last_swap_started_s"]] = conv.last_swap_started_s
        c[_CELL["head_free_in_s"]] = conv.head_free_in_s()
        c[_CELL["nonfinite_blocks"]] = self.engine.nonfinite_blocks
        c[_CELL["slots_taken"]] = self.reader.taken
        c[_CELL["slots_torn"]] = self.reader.torn
        if 0 < s.xruns <= XRUN_LOG:
            c[_XRUN_AT + s.xruns - 1] = s.xrun_at[s.xruns - 1]


def _realtime() -> bool:
    """Run this thread under SCHED_FIFO (as JACK does for its clients where allowed): then the
    control process's threads, at normal priority, cannot preempt the callback (measured
    without it on a loaded 2-core machine: worst callback 4.8 ms of 5.3 during room changes,
    a scheduler time slice). False where the system does not allow it."""
    if os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR):
        return True
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
    except (OSError, AttributeError):
        return False
    return True


def _open_stream(config: AudioConfig, callback: Any, finished: Any) -> Any:
    import sounddevice as sd

    kwargs = dict(
        samplerate=config.sample_rate_hz,
        blocksize=config.block_size,
        dtype="float32",
        latency="low",
        device=config.device,
        callback=callback,
        finished_callback=finished,
    )
    try:
        if config.file_input:
            return sd.OutputStream(channels=config.channels, **kwargs)
        info = sd.query_devices(config.device, "input")
        inputs = int(info["max_input_channels"])
        if inputs < 1:
            raise ValueError(
                f"{info['name']!r} has no inputs; use --input FILE or another --device"
            )
        return sd.Stream(channels=(min(config.channels, inputs), config.channels), **kwargs)
    except (sd.PortAudioError, ValueError) as e:
        which = (
            f"device {config.device!r}" if config.device is not None else "the default audio device"
        )
        raise AudioProcessError(
            f"cannot open {which} at {config.sample_rate_hz} Hz, block {config.block_size}, "
            f"{config.channels} channel(s): {e}.\nPick one with --device NAME|ID (and "
            f"--sample-rate):\n{sd.query_devices()}"
        ) from None


def _chain(text: str | None) -> Any:
    if not text:
        return None
    from rtverb.offline.chain import parse_chain

    return parse_chain(text)


def _serve(requests: Connection, replies: Connection) -> None:
    """The audio process: build, stream, sleep until told to stop (or the parent is gone)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    config: AudioConfig = pickle.loads(requests.recv_bytes())
    shms: list[shared_memory.SharedMemory] = []  # kept mapped until the process exits

    def attach(name: str) -> Any:
        shm = shared_memory.SharedMemory(name=name)
        untrack(shm)
        shms.append(shm)
        return shm.buf

    try:
        engine = Engine(
            config.ir,
            channels=config.channels,
            block_size=config.block_size,
            sample_rate_hz=float(config.sample_rate_hz),
            wet_db=config.wet_db,
            dry_db=config.dry_db,
            max_ir_s=MAX_IR_S,
        )
        conv = engine.convolver
        slots = IrSlots(conv.stages, config.channels, conv.max_taps, name=config.slots_name)
        cells = np.ndarray((len(CELLS) + XRUN_LOG,), np.float64, attach(config.cells_name))
        rings = [
            None if name is None else Ring(config.channels, config.ring_frames, attach(name))
            for name in (config.source_ring, config.record_ring)
        ]
        session = LiveSession(
            engine,
            channels=config.channels,
            block_size=config.block_size,
            sample_rate_hz=float(config.sample_rate_hz),
            source_ring=rings[0],
            record_ring=rings[1],
            pre=_chain(config.pre),
            post=_chain(config.post),
        )
        _Callback(session, SlotReader(slots, conv), cells)
        ended_r, ended_w = os.pipe()  # written when the stream ends by itself
        stream = _open_stream(config, session.callback, lambda: os.write(ended_w, b"x"))
    except Exception as e:
        replies.send(
            ("error", str(e) if isinstance(e, AudioProcessError) else f"{type(e).__name__}: {e}")
        )
        return
    latency = stream.latency
    replies.send(("ready", float(sum(latency) if isinstance(latency, tuple) else latency)))
    try:
        if requests.recv() != "start":
            return
    except (EOFError, OSError):
        return
    # The cyclic garbage collector runs in whichever thread allocates, the callback included:
    # everything built so far is moved out of its reach and it stays off while streaming.
    gc.collect()
    gc.freeze()
    gc.disable()
    stream.start()
    message = ""
    try:
        # Sleep in the kernel until told to stop or the stream ends. Never wake otherwise: a
        # thread of normal priority that holds the GIL when the scheduler preempts it makes
        # the real-time callback wait for it (measured: 4.7 ms callbacks when this thread
        # woke every 0.5 s on a loaded machine).
        ready = wait([requests, ended_r])
        if ended_r in ready:
            message = "the audio stream stopped"
    except (EOFError, OSError):
        message = "the control process is gone"
    stream.stop()
    stream.close()
    replies.send(("done", message or session.stats.first_exception))


if __name__ == "__main__":
    _serve(
        Connection(int(sys.argv[1]), writable=False),
        Connection(int(sys.argv[2]), readable=False),
    )
