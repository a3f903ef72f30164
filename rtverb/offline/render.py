"""Offline rendering: pre-chain -> `rtverb.Engine` -> post-chain, block by block, to a file.

`render_array` renders audio held in memory; `render_file` streams a file through the same
path and writes the result safely (`audio_io`: a temporary file in the output's folder,
fsynced and renamed into place, so the output is either complete or absent, and the input is
never overwritten). The `rtverb render` command lives in `rtverb.cli.render`.

Offline, latency does not matter: the engine runs with a large block (`OFFLINE_BLOCK_SIZE`)
and its latency (`Engine.latency_samples`) is trimmed, so output frame *n* lines up with input
frame *n*. The output is the input's length plus the reverb's tail.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pedalboard
from pedalboard.io import AudioFile

from rtverb.offline.audio_io import (
    BIT_DEPTHS,
    MAX_CHANNELS,
    PCM_SUFFIXES,
    InputInfo,
    SafeWriter,
    check_input,
    check_output,
    io_error,
    match_channels,
)
from rtverb.room.params import MIX_PARAMS, PARAMS_BY_NAME
from rtverb.room.room import Room

#: Engine block for offline rendering, frames: large blocks cost less per sample.
OFFLINE_BLOCK_SIZE = 8192
#: Frames read from the input file per step.
READ_BLOCK_FRAMES = 65536
#: Automatic tail: render until the output stays this far below its peak, dB.
TAIL_THRESHOLD_DB = -90.0
#: Automatic tail: it ends once the IR and predelay have passed and this long stayed quiet, s.
TAIL_QUIET_S = 0.5
#: Automatic tail: time allowed past the IR and predelay for the post-chain's own tail, s.
POST_TAIL_ALLOWANCE_S = 10.0
#: Silence fed after the input for plugins that hold audio back (pedalboard's latency
#: compensation; PitchShift holds ~1 s), s.
CHAIN_LATENCY_S = 10.0
#: Called with the number of input frames just consumed.
ProgressCallback = Callable[[int], None]


class RenderError(Exception):
    """A render cannot start or could not finish; the message names the problem and the fix.

    Whenever it is raised, no output file was created (an existing one is untouched).
    """


@dataclass(frozen=True)
class RenderResult:
    """What `render_file` wrote and how long it took."""

    out_path: Path
    sample_rate_hz: float
    channels: int
    input_frames: int
    output_frames: int
    wall_s: float  # rendering and writing, after the IR was ready
    peak_dbfs: float
    clipped_samples: int  # samples beyond full scale in an integer file (clipped on write)
    synth_s: float = 0.0  # synthesizing the room's IR (the first call loads the model)

    @property
    def realtime_factor(self) -> float:
        """Seconds of input rendered per second of wall time."""
        return self.input_frames / self.sample_rate_hz / max(self.wall_s, 1e-9)


# ---- the signal path -------------------------------------------------------------------


def _make_engine(ir: np.ndarray, **kwargs: Any) -> Any:
    from rtverb.dsp.engine import Engine

    return Engine(ir, **kwargs)


def room_ir(room: Room, sample_rate_hz: int, input_channels: int) -> np.ndarray:
    """The room's IR for an input of ``input_channels``.

    A stereo input in a room with a pair and a spread source gets the true-stereo matrix
    (2 sources, 2 capsules, taps); any other input is a point source at the source position:
    (taps,) for a mono listener, (2 capsules, taps) for a pair (a stereo input then sends each
    channel through its own capsule).
    """
    if room.true_stereo and input_channels != 2:
        room = dataclasses.replace(room, spread_m=0.0)
    return _synthesize(room, sample_rate_hz)


def _synthesize(room: Room, sample_rate_hz: int) -> np.ndarray:
    from rtverb.synth import synthesize

    return synthesize(room, sample_rate_hz=sample_rate_hz)


def ir_outputs(ir: np.ndarray) -> int:
    """Output channels an IR gives: 1 for (taps,), else its channels (a matrix: its outputs)."""
    return 1 if ir.ndim == 1 else int(ir.shape[-2])


def output_channels(
    ir: np.ndarray, input_channels: int, channels: int | None, pair: str | None
) -> int:
    """The output's channel count: ``channels`` or the input's (a mono input through a stereo
    IR: 2); a `RenderError` when the IR cannot give it or cannot take the input. ``pair``: the
    microphone pair of the room ``ir`` was synthesized for (None: an IR was given), named in
    the errors."""
    outputs = ir_outputs(ir)
    if pair is None:
        kind = "true-stereo" if ir.ndim == 3 else f"{outputs}-channel"
        given, mono = f"the {kind} IR", "a mono IR"
    else:
        given, mono = f"the room's {pair} pair", 'a mono room (pair = "mono")'
    if outputs > 1 and input_channels not in (1, outputs):  # no --channels maps it
        raise RenderError(
            f"a {input_channels}-channel input: {given} takes a mono or {outputs}-channel input; "
            f"mix the file down to 1 or {outputs} channels first, or use {mono}"
        )
    if channels is None:
        channels = max(input_channels, outputs) if input_channels == 1 else input_channels
    if outputs > 1 and channels != outputs:
        raise RenderError(
            f"--channels {channels}: {given} gives {outputs} channels; render {outputs} "
            f"channels, or use {mono}"
        )
    if ir.ndim == 3 and input_channels != ir.shape[0]:
        raise RenderError(
            f"a true-stereo IR needs a {ir.shape[0]}-channel input, got {input_channels}"
        )
    return channels


def _run_chain(
    chain: pedalboard.Pedalboard | None, block: np.ndarray, rate: float, where: str
) -> np.ndarray:
    """Stream a block through a chain (``reset=False``). Plugins with latency return fewer
    frames until they have filled up: pedalboard compensates latency by holding output back."""
    if chain is None or len(chain) == 0 or block.shape[1] == 0:
        return block
    out = chain.process(block, rate, buffer_size=block.shape[1], reset=False)
    if out.shape[0] != block.shape[0] or out.shape[1] > block.shape[1]:
        raise RenderError(
            f"the {where} chain turned {block.shape} (channels, frames) into {out.shape}; use "
            "plugins that keep the channel count"
        )
    return np.asarray(out, dtype=np.float32)


class _Path:
    """Pre-chain -> engine -> (latency trimmed) -> post-chain, with a running output peak."""

    def __init__(self, ir: np.ndarray, rate: float, channels: int, block_size: int,
                 pre: pedalboard.Pedalboard | None, post: pedalboard.Pedalboard | None,
                 mix: dict[str, float]) -> None:  # fmt: skip
        self.engine = _make_engine(
            ir, channels=channels, block_size=block_size, sample_rate_hz=float(rate),
            max_ir_s=ir.shape[-1] / rate + 1.0, **mix,
        )  # fmt: skip
        self.rate, self.block_size, self.pre, self.post = rate, block_size, pre, post
        self.latency = self.skip = int(self.engine.latency_samples)  # skip: frames still to drop
        self.peak = 0.0
        self._out = np.empty((channels, block_size), dtype=np.float32)

    def feed(self, x: np.ndarray) -> Iterator[np.ndarray]:
        """Process (channels, frames) input; yield latency-compensated output blocks."""
        x = _run_chain(self.pre, x, self.rate, "pre")
        for start in range(0, x.shape[1], self.block_size):
            piece = x[:, start : start + self.block_size]
            n = piece.shape[1]
            out = self._out if n == self.block_size else np.empty_like(piece)
            y = self.engine.process(piece, out=out)
            if getattr(self.engine, "nonfinite_blocks", 0):
                raise RenderError(
                    "NaN or infinite samples reached the reverb (check the pre chain's "
                    "settings and the IR); nothing was written"
                )
            if self.skip:
                drop = min(self.skip, n)
                y, self.skip = y[:, drop:], self.skip - drop
            if y.shape[1]:
                y = _run_chain(self.post, y.copy(), self.rate, "post")
            if y.shape[1]:  # a post plugin with latency may hold a whole block back
                self.peak = max(self.peak, float(np.max(np.abs(y))))
                yield y


def stream(
    blocks: Iterable[np.ndarray],
    ir: np.ndarray,
    sample_rate_hz: float,
    *,
    channels: int,
    pre: pedalboard.Pedalboard | None = None,
    post: pedalboard.Pedalboard | None = None,
    wet_db: float = PARAMS_BY_NAME["mix/wet_db"].default,
    dry_db: float = PARAMS_BY_NAME["mix/dry_db"].default,
    predelay_ms: float = PARAMS_BY_NAME["mix/predelay_ms"].default,
    tail_s: float | None = None,
    block_size: int = OFFLINE_BLOCK_SIZE,
) -> Iterator[np.ndarray]:
    """Render input blocks; yield output blocks, (channels, frames) float32.

    ``blocks``: (input channels, frames) float32, any frame counts; mono is copied to every
    channel. ``ir``: (taps,) or (channels, taps) at ``sample_rate_hz``, applied at unity gain
    (then ``wet_db``). The output is latency-compensated and lasts the input plus the tail:
    ``tail_s`` seconds, or with ``None`` until it stays `TAIL_THRESHOLD_DB` below its peak for
    `TAIL_QUIET_S` after the IR and predelay (trimmed after the last louder frame; at most
    IR + predelay + `POST_TAIL_ALLOWANCE_S`).
    """
    ir = _checked_ir(ir, channels, tail_s, block_size)
    mix = {"wet_db": wet_db, "dry_db": dry_db, "predelay_ms": predelay_ms}
    path = _Path(ir, sample_rate_hz, channels, block_size, pre, post, mix)
    n_in = produced = 0  # input frames read; output frames yielded
    for block in blocks:
        block = np.ascontiguousarray(match_channels(block, channels), dtype=np.float32)
        n_in += block.shape[1]
        for y in path.feed(block):
            produced += y.shape[1]
            yield y

    # After the input: feed silence. The engine (and any plugin with latency) still owes the
    # input's last frames, then comes the tail.
    if tail_s is None:
        min_tail = ir.shape[-1] + math.ceil(predelay_ms * 1e-3 * sample_rate_hz)
        max_tail = min_tail + round(POST_TAIL_ALLOWANCE_S * sample_rate_hz)
    else:
        min_tail = max_tail = round(tail_s * sample_rate_hz)
    tail = _Tail(n_in - produced, min_tail, max_tail, tail_s is not None, sample_rate_hz)
    silence = np.zeros((channels, block_size), dtype=np.float32)
    zeros_left = max_tail + path.skip + path.latency + round(CHAIN_LATENCY_S * sample_rate_hz)
    while zeros_left > 0 and not tail.done:
        zeros_left -= block_size
        for y in path.feed(silence):
            yield from tail.take(y, path.peak)
            if tail.done:
                return
    if tail.owed or (tail.fixed and tail.frames < max_tail):
        raise RenderError(
            "the pre/post chain held back audio and did not release it after "
            f"{CHAIN_LATENCY_S:g} s of silence; remove plugins with very long latency"
        )


def _checked_ir(ir: np.ndarray, channels: int, tail_s: float | None, block_size: int) -> np.ndarray:
    """The IR as contiguous float32, after checking it and the render's settings."""
    if tail_s is not None and not (math.isfinite(tail_s) and tail_s >= 0):
        raise RenderError(f"tail_s: expected seconds >= 0, got {tail_s!r}")
    if not (isinstance(block_size, int) and block_size >= 1):
        raise RenderError(f"block_size: expected frames >= 1, got {block_size!r}")
    ir = np.ascontiguousarray(ir, dtype=np.float32)
    if ir.ndim == 2 and ir.shape[0] not in (1, channels):
        raise RenderError(
            f"the IR has {ir.shape[0]} channels but the output has {channels}: give a mono IR "
            f"or a {channels}-channel one, or set the output's channels with --channels"
        )
    if not np.isfinite(ir).all():
        raise RenderError("the IR holds NaN or infinite samples; give a finite IR")
    return ir


