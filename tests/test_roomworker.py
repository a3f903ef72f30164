"""RoomWorker: latest wins, failures keep the previous IR, latency is measured from the engine."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from rtverb.live.worker import RoomWorker, geometry_key
from rtverb.room.room import Room

SR = 48000
BLOCK_S = 256 / SR
#: Generous bound for thread hand-offs on a loaded 2-core machine, seconds.
WAIT_S = 10.0
#: A crossfade far longer than a stand-in synthesis: an IR published early would wait visibly.
LONG_CROSSFADE_MS = 200.0


def stand_in_synth(delay_s: float = 0.0, calls: list[Room] | None = None):
    """Exponentially decaying noise whose length encodes the room's x size (so tests can tell
    which room an IR came from)."""

    def synthesize(room: Room, sample_rate_hz: int) -> np.ndarray:
        if calls is not None:
            calls.append(room)
        time.sleep(delay_s)
        taps = int(room.size_m[0] * 1000)
        rng = np.random.default_rng(taps)
        return (rng.standard_normal(taps) * np.exp(-np.arange(taps) / 2000)).astype(np.float32)

    return synthesize


class FakeEngine:
    """Records set_ir; with ``audio=True`` a thread plays the audio thread's part: at each block
    boundary it starts the crossfade to the latest published IR (crossfade timing is tested
    against the real engine, `test_changes_during_a_crossfade_wait_for_it_against_a_real_engine`).
    """

    def __init__(self, audio: bool = False) -> None:
        self.irs: list[np.ndarray] = []
        self.swaps_started = 0
        self.last_swap_started_s = 0.0
        self._published = 0
        self._stop = threading.Event()
        if audio:
            threading.Thread(target=self._audio, daemon=True).start()

    def set_ir(self, ir: np.ndarray, *, predelay_ms: float | None = None) -> None:
        self.irs.append(ir)
        self._published += 1

    def _audio(self) -> None:
        while not self._stop.wait(BLOCK_S):
            if self._published > self.swaps_started:
                self.last_swap_started_s = time.perf_counter()
                self.swaps_started = self._published

    def close(self) -> None:
        self._stop.set()


def sized(x: float) -> Room:
    return Room(size_m=(x, 5.0, 3.0), listener_position_m=(min(5.0, x - 0.6), 3.0, 1.2))


def test_latest_wins_and_changes_coalesce():
    calls: list[Room] = []
    engine = FakeEngine()
    with RoomWorker(
        engine, sample_rate_hz=SR, block_s=BLOCK_S, synthesize=stand_in_synth(0.02, calls)
    ) as worker:
        rooms = [sized(6.0 + 0.01 * i) for i in range(200)]
        for room in rooms:
            worker.submit(room)
        assert worker.wait_idle(WAIT_S)
    assert worker.requests == 200
    assert worker.applied_room == rooms[-1]
    assert len(engine.irs[-1]) == int(rooms[-1].size_m[0] * 1000)  # the last IR is the last room
    # far fewer syntheses than requests: changes arriving during a synthesis coalesce
    assert worker.syntheses == len(calls) == len(engine.irs) < 50
    assert worker.coalesced + worker.syntheses + worker.skipped == worker.requests


def test_mix_only_changes_do_not_resynthesize():
    engine = FakeEngine()
    room = sized(6.0)
    with RoomWorker(engine, sample_rate_hz=SR, block_s=BLOCK_S, synthesize=stand_in_synth()) as w:
        w.submit(room)
        assert w.wait_idle(WAIT_S)
        w.submit(room.with_values({"mix/wet_db": -20.0}))
        assert w.wait_idle(WAIT_S)
    assert w.syntheses == 1 and w.skipped == 1
    assert geometry_key(room) == geometry_key(room.with_values({"mix/dry_db": -3.0}))
    assert geometry_key(room) != geometry_key(room.with_values({"room/scattering": 0.2}))


def test_geometry_and_predelay_together_reach_the_engine_as_one_ir():
    from rtverb.dsp.engine import Engine

    start = sized(6.0)
    engine = Engine(stand_in_synth()(start, SR), max_ir_s=0.5, predelay_ms=start.predelay_ms)
    published: list[np.ndarray] = []
    publish = engine.convolver.set_ir
    engine.convolver.set_ir = lambda ir: (published.append(ir), publish(ir))[1]  # type: ignore[method-assign]
    room = sized(7.0).with_values({"mix/predelay_ms": start.predelay_ms + 30.0})
    with RoomWorker(
        engine,
        sample_rate_hz=SR,
        block_s=BLOCK_S,
        synthesize=stand_in_synth(),
        applied_room=start,
        predelay=True,
    ) as worker:
        worker.submit(room)
        assert worker.wait_idle(WAIT_S)
    delay = round(room.predelay_ms * SR / 1000)
    assert len(published) == 1 and worker.syntheses == 1 and worker.predelay_changes == 1
    assert not published[0][..., :delay].any() and published[0][..., delay] != 0
    assert engine.predelay_ms == room.predelay_ms


def test_a_failing_synthesis_keeps_the_previous_ir_and_the_worker_alive():
    engine = FakeEngine()
    reported: list[str] = []
    good = stand_in_synth()

    def flaky(room: Room, sr: int) -> np.ndarray:
        if room.size_m[0] == 7.0:
            raise RuntimeError("model exploded")
        if room.size_m[0] == 8.0:
            return np.full(100, np.nan, dtype=np.float32)
        return good(room, sr)

    with RoomWorker(
        engine, sample_rate_hz=SR, block_s=BLOCK_S, synthesize=flaky, on_error=reported.append
    ) as w:
        for x in (6.0, 7.0, 8.0):
            w.submit(sized(x))
            assert w.wait_idle(WAIT_S)
        assert len(engine.irs) == 1 and w.applied_room == sized(6.0)
        assert w.errors == 2
        assert "model exploded" in reported[0] and "unusable" in reported[1]
        w.submit(sized(9.0))
        assert w.wait_idle(WAIT_S)
    assert w.applied_room == sized(9.0) and len(engine.irs) == 2


def test_knob_to_ear_latency_is_measured_from_the_engine():
    engine = FakeEngine(audio=True)
    try:
        with RoomWorker(
            engine, sample_rate_hz=SR, block_s=BLOCK_S, synthesize=stand_in_synth(0.005)
        ) as w:
            for i in range(10):
                w.submit(sized(6.0 + 0.1 * i), received_s=time.perf_counter())
                assert w.wait_idle(WAIT_S)
    finally:
        engine.close()
    summary = w.latency_summary()
    assert summary.count == 10
    # at least the synthesis time plus one block; the audio thread starts at a block boundary
    assert summary.p50_ms >= (0.005 + BLOCK_S) * 1e3
    assert summary.synth_p50_ms >= 5.0


def test_submit_never_waits_for_a_synthesis():
    """100 submits return while a synthesis is held inside the worker: the synthesis ends
    because the test releases it afterwards, not because its (generous) wait ran out."""
    started, release, released = threading.Event(), threading.Event(), []
    good = stand_in_synth()

    def held(room: Room, sr: int) -> np.ndarray:
        if not started.is_set():
            started.set()
            released.append(release.wait(WAIT_S))
        return good(room, sr)

    engine = FakeEngine()
    with RoomWorker(engine, sample_rate_hz=SR, block_s=BLOCK_S, synthesize=held) as w:
        w.submit(sized(6.0))
        assert started.wait(WAIT_S)  # the worker is now inside the held synthesis
        for i in range(100):
            w.submit(sized(6.5 + 0.01 * i))
        release.set()
        assert w.wait_idle(WAIT_S)
    assert released == [True]
    assert w.applied_room == sized(6.5 + 0.01 * 99) and w.coalesced == 99


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 2, 2), np.float32), np.zeros(0, np.float32)])
def test_unusable_shapes_are_refused(bad):
    engine = FakeEngine()
    with RoomWorker(engine, sample_rate_hz=SR, block_s=BLOCK_S, synthesize=lambda r, s: bad) as w:
        w.submit(sized(6.0))
        assert w.wait_idle(WAIT_S)
    assert engine.irs == [] and w.errors == 1


class EngineAudio:
    """Plays the audio thread's part for a real `rtverb.Engine`: one block per block period."""

    def __init__(self, engine) -> None:
        self.engine, self._stop = engine, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        x = np.zeros((self.engine.channels, self.engine.block_size), np.float32)
        out = np.empty_like(x)
        while not self._stop.wait(BLOCK_S):
            self.engine.process(x, out)

    def __enter__(self) -> EngineAudio:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(WAIT_S)


