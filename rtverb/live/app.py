"""`Live`: hear a microphone or a file through the room while OSC moves it (`rtverb live`,
whose arguments are `rtverb.cli.live`'s).

Processes: the audio process (`rtverb.live.audio`: the sounddevice callback and nothing else),
the synthesis process (`rtverb.synth.process`) and this one, whose threads are the room worker
(`rtverb.live.worker`: coalesce, synthesize, prepare and publish the IR to the audio process),
the OSC server (`rtverb.osc.server`), the file I/O pump (`rtverb.live.io`: input file and
recording, through shared-memory rings) and the main thread here: setup, status line, stop
conditions (including a dead audio process, worker or synthesis process), orderly shutdown
and the summary.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from rtverb.live.audio import AudioProcess
from rtverb.live.io import FileSource, IoPump, Recorder
from rtverb.live.report import (
    STATUS_HZ,
    LiveSummary,
    OscSummary,
    RecordSummary,
    StatusLine,
    room_title,
)
from rtverb.live.worker import RoomWorker, geometry_key
from rtverb.offline.audio_io import AudioFileError, check_input, check_output
from rtverb.offline.chain import parse_chain
from rtverb.osc.controller import OscController
from rtverb.room.presets import load_preset
from rtverb.room.room import Room
from rtverb.synth.process import SynthProcess, SynthProcessError

log = logging.getLogger("rtverb.live.app")

#: Seconds of audio the input and recording rings hold (the I/O thread wakes every 20 ms).
RING_S = 4.0
#: How long the end of a run waits for the last room change to reach the audio, seconds.
SETTLE_S = 3.0
#: How long the tail stages may still be fading to the last IR once the head took it, seconds
#: (two periods of the longest partition and a crossfade: 2 x 4096 frames at 48 kHz + 20 ms).
TAIL_SETTLE_S = 0.2


class Live:
    """Everything `rtverb live` runs, built from its arguments (cleanup goes on ``stack``).

    Raises:
        RoomError, ValueError, OSError, RuntimeError: bad preset, file, chain, device or port;
            the message says what to fix (a device error lists the devices).
    """

    def __init__(self, args: argparse.Namespace, stack: contextlib.ExitStack) -> None:
        _check_args(args)
        self.args = args
        self.sr, self.block_size, self.channels = int(args.sample_rate), args.block, args.channels
        room = load_preset(args.preset)
        if room.channels > self.channels:
            raise ValueError(
                f"--channels {self.channels}: {room.name}'s microphone pair ({room.pair}) gives "
                f"{room.channels} channels; use --channels {room.channels} or a mono room"
            )
        for message in room.domain_warnings():
            log.warning("%s: %s (the IR is extrapolated)", room.name, message)
        self.source = self._open_input(args)
        self.recorder = self._open_record(args)
        pre, post = (
            self._chain(text, where) for text, where in ((args.pre, "pre"), (args.post, "post"))
        )
        synthesize, ir = self._start_synthesis(room, args.synth, stack)
        self.synthesize = synthesize
        device = int(args.device) if args.device and args.device.isdigit() else args.device
        self.audio = AudioProcess(
            ir,
            sample_rate_hz=self.sr,
            block_size=self.block_size,
            channels=self.channels,
            device=device,
            file_input=self.source is not None,
            wet_db=room.wet_db,
            dry_db=room.dry_db,
            predelay_ms=room.predelay_ms,
            pre=args.pre if pre is not None else None,
            post=args.post if post is not None else None,
            ring_frames=int(RING_S * self.sr),
            record=self.recorder is not None,
        )  # AudioProcessError (a RuntimeError) lists the devices
        stack.callback(self.audio.close)
        self.worker = RoomWorker(
            self.audio,
            sample_rate_hz=self.sr,
            block_s=self.block_size / self.sr,
            synthesize=synthesize,
            applied_room=room,
            predelay=True,
        )
        self.worker.ir_taps = ir.shape[-1]
        stack.callback(self.worker.stop)
        self.controller = OscController(
            room,
            on_room=self.worker.submit,
            on_mix=self._on_mix,
            status=self.status,
            channels=self.channels,
        )
        self.pump = IoPump(
            self.source, self.audio.source_ring, self.recorder, self.audio.record_ring
        )
        stack.callback(self.pump.stop)
        self.server = self._open_osc(args, stack)

    # ---- setup helpers -----------------------------------------------------------------

    def _start_synthesis(
        self, room: Room, kind: str, stack: contextlib.ExitStack
    ) -> tuple[SynthProcess, np.ndarray]:
        """Start the synthesis process and synthesize the starting room's IR."""
        t0 = time.perf_counter()
        try:
            synthesize = SynthProcess(kind)  # keeps synthesis off this process's GIL
        except SynthProcessError as e:  # e.g. rtverb.synth.ModelError in the child
            raise RuntimeError(f"{e}\n(--synth analytic runs without the model)") from None
        stack.callback(synthesize.close)
        ir = synthesize(room, self.sr)
        log.info(
            "%s: IR %.2f s synthesized in %.0f ms (with the synthesis process's start)",
            room.name,
            ir.shape[-1] / self.sr,
            (time.perf_counter() - t0) * 1e3,
        )
        return synthesize, ir

    def _open_osc(self, args: argparse.Namespace, stack: contextlib.ExitStack) -> Any:
        if args.no_osc:
            return None
        from rtverb.osc.server import DEFAULT_ALLOW, OscServer, parse_allow

        allow = parse_allow(args.osc_allow or DEFAULT_ALLOW)  # ValueError names the part
        server = OscServer(self.controller, args.osc_host, args.osc_port, allow)
        stack.callback(server.stop)
        return server

    def _open_input(self, args: argparse.Namespace) -> FileSource | None:
        if args.input is None:
            if args.loop:
                raise ValueError("--loop needs --input FILE")
            return None
        try:
            info = check_input(args.input)
            return FileSource(info.path, float(self.sr), self.channels, args.loop)
        except AudioFileError as e:
            raise ValueError(f"--input: {e}") from None

    def _open_record(self, args: argparse.Namespace) -> Recorder | None:
        if args.record is None:
            return None
        try:
            in_path = Path(args.input) if args.input else Path(os.devnull)
            out = check_output(in_path, args.record, args.overwrite)
            return Recorder(out, float(self.sr), self.channels)
        except AudioFileError as e:
            raise ValueError(f"--record: {e}") from None

    def _chain(self, text: str | None, where: str) -> Any:
        if not text:
            return None
        chain = parse_chain(text)  # ChainError is a ValueError naming the valid plugins
        probe = np.zeros((self.channels, self.block_size), np.float32)
        out = chain.process(probe, float(self.sr), buffer_size=self.block_size, reset=True)
        if out.shape != probe.shape:
            raise ValueError(
                f"--{where}: the chain turns {probe.shape} (channels, frames) into {out.shape}; "
                "use plugins that keep the channel count and the length"
            )
        return chain

    # ---- callbacks from other threads ------------------------------------------------------

    def _on_mix(self, room: Room) -> None:
        """OSC thread: gains go straight to the audio process; a pre-delay re-prepares the IR,
        so it goes through the worker."""
        self.audio.set_mix(wet_db=room.wet_db, dry_db=room.dry_db)
        if room.predelay_ms != self.audio.predelay_ms:
            self.worker.submit(room)

    def status(self) -> dict[str, Any]:
        """The figures of the status line and of ``/rtverb/status``."""
        s = self.audio.stats()
        latency = self.worker.latency_summary()
        return {
            "load": round(s.load, 4),
            "worst_callback_ms": round(s.worst_s * 1e3, 3),
            "xruns": s.xruns,
            "late_callbacks": s.late_callbacks,
            "callbacks": s.callbacks,
            "latency_ms": round(self.latency_ms(), 2),
            "ir_s": round(self.worker.ir_taps / self.sr, 3),
            "knob_to_ear_p50_ms": latency.p50_ms if latency.p50_ms is not None else -1.0,
            "peak_dbfs": round(20 * math.log10(max(s.peak, 1e-9)), 1),
        }

    def latency_ms(self) -> float:
        """Input to output: the stream's latencies plus the engine's one block."""
        return (self.audio.stream_latency_s + self.audio.latency_samples / self.sr) * 1e3

    # ---- running -----------------------------------------------------------------------

    def run(self, console: Any) -> LiveSummary:
        """Stream until --seconds, the end of a non-looping --input (plus the room's tail),
        Ctrl-C or SIGTERM, or a dead audio process, worker or synthesis process, with a status
        line on ``console``; then shut down in order and summarize."""
        # Ctrl-C, and a polite kill, stop cleanly (even when started in the background, where
        # the shell ignores SIGINT): the summary is written and the recording kept.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        self.worker.start()
        self.pump.prime()
        self.pump.start()
        if self.server is not None:
            self.server.start()
        self.audio.start()
        t0 = time.perf_counter()
        stop_at = t0 + self.args.seconds if self.args.seconds else math.inf
        interrupted, reason, source_done = False, "", False
        display = StatusLine(console, enabled=not self.args.quiet and console.is_terminal)
        try:
            with display:
                while time.perf_counter() < stop_at and not reason:
                    time.sleep(1 / STATUS_HZ)
                    if display.enabled:
                        display.update(self._status_text(time.perf_counter() - t0))
                    if self.source is not None and self.source.finished and not self.args.loop:
                        if not source_done:
                            source_done = True
                            self.audio.finish_source()
                            tail_s = self.worker.ir_taps / self.sr + RING_S
                            stop_at = min(stop_at, time.perf_counter() + tail_s)
                    reason = self._failure()
        except KeyboardInterrupt:
            interrupted = True
        if reason:
            log.error("stopping: %s", reason)
        return self._shutdown(time.perf_counter() - t0, interrupted, reason)

    def _failure(self) -> str:
        """Why the run cannot go on (a dead process or thread), or ""."""
        if not self.audio.alive():
            return f"the audio process died (exit code {self.audio.exit_code})"
        if not self.worker.alive():
            return "the room worker thread died"
        if not self.synthesize.alive():
            return f"the synthesis process died (exit code {self.synthesize.exit_code})"
        return ""

    def _shutdown(self, seconds: float, interrupted: bool, reason: str) -> LiveSummary:
        if self.server is not None:
            self.server.stop()  # no more changes
        settled = not reason and self.worker.wait_idle(SETTLE_S)
        if settled:  # let the audio process start, and finish, fading in the last room
            deadline = time.perf_counter() + SETTLE_S
            while self.audio.waiting() and time.perf_counter() < deadline:
                time.sleep(0.01)
            time.sleep(TAIL_SETTLE_S)
        self.audio.stop()  # the stream stops: nothing more goes into the recording ring
        self.pump.stop()  # writes what the ring holds and closes the recording
        self.worker.stop()
        return self.summary(seconds, interrupted, settled, reason)

    def summary(
        self, seconds: float, interrupted: bool, settled: bool, reason: str = ""
    ) -> LiveSummary:
        s = self.audio.stats()
        room = self.controller.room
        applied = self.worker.applied_room
        record = None
        if self.recorder is not None:
            record = RecordSummary(
                str(self.recorder.path), self.recorder.frames, s.record_dropped_frames
            )
        return LiveSummary(
            seconds=round(seconds, 3),
            interrupted=interrupted,
            stop_reason=reason or None,
            sample_rate_hz=self.sr,
            block_size=self.block_size,
            channels=self.channels,
            callbacks=s.callbacks,
            frames=s.frames,
            xruns=s.xruns,
            xrun_at_callbacks=[int(i) for i in s.xrun_at if i >= 0],
            late_callbacks=s.late_callbacks,
            callback_exceptions=s.callback_exceptions,
            first_exception=s.first_exception or None,
            worst_callback_ms=round(s.worst_s * 1e3, 3),
            mean_callback_ms=round(s.busy_s / max(s.callbacks, 1) * 1e3, 3),
            block_ms=round(self.block_size / self.sr * 1e3, 3),
            cpu_load=round(s.busy_s / max(s.frames / self.sr, 1e-9), 4),
            latency_ms=round(self.latency_ms(), 2),
            nonfinite_blocks=self.audio.nonfinite_blocks,
            input_underruns=s.input_underruns,
            room_changes=self.controller.room_changes,
            syntheses=self.worker.syntheses,
            coalesced=self.worker.coalesced,
            synthesis_errors=self.worker.errors,
            ir_swaps=self.audio.swaps_started,
            knob_to_ear_ms=self.worker.latency_summary(),
            ir_matches_room=settled
            and applied is not None
            and geometry_key(applied) == geometry_key(room),
            ir_s=round(self.worker.ir_taps / self.sr, 3),
            osc=OscSummary(
                self.server.port if self.server else None,
                self.controller.packets,
                self.controller.errors,
            ),
            record=record,
            io_error=self.pump.error or None,
            peak_dbfs=round(20 * math.log10(max(s.peak, 1e-9)), 1),
            room=room.to_dict(),
        )

    def _status_text(self, elapsed_s: float) -> str:
        f = self.status()
        osc = (
            f"OSC :{self.server.port} {self.controller.room_changes} changes"
            if self.server
            else "OSC off"
        )
        knob = f" knob {f['knob_to_ear_p50_ms']:.0f} ms" if f["knob_to_ear_p50_ms"] >= 0 else ""
        return (
            f"{elapsed_s:6.1f} s  load {100 * f['load']:4.1f}% (worst "
            f"{f['worst_callback_ms']:.1f}/{self.block_size / self.sr * 1e3:.1f} ms)  "
            f"xruns {f['xruns']} (late {f['late_callbacks']})  "
            f"room {room_title(self.controller.room)}  IR {f['ir_s']:.2f} s  "
            f"latency {f['latency_ms']:.1f} ms{knob}  peak {f['peak_dbfs']:.0f} dBFS  {osc}"
        )


def _check_args(args: argparse.Namespace) -> None:
    if args.block < 16 or args.block > 8192:
        raise ValueError(f"--block {args.block}: use 16 to 8192 frames (256 is typical)")
    if args.seconds is not None and not args.seconds > 0:
        raise ValueError(f"--seconds {args.seconds}: give a positive duration")