class _Tail:
    """What follows the input: its last frames (late through the latency), then the reverb's
    tail, ``max_frames`` long when ``fixed``, else until it stays `TAIL_THRESHOLD_DB` below the
    peak for `TAIL_QUIET_S` (at least ``min_frames``, at most ``max_frames``; the quiet end is
    trimmed). `done` once it is complete."""

    def __init__(
        self, owed: int, min_frames: int, max_frames: int, fixed: bool, sample_rate_hz: float
    ) -> None:
        self.owed, self.min_frames, self.max_frames, self.fixed = (
            owed,
            min_frames,
            max_frames,
            fixed,
        )
        self.quiet_needed = TAIL_QUIET_S * sample_rate_hz
        self.frames = 0  # tail frames taken
        self.quiet: list[np.ndarray] = []  # output after the last loud frame, held back
        self.quiet_frames = 0
        self.done = self._complete()

    def take(self, y: np.ndarray, peak: float) -> Iterator[np.ndarray]:
        """The parts of the engine's next output block ``y`` to write (``peak``: so far)."""
        if self.owed:
            k = min(self.owed, y.shape[1])
            self.owed -= k
            yield y[:, :k]
            y = y[:, k:]
        if self.owed or y.shape[1] == 0:
            self.done = self._complete()
            return
        if self.fixed:
            y = y[:, : self.max_frames - self.frames]
            self.frames += y.shape[1]
            yield y
        else:
            threshold = peak * 10.0 ** (TAIL_THRESHOLD_DB / 20.0)
            loud = np.flatnonzero(np.max(np.abs(y), axis=0) > threshold)
            if loud.size:
                yield from self.quiet
                yield y[:, : loud[-1] + 1]
                self.quiet = [y[:, loud[-1] + 1 :]]
                self.quiet_frames = y.shape[1] - loud[-1] - 1
            else:
                self.quiet.append(y)
                self.quiet_frames += y.shape[1]
            self.frames += y.shape[1]
        self.done = self._complete()

    def _complete(self) -> bool:
        if self.owed:
            return False
        if self.fixed:
            return self.frames == self.max_frames
        quiet = self.frames >= self.min_frames and self.quiet_frames >= self.quiet_needed
        return quiet or self.frames >= self.max_frames


