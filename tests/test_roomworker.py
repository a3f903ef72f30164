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
    boundary it starts crossfading to the latest published IR, unless a crossfade of
    ``fade_blocks`` is still running (as `rtverb.dsp.convolver.Convolver` does)."""

    def __init__(self, audio: bool = False, fade_blocks: int = 0) -> None:
        self.irs: list[np.ndarray] = []
        self.swaps_started = 0
        self.last_swap_started_s = 0.0
        self.published_during_fade = 0
        self._published = 0
        self._fade_left = 0
        self._fade_blocks = fade_blocks
        self.convolver = self  # the worker reads engine.convolver.head_free_in_s()
        self._stop = threading.Event()
        if audio:
            threading.Thread(target=self._audio, daemon=True).start()

    def head_free_in_s(self) -> float:
        return self._fade_left * BLOCK_S

    def set_ir(self, ir: np.ndarray, *, predelay_ms: float | None = None) -> None:
        if self._fade_left > 0:
            self.published_during_fade += 1
        self.irs.append(ir)
        self._published += 1

    def _audio(self) -> None:
        while not self._stop.wait(BLOCK_S):
            if self._fade_left > 0:
                self._fade_left -= 1
            elif self._published > self.swaps_started:
                self.last_swap_started_s = time.perf_counter()
                self.swaps_started = self._published
                self._fade_left = self._fade_blocks

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
    engine = FakeEngine()
    with RoomWorker(
        engine, sample_rate_hz=SR, block_s=BLOCK_S, synthesize=stand_in_synth(0.3)
    ) as w:
        w.submit(sized(6.0))
        time.sleep(0.05)  # the worker is now inside the slow synthesis
        t0 = time.perf_counter()
        for i in range(100):
            w.submit(sized(6.5 + 0.01 * i))
        elapsed_s = time.perf_counter() - t0
    # 100 submits while a 0.3 s synthesis runs: they return long before it ends
    assert elapsed_s < 0.3


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 2, 2), np.float32), np.zeros(0, np.float32)])
def test_unusable_shapes_are_refused(bad):
    engine = FakeEngine()
    with RoomWorker(engine, sample_rate_hz=SR, block_s=BLOCK_S, synthesize=lambda r, s: bad) as w:
        w.submit(sized(6.0))
        assert w.wait_idle(WAIT_S)
    assert engine.irs == [] and w.errors == 1


def test_changes_during_a_crossfade_wait_for_it_and_only_the_latest_is_synthesized():
    fade_blocks = 20  # ~107 ms, like the engine's multi-stage crossfade
    engine = FakeEngine(audio=True, fade_blocks=fade_blocks)
    calls: list[Room] = []
    try:
        with RoomWorker(
            engine, sample_rate_hz=SR, block_s=BLOCK_S, synthesize=stand_in_synth(0.002, calls)
        ) as w:
            rooms = [sized(6.0 + 0.01 * i) for i in range(60)]
            for room in rooms:  # 60 changes over ~0.6 s, a fader sweep at 100 per second
                w.submit(room, received_s=time.perf_counter())
                time.sleep(0.01)
            assert w.wait_idle(WAIT_S)
    finally:
        engine.close()
    assert w.applied_room == rooms[-1]
    assert engine.published_during_fade == 0  # never an IR that waits behind a crossfade
    # one synthesis per crossfade, not per change
    assert len(calls) <= 0.6 / (fade_blocks * BLOCK_S) + 2
    summary = w.latency_summary()
    assert summary.count == 60  # every change is timed
    # no change waits longer than one crossfade, a synthesis and two blocks (loaded-machine slack)
    assert summary.max_ms <= (fade_blocks + 2) * BLOCK_S * 1e3 + 2 + 50


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
