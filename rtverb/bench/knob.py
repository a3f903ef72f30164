"""Knob-to-ear latency benchmark: ``python -m rtverb.bench.knob``.

Builds the live signal path (`rtverb.Engine`, `rtverb.live.worker.RoomWorker` with the synthesis
process, `OscController` behind a real `OscServer`) and drives the
audio callback from a thread clocked at the block rate, as an audio server would. A client sends
room changes over UDP loopback in two patterns and the worker times each one from its arrival
to the first output block with the new room fading in (target: p50 <= 30 ms at 256 frames,
48 kHz):

- isolated: one knob move every 300 ms (the engine is idle when each arrives);
- sweep: a fader moving continuously, 60 changes per second.

The default room (``studio_live_room``) has an ORTF pair: its IR is stereo (2, taps);
``--preset concert_hall`` adds a spread source: true stereo (2, 2, taps).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import threading
import time
from types import SimpleNamespace

import numpy as np
from pythonosc.osc_message_builder import build_msg

from rtverb.dsp.engine import Engine
from rtverb.live.callback import LiveSession
from rtverb.live.worker import RoomWorker
from rtverb.osc.controller import OscController
from rtverb.osc.server import OscServer
from rtverb.room.presets import load_preset
from rtverb.synth.process import SynthProcess

TARGET_P50_MS = 30.0


class ClockedAudio:
    """Calls ``session.callback`` every block period on its own thread (SCHED_FIFO if allowed)."""

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.realtime = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-audio", daemon=True)

    def _run(self) -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))
            self.realtime = True
        except (AttributeError, PermissionError, OSError):
            pass
        block = self.session.block_size
        out = np.zeros((block, self.session.channels), np.float32)
        status = SimpleNamespace(output_underflow=False, input_overflow=False)
        period = block / self.session.sample_rate_hz
        deadline = time.perf_counter()
        while not self._stop.is_set():
            deadline += period
            wait = deadline - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            self.session.callback(out, block, None, status)

    def __enter__(self) -> ClockedAudio:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2.0)


def _send_pattern(port: int, times_s: list[float], values: list[float]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t0 = time.perf_counter()
    for t, v in zip(times_s, values, strict=True):
        time.sleep(max(0.0, t0 + t - time.perf_counter()))
        sock.sendto(build_msg("/rtverb/room/size/x", [v]).dgram, ("127.0.0.1", port))
    sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--sample-rate", type=int, default=48000)
    parser.add_argument("--preset", default="studio_live_room")
    parser.add_argument("--synth", choices=("model", "analytic"), default="model")
    args = parser.parse_args(argv)
    sr, block = args.sample_rate, args.block
    room = load_preset(args.preset)
    with SynthProcess(args.synth) as synthesize:
        ir = synthesize(room, sr)
        engine = Engine(ir, channels=2, block_size=block, sample_rate_hz=float(sr))
        worker = RoomWorker(
            engine, sample_rate_hz=sr, block_s=block / sr, synthesize=synthesize, applied_room=room
        ).start()
        controller = OscController(room, on_room=worker.submit)
        server = OscServer(controller, "127.0.0.1", 0).start()
        session = LiveSession(engine, channels=2, block_size=block, sample_rate_hz=sr)
        print(f"rtverb knob-to-ear benchmark: {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        listener = f"{room.pair} pair" + (", true stereo" if room.true_stereo else "")
        print(f"block {block} at {sr} Hz ({block / sr * 1e3:.2f} ms), preset {args.preset} "
              f"({listener}, IR shape {ir.shape}), synth {args.synth}, IR "
              f"{ir.shape[-1] / sr:.2f} s")  # fmt: skip
        results = {}
        with ClockedAudio(session) as audio:
            time.sleep(0.5)
            patterns = {
                "isolated (1 change / 300 ms)": [0.3 * i for i in range(20)],
                "sweep (60 changes / s)": [i / 60 for i in range(300)],
            }
            for name, times_s in patterns.items():
                worker.latency_ms.clear()
                worker.synth_ms.clear()
                values = [6.0 + 2.0 * np.sin(0.37 * i) for i in range(len(times_s))]
                _send_pattern(server.port, times_s, values)
                worker.wait_idle(10.0)
                time.sleep(0.5)
                results[name] = worker.latency_summary()
            swap_blocks = _swap_blocks(engine, session, ir)
        server.stop()
        worker.stop()
    print(f"audio thread: {'SCHED_FIFO' if audio.realtime else 'normal priority'}; late "
          f"callbacks {session.stats.late_callbacks} of {session.stats.callbacks}; one "
          f"crossfade takes {swap_blocks} blocks")  # fmt: skip
    for name, r in results.items():
        ok = "meets" if r.p50_ms is not None and r.p50_ms <= TARGET_P50_MS else "misses"
        print(f"{name:30s} p50 {r.p50_ms} ms, p95 {r.p95_ms} ms, max {r.max_ms} ms "
              f"over {r.count} changes; synthesis p50 {r.synth_p50_ms} ms "
              f"({ok} p50 <= {TARGET_P50_MS:g} ms)")  # fmt: skip
    return 0


def _swap_blocks(engine: Engine, session: LiveSession, ir: np.ndarray) -> int:
    """Blocks from the start of a crossfade to its end (the audio thread is running)."""
    deadline = time.perf_counter() + 5.0
    while engine.convolver.swapping and time.perf_counter() < deadline:
        time.sleep(0.001)
    before, start = engine.swaps_started, session.stats.callbacks
    engine.set_ir(ir * 0.5)  # the first room at half level: a swap like any other
    while engine.convolver.swapping and time.perf_counter() < deadline:
        time.sleep(0.001)
    return session.stats.callbacks - start if engine.swaps_started > before else -1


if __name__ == "__main__":
    raise SystemExit(main())