def render_array(
    audio: np.ndarray,
    sample_rate_hz: float,
    ir: np.ndarray,
    *,
    channels: int | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Render audio held in memory: (c, frames) float32 in, (channels, frames + tail) out.

    Same signal path and keywords as `stream` (``pre``, ``post``, ``wet_db``, ``dry_db``,
    ``predelay_ms``, ``tail_s``, ``block_size``). ``channels`` defaults to the input's.
    """
    audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
    channels = channels or audio.shape[0]
    blocks = list(stream([audio], ir, sample_rate_hz, channels=channels, **kwargs))
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((channels, 0), np.float32)


def render_file(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    room_or_ir: Room | np.ndarray,
    *,
    pre: pedalboard.Pedalboard | None = None,
    post: pedalboard.Pedalboard | None = None,
    wet_db: float | None = None,
    dry_db: float | None = None,
    predelay_ms: float | None = None,
    tail_s: float | None = None,
    bit_depth: int | None = None,
    channels: int | None = None,
    block_size: int = OFFLINE_BLOCK_SIZE,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    pair: str | None = None,
) -> RenderResult:
    """Render a file through pre-chain -> room -> post-chain and write it safely.

    ``room_or_ir``: a `Room` (its IR is synthesized at the file's sample rate, see `room_ir`;
    its mix is the default) or an IR array (taps,) / (channels, taps) / (2, 2, taps) at the
    file's rate. ``wet_db``, ``dry_db``, ``predelay_ms`` override the mix. ``bit_depth``
    defaults to the input's (16, 24, or 32 = float); ``channels`` to the input's (a mono input
    through a pair: 2). ``pair``: for an IR array synthesized from a room (a folder render
    synthesizes once), the room's microphone pair, named in channel errors.

    Raises:
        AudioFileError: the input cannot be read or the output cannot be written.
        RenderError: bad settings, or the render failed. In both cases no output was written.
    """
    info = check_input(in_path)
    out = check_output(info.path, out_path, overwrite)
    if channels is not None and not 1 <= channels <= MAX_CHANNELS:
        raise RenderError(f"--channels {channels}: give 1 to {MAX_CHANNELS}")
    bit_depth = bit_depth or info.bit_depth
    if bit_depth not in BIT_DEPTHS:
        raise RenderError(f"--bit-depth {bit_depth}: give one of {BIT_DEPTHS}")
    ir, mix, synth_s = _ir_and_mix(room_or_ir, info)
    if isinstance(room_or_ir, Room):
        pair = room_or_ir.pair
    channels = output_channels(ir, info.channels, channels, pair)
    if not 1 <= channels <= MAX_CHANNELS:
        raise RenderError(f"--channels {channels}: give 1 to {MAX_CHANNELS}")
    match_channels(np.zeros((info.channels, 0), np.float32), channels)  # validates the mapping
    overrides = {"wet_db": wet_db, "dry_db": dry_db, "predelay_ms": predelay_ms}
    mix |= {k: v for k, v in overrides.items() if v is not None}
    started = time.perf_counter()
    written = _Written(integer=bit_depth != 32 and out.suffix.lower() in PCM_SUFFIXES)
    try:
        with (
            AudioFile(str(info.path)) as reader,
            SafeWriter(out, info.sample_rate_hz, channels, bit_depth) as writer,
        ):
            blocks = _read_blocks(reader, info.path, progress)
            for y in stream(blocks, ir, info.sample_rate_hz, channels=channels, pre=pre,
                            post=post, tail_s=tail_s, block_size=block_size, **mix):  # fmt: skip
                if not np.all(np.isfinite(y)):
                    raise RenderError(
                        f"{out}: the render produced NaN or infinite samples (check the pre/post "
                        "chain's settings); nothing was written"
                    )
                writer.write(y)
                written.add(y)
    except OSError as e:
        raise io_error(out, e) from None
    except (ValueError, RuntimeError) as e:
        raise RenderError(f"{out}: render failed ({e}); nothing was written") from None
    peak_dbfs = 20 * math.log10(written.peak) if written.peak > 0 else -math.inf
    return RenderResult(
        out, info.sample_rate_hz, channels, info.frames, written.frames,
        time.perf_counter() - started, peak_dbfs, written.clipped, synth_s,
    )  # fmt: skip


def _ir_and_mix(
    room_or_ir: Room | np.ndarray, info: InputInfo
) -> tuple[np.ndarray, dict[str, float], float]:
    """The IR for the input, the room's mix (none for a given IR), and the synthesis time, s."""
    if not isinstance(room_or_ir, Room):
        return np.asarray(room_or_ir, dtype=np.float32), {}, 0.0
    started = time.perf_counter()
    ir = room_ir(room_or_ir, round(info.sample_rate_hz), info.channels)
    mix = {p.field: getattr(room_or_ir, p.field) for p in MIX_PARAMS}  # the engine applies them
    return ir, mix, time.perf_counter() - started


def _read_blocks(
    reader: Any, path: Path, progress: ProgressCallback | None
) -> Iterator[np.ndarray]:
    """The input file's blocks of `READ_BLOCK_FRAMES`, each reported to ``progress``."""
    read = 0
    while True:
        try:
            block = reader.read(READ_BLOCK_FRAMES)
        except (ValueError, RuntimeError, OSError) as e:
            raise RenderError(f"{path}: read failed after {read} frames: {e}") from None
        if block.shape[1] == 0:
            return
        read += block.shape[1]
        if progress is not None:
            progress(block.shape[1])
        yield block


@dataclass
class _Written:
    """Frames written, their peak and, for an integer file, the samples clipped on write."""

    integer: bool
    frames: int = 0
    peak: float = 0.0
    clipped: int = 0

    def add(self, y: np.ndarray) -> None:
        self.frames += y.shape[1]
        block_peak = float(np.max(np.abs(y))) if y.size else 0.0
        self.peak = max(self.peak, block_peak)
        if self.integer and block_peak > 1.0:
            self.clipped += int(np.count_nonzero(np.abs(y) > 1.0))
