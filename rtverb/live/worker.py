"""`RoomWorker`: room changes off the audio thread.

Room changes arrive at any rate (an OSC fader sends 50-100 per second). The worker keeps only
the latest one (latest wins), synthesizes its impulse response on its own thread, and hands it
to the engine (``engine.set_ir``), whose audio thread crossfades to it. Nothing here ever runs
on, or waits for, the audio thread; the audio thread never waits for the worker.

The engine's head stage crossfades one IR at a time and takes the latest IR published when its
crossfade ends (the longer stages follow on their own). So the worker waits until the head will
be free by the time a synthesis is done (``convolver.head_free_in_s()`` against the recent
synthesis time) *before* it takes the latest room and synthesizes it: the IR it publishes is as
fresh as possible and starts fading in as soon as the head can take it.

Knob-to-ear latency is measured per change: from its arrival (``received_s``,
`time.perf_counter`) to the moment the audio thread starts the crossfade to a room that includes
it (``engine.last_swap_started_s``), plus one block (the first output block with the new room
fading in). A change that arrives during the head's crossfade waits for it to end.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from rtverb.room.params import MIX_PARAMS
from rtverb.room.room import Room

log = logging.getLogger(__name__)

#: How long the worker waits for the audio thread to start the crossfade to a new IR before it
#: stops measuring that change's latency (no audio running, e.g. in tests), seconds.
SWAP_WAIT_S = 0.25
#: Poll period while waiting for the audio thread (a fraction of a 256-frame block: every wake-up
#: takes the GIL from the audio thread's point of view, so not much finer), seconds.
SWAP_POLL_S = 0.002
#: Longest wait for the engine to finish a crossfade before publishing anyway (no audio
#: running), seconds.
BUSY_WAIT_S = 1.0
#: Latencies kept for the summary (the most recent), and arrival times kept per pending room.
LATENCY_HISTORY = 10_000


class IrSink(Protocol):
    """What the worker needs from `rtverb.Engine`."""

    @property
    def swaps_started(self) -> int: ...

    @property
    def last_swap_started_s(self) -> float: ...

    def set_ir(self, ir: np.ndarray, *, predelay_ms: float | None = None) -> None: ...


def _engine_free_in_s(engine: IrSink) -> float:
    """Seconds until an IR published now would start fading in (`Convolver.head_free_in_s`);
    0 for a sink without a convolver."""
    convolver = getattr(engine, "convolver", None)
    return 0.0 if convolver is None else float(convolver.head_free_in_s())


Synthesize = Callable[[Room, int], np.ndarray]


@dataclass(frozen=True)
class LatencySummary:
    """Knob-to-ear latency (its count, p50, p95, max) and the synthesis time's p50 over the
    recent room changes, milliseconds; None before the first change."""

    count: int
    p50_ms: float | None
    p95_ms: float | None
    max_ms: float | None
    synth_p50_ms: float | None


def geometry_key(room: Room) -> Room:
    """The room without its mix, name and description: equal keys give equal impulse responses."""
    mix: dict[str, Any] = {p.field: p.default for p in MIX_PARAMS}
    return dataclasses.replace(room, **mix, name="", description="")


class RoomWorker:
    """Coalesce room changes (latest wins), synthesize each IR, hand it to the engine.

    Args:
        engine: the convolver (`rtverb.Engine` or anything with ``set_ir``, ``swaps_started``
            and ``last_swap_started_s``).
        sample_rate_hz: rate of the synthesized IR.
        block_s: the audio block duration, added to latencies (the first block with the new
            room).
        synthesize: ``(room, sample_rate_hz) -> ir``; `rtverb.synth.synthesize` by default.
        applied_room: the room whose IR the engine already holds (skipped if submitted again).
        predelay: also apply the room's pre-delay here, off the OSC thread: with a new IR in
            the same ``set_ir`` (one IR prepared and published per change), alone through
            ``engine.set_mix(predelay_ms=…)``.
        on_error: called on the worker thread with a message when a synthesis fails (the
            engine keeps the previous IR).
    """

    def __init__(
        self,
        engine: IrSink,
        *,
        sample_rate_hz: int,
        block_s: float,
        synthesize: Synthesize | None = None,
        applied_room: Room | None = None,
        on_error: Callable[[str], None] | None = None,
        predelay: bool = False,
    ) -> None:
        if synthesize is None:
            from rtverb.synth import synthesize as default_synthesize

            synthesize = default_synthesize
        self._engine = engine
        self._synthesize = synthesize
        self._sample_rate_hz = int(sample_rate_hz)
        self._block_s = float(block_s)
        self._on_error = on_error
        self._cond = threading.Condition()
        self._pending: Room | None = None
        self._arrivals: list[float] = []  # arrival times of the changes the pending room covers
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.applied_room: Room | None = applied_room
        self._applied_key = geometry_key(applied_room) if applied_room is not None else None
        self._predelay = predelay
        self._applied_predelay_ms = applied_room.predelay_ms if applied_room is not None else 0.0
        self.ir_taps = 0  #: length of the last IR handed to the engine
        self.requests = 0  #: rooms submitted
        self.coalesced = 0  #: rooms replaced by a later one before synthesis
        self.skipped = 0  #: rooms whose geometry equals the IR already applied
        self.syntheses = 0  #: IRs synthesized and handed to the engine
        self.predelay_changes = 0  #: pre-delay changes applied
        self.errors = 0
        self.synth_ms: deque[float] = deque(maxlen=LATENCY_HISTORY)
        self.latency_ms: deque[float] = deque(maxlen=LATENCY_HISTORY)
        self._ready_ms: deque[float] = deque(maxlen=8)  # synthesis + set_ir, the wait's lead

    # ---- control -----------------------------------------------------------------------

    def start(self) -> RoomWorker:
        """Start the worker thread (a daemon); returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rtverb-room", daemon=True)
            self._thread.start()
        return self

    def alive(self) -> bool:
        """Whether the worker thread runs (started and not stopped)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the synthesis in progress; pending changes are dropped."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def __enter__(self) -> RoomWorker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def submit(self, room: Room, received_s: float | None = None) -> None:
        """Queue ``room`` (replacing any room not yet started); never blocks for long.

        Args:
            room: the new room.
            received_s: `time.perf_counter` when the change arrived, for the latency figures.
        """
        with self._cond:
            self.requests += 1
            if self._pending is not None:
                self.coalesced += 1
            self._pending = room
            if received_s is not None and len(self._arrivals) < LATENCY_HISTORY:
                self._arrivals.append(received_s)
            self._cond.notify()

    def wait_idle(self, timeout_s: float = 10.0) -> bool:
        """Wait until nothing is pending or in progress; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending is not None or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def latency_summary(self) -> LatencySummary:
        """Knob-to-ear latency and synthesis time over the recent changes."""

        def pct(values: deque[float], q: float) -> float | None:
            return round(float(np.percentile(list(values), q)), 2) if values else None

        return LatencySummary(
            count=len(self.latency_ms),
            p50_ms=pct(self.latency_ms, 50),
            p95_ms=pct(self.latency_ms, 95),
            max_ms=round(max(self.latency_ms), 2) if self.latency_ms else None,
            synth_p50_ms=pct(self.synth_ms, 50),
        )

    # ---- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                while self._pending is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                self._busy = True
            # wait (unlocked: submit never waits) until the engine can take a new IR by the
            # time it is synthesized
            lead_s = float(np.median(self._ready_ms)) / 1e3 if self._ready_ms else 0.0
            deadline = time.perf_counter() + BUSY_WAIT_S
            while (wait_s := _engine_free_in_s(self._engine) - lead_s) > 0:
                if self._stopping or time.perf_counter() > deadline:
                    break
                time.sleep(min(SWAP_POLL_S, wait_s))
            if self._stopping:
                return
            with self._cond:
                room, arrivals = self._pending, self._arrivals
                self._pending, self._arrivals = None, []
            assert room is not None
            try:
                self._apply(room, arrivals)
            except Exception as e:  # never let the worker die: the engine keeps its IR
                self._fail(f"room worker: {type(e).__name__}: {e}")

    def _fail(self, message: str) -> None:
        self.errors += 1
        log.error(message)
        if self._on_error is not None:
            self._on_error(message)

    def _apply(self, room: Room, arrivals: list[float]) -> None:
        key = geometry_key(room)
        new_predelay = self._predelay and room.predelay_ms != self._applied_predelay_ms
        if key == self._applied_key:
            if new_predelay:
                self._set_predelay(room)
            else:
                self.skipped += 1
            self.applied_room = room
            return
        t0 = time.perf_counter()
        ir = np.asarray(self._synthesize(room, self._sample_rate_hz), dtype=np.float32)
        self.synth_ms.append((time.perf_counter() - t0) * 1e3)
        if ir.ndim not in (1, 2, 3) or ir.shape[-1] == 0 or not np.all(np.isfinite(ir)):
            self._fail(
                f"synthesized IR for {room.name!r} is unusable (shape {ir.shape}, finite: "
                f"{bool(np.all(np.isfinite(ir)))}); keeping the previous room"
            )
            return
        swaps_before = self._engine.swaps_started
        if new_predelay:  # one IR for both: the audio never hears the old pre-delay on it
            self._engine.set_ir(ir, predelay_ms=room.predelay_ms)
            self._applied_predelay_ms = room.predelay_ms
            self.predelay_changes += 1
        else:
            self._engine.set_ir(ir)
        self._ready_ms.append((time.perf_counter() - t0) * 1e3)
        self.applied_room = room
        self._applied_key = key
        self.ir_taps = int(ir.shape[-1])
        self.syntheses += 1
        if arrivals:
            self._measure(swaps_before, arrivals)

    def _set_predelay(self, room: Room) -> None:
        self._engine.set_mix(predelay_ms=room.predelay_ms)  # type: ignore[attr-defined]
        self._applied_predelay_ms = room.predelay_ms
        self.predelay_changes += 1

    def _measure(self, swaps_before: int, arrivals: list[float]) -> None:
        deadline = time.perf_counter() + SWAP_WAIT_S
        while self._engine.swaps_started == swaps_before:
            if self._stopping or time.perf_counter() > deadline:
                return
            time.sleep(SWAP_POLL_S)
        started = self._engine.last_swap_started_s
        self.latency_ms.extend((started - t + self._block_s) * 1e3 for t in arrivals)
