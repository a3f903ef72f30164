"""`Live`: hear a microphone or a file through the room while OSC moves it (`rtverb live`,
whose arguments are `rtverb.cli.live`'s).

Threads: the audio callback (`rtverb.live.callback.LiveSession`), the room worker
(`rtverb.live.worker`: coalesce, synthesize, hand the IR to the engine), the OSC server
(`rtverb.osc.server`), the file I/O pump (`rtverb.live.io`) and the main thread here: setup,
status line, stop conditions, orderly shutdown and the summary.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rtverb.dsp.engine import Engine
from rtverb.live.callback import LiveSession
from rtverb.live.io import FileSource, IoPump, Recorder, Ring
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
#: Python's GIL switch interval while live, seconds (default 5 ms, near a whole 256-frame
#: block): the audio thread waits at most about this long for the GIL held by another thread.
GIL_SWITCH_INTERVAL_S = 0.0005


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
        self.engine = Engine(
            ir,
            channels=self.channels,
            block_size=self.block_size,
            sample_rate_hz=float(self.sr),
            wet_db=room.wet_db,
            dry_db=room.dry_db,
            predelay_ms=room.predelay_ms,
        )
        self.worker = RoomWorker(
            self.engine,
            sample_rate_hz=self.sr,
            block_s=self.block_size / self.sr,
            synthesize=synthesize,
            applied_room=room,
            predelay=True,
        )
        self.worker.ir_taps = ir.shape[-1]
        stack.callback(self.worker.stop)
        self.controller = OscController(
            room, on_room=self.worker.submit, on_mix=self._on_mix, status=self.status
        )
        self.pump, self.session = self._audio_path(pre, post, stack)
        self.stream = self._open_stream(args)
        stack.callback(self.stream.close)
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

    def _audio_path(
        self, pre: Any, post: Any, stack: contextlib.ExitStack
    ) -> tuple[IoPump, LiveSession]:
        """The file I/O pump and the audio callback's session, joined by rings."""
        ring_frames = int(RING_S * self.sr)
        src_ring = Ring(self.channels, ring_frames) if self.source is not None else None
        rec_ring = Ring(self.channels, ring_frames) if self.recorder is not None else None
        pump = IoPump(self.source, src_ring, self.recorder, rec_ring)
        stack.callback(pump.stop)
        session = LiveSession(
            self.engine,
            channels=self.channels,
            block_size=self.block_size,
            sample_rate_hz=self.sr,
            source_ring=src_ring,
            record_ring=rec_ring,
            pre=pre,
            post=post,
        )
        return pump, session

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

    def _open_stream(self, args: argparse.Namespace) -> Any:
        import sounddevice as sd

        device = int(args.device) if args.device and args.device.isdigit() else args.device
        kwargs = dict(
            samplerate=self.sr,
            blocksize=self.block_size,
            dtype="float32",
            latency="low",
            device=device,
            callback=self.session.callback,
        )
        try:
            if self.source is not None:
                return sd.OutputStream(channels=self.channels, **kwargs)
            in_channels = min(self.channels, _max_input_channels(sd, device))
            return sd.Stream(channels=(in_channels, self.channels), **kwargs)
        except (sd.PortAudioError, ValueError) as e:
            which = f"device {args.device!r}" if args.device else "the default audio device"
            raise OSError(
                f"cannot open {which} at {self.sr} Hz, block {self.block_size}, {self.channels} "
                f"channel(s): {e}.\nPick one with --device NAME|ID (and --sample-rate):\n"
                f"{sd.query_devices()}"
            ) from None

    # ---- callbacks from other threads ------------------------------------------------------

    def _on_mix(self, room: Room) -> None:
        """OSC thread: gains go straight to the engine; a pre-delay re-prepares the IR, so it
        goes through the worker."""
        self.engine.set_mix(wet_db=room.wet_db, dry_db=room.dry_db)
        if room.predelay_ms != self.engine.predelay_ms:
            self.worker.submit(room)

    def status(self) -> dict[str, Any]:
        """The figures of the status line and of ``/rtverb/status``."""
        s = self.session.stats
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
        latency = self.stream.latency  # (input, output) for a duplex stream
        total = sum(latency) if isinstance(latency, tuple) else float(latency)
        return (total + self.engine.latency_samples / self.sr) * 1e3

    # ---- running -----------------------------------------------------------------------

    def run(self, console: Any) -> LiveSummary:
        """Stream until --seconds, the end of a non-looping --input (plus the room's tail), or
        Ctrl-C, with a status line on ``console``; then shut down in order and summarize."""
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        # Ctrl-C, and a polite kill, stop cleanly (even when started in the background, where
        # the shell ignores SIGINT): the summary is written and the recording kept.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        self.worker.start()
        self.pump.prime()
        self.pump.start()
        if self.server is not None:
            self.server.start()
        # Python's cyclic garbage collector can run in whichever thread allocates, the audio
        # callback included (a 1.8 ms pass was measured there): move everything built so far
        # out of its reach and keep it off while streaming (the worker frees IRs by refcount).
        gc.collect()
        gc.freeze()
        gc.disable()
        self.stream.start()
        t0 = time.perf_counter()
        stop_at = t0 + self.args.seconds if self.args.seconds else math.inf
        interrupted = False
        display = StatusLine(console, enabled=not self.args.quiet and console.is_terminal)
        try:
            with display:
                while time.perf_counter() < stop_at:
                    time.sleep(1 / STATUS_HZ)
                    if display.enabled:
                        display.update(self._status_text(time.perf_counter() - t0))
                    if self.source is not None and self.source.finished and not self.args.loop:
                        if not self.session.source_finished:
                            self.session.source_finished = True
                            tail_s = self.worker.ir_taps / self.sr + RING_S
                            stop_at = min(stop_at, time.perf_counter() + tail_s)
                    if self.stream.stopped or not self.stream.active:
                        log.error("the audio stream stopped")
                        break
        except KeyboardInterrupt:
            interrupted = True
        return self._shutdown(time.perf_counter() - t0, interrupted)

    def _shutdown(self, seconds: float, interrupted: bool) -> LiveSummary:
        if self.server is not None:
            self.server.stop()  # no more changes
        settled = self.worker.wait_idle(SETTLE_S)
        deadline = time.perf_counter() + SETTLE_S
        while self.engine.convolver.swapping and time.perf_counter() < deadline:
            time.sleep(0.01)  # let the audio thread finish fading in the last room
        self.stream.stop()
        gc.enable()
        gc.unfreeze()
        self.pump.stop()
        self.worker.stop()
        return self.summary(seconds, interrupted, settled)

    def summary(self, seconds: float, interrupted: bool, settled: bool) -> LiveSummary:
        s = self.session.stats
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
            nonfinite_blocks=self.engine.nonfinite_blocks,
            input_underruns=s.input_underruns,
            room_changes=self.controller.room_changes,
            syntheses=self.worker.syntheses,
            coalesced=self.worker.coalesced,
            synthesis_errors=self.worker.errors,
            ir_swaps=self.engine.swaps_started,
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


def _max_input_channels(sd: Any, device: Any) -> int:
    info = sd.query_devices(device, "input")
    channels = int(info["max_input_channels"])
    if channels < 1:
        raise ValueError(f"{info['name']!r} has no inputs; use --input FILE or another --device")
    return channels