def wait_for(condition, what: str) -> None:
    """Poll until ``condition()`` (thread hand-offs); the deadline only catches a hang."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def test_changes_during_a_crossfade_wait_for_it_against_a_real_engine():
    """The worker reads the real convolver's `head_free_in_s`: changes that arrive during a
    crossfade are coalesced, and their IR is published only when the head will be free by the
    time it is ready (never more than a synthesis ahead), so it crossfades in by itself."""
    from rtverb.dsp.engine import Engine

    start = sized(6.0)
    engine = Engine(
        stand_in_synth()(start, SR),
        block_size=256,
        sample_rate_hz=SR,
        max_ir_s=0.5,
        crossfade_ms=LONG_CROSSFADE_MS,
    )
    synthesize, publish = stand_in_synth(), engine.set_ir
    began: list[float] = []
    ready_s: list[float] = []  # synthesis start to IR published: the worker's lead
    busy_s: list[float] = []  # the head's crossfade left when an IR was published

    def timed_synthesize(room: Room, sr: int) -> np.ndarray:
        began.append(time.perf_counter())
        return synthesize(room, sr)

    def set_ir(ir: np.ndarray, *, predelay_ms: float | None = None) -> None:
        busy_s.append(engine.convolver.head_free_in_s())
        publish(ir, predelay_ms=predelay_ms)
        ready_s.append(time.perf_counter() - began[-1])

    engine.set_ir = set_ir  # type: ignore[method-assign]
    rooms = [[sized(6.1 + 0.1 * i + 0.01 * j) for j in range(5)] for i in range(5)]
    with (
        EngineAudio(engine),
        RoomWorker(
            engine,
            sample_rate_hz=SR,
            block_s=BLOCK_S,
            synthesize=timed_synthesize,
            applied_room=start,
        ) as w,
    ):
        for burst in rooms:
            swaps = engine.swaps_started
            w.submit(burst[0])
            wait_for(lambda swaps=swaps: engine.swaps_started > swaps, "the crossfade to start")
            for room in burst[1:]:  # a fader moving on while the head crossfades
                w.submit(room)
            assert w.wait_idle(WAIT_S)
            wait_for(lambda: not engine.convolver.swapping, "the crossfade to end")
    assert w.applied_room == rooms[-1][-1]
    # an IR waits behind a crossfade no longer than the worker's own lead (one block of rounding)
    assert max(busy_s) <= max(ready_s) + BLOCK_S, (busy_s, ready_s)
    # one crossfade per synthesized IR; changes that arrived during a crossfade coalesced
    assert engine.swaps_started == w.syntheses < w.requests
    assert w.coalesced + w.syntheses == w.requests


def test_synth_process_matches_in_process_synthesis_and_reports_errors():
    from rtverb import synth
    from rtverb.synth.process import SynthProcess, SynthProcessError

    room = sized(6.0)
    with SynthProcess("analytic") as child:
        ir = child(room, SR)
        np.testing.assert_array_equal(ir, synth.synthesize_analytic(room, SR))
        with pytest.raises(SynthProcessError, match="sample_rate_hz"):
            child(room, 10)  # the child's ValueError comes back; the child keeps serving
        assert child(room, SR).shape == ir.shape
    with pytest.raises(ValueError, match="kind"):
        SynthProcess("neural")
