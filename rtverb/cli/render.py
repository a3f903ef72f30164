"""The `rtverb render` command: files (or a folder of files) through pre-chain -> room -> post.

With no IN it renders the bundled demo clip (`DEMO_WAV`) through the default preset
(`DEFAULT_PRESET`) to ``./rtverb-demo.wav`` and prints where it wrote it.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pedalboard.io import AudioFile, get_supported_read_formats, get_supported_write_formats
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from rtverb.offline.audio_io import BIT_DEPTHS, MAX_CHANNELS, AudioFileError, check_input
from rtverb.offline.chain import ChainError, describe_plugins, parse_chain
from rtverb.offline.render import (
    OFFLINE_BLOCK_SIZE,
    RenderError,
    RenderResult,
    render_file,
    room_ir,
)
from rtverb.room.presets import DEFAULT_PRESET, load_preset
from rtverb.room.room import Room, RoomError

#: The bundled dry demo clip (made by `python -m rtverb.offline.demo`).
DEMO_WAV = Path(__file__).resolve().parent.parent / "offline" / "demo.wav"
#: Where the demo render goes when OUT is omitted (the current folder).
DEMO_OUT = "rtverb-demo.wav"

#: What a render reverberates with, in a form that crosses to worker processes:
#: ("room", Room.to_dict()), ("ir", path of an IR file), or ("irs", ({(rate, stereo input):
#: IR}, room mix, true stereo, pair)): a folder's room synthesized once per sample rate (and,
#: for a true-stereo room, per input kind: stereo or not) in the parent.
Source = tuple[str, Any]


def _mix(text: str) -> tuple[float, float | None]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not 1 <= len(values) <= 2 or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(
            f"expected WET_DB or WET_DB,DRY_DB, e.g. --mix=-12,0 (got {text!r})"
        )
    return values[0], values[1] if len(values) == 2 else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "examples:\n"
        "  rtverb render                       # the bundled demo -> ./rtverb-demo.wav\n"
        "  rtverb render vocals.wav wet.wav --preset concert_hall --mix=-10,0\n"
        '  rtverb render gtr.wav out.wav --pre "HighpassFilter(cutoff_frequency_hz=80)" \\\n'
        '      --post "Compressor(threshold_db=-18, ratio=3) | Limiter(threshold_db=-1)"\n'
        "  rtverb render stems/ rendered/ --room my_room.toml --jobs 2\n"
        "CHAIN: plugins separated by '|': Name(param=value, ...) or a .vst3/.component path\n"
        "followed by name=value parameters. `rtverb render --list-plugins` lists the built-ins."
    )
    parser.add_argument(
        "input",
        nargs="?",
        metavar="IN",
        help="audio file or folder (default: the bundled demo clip)",
    )
    parser.add_argument("output", nargs="?", metavar="OUT",
                        help=f"output file, or an existing folder when IN is a folder (default: "
                        f"./{DEMO_OUT} for the demo, ./NAME-rtverb.wav otherwise)")  # fmt: skip
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--preset",
        metavar="NAME",
        help=f"room preset (default {DEFAULT_PRESET}; see `rtverb presets`)",
    )
    source.add_argument("--room", metavar="FILE", help="room file (.toml)")
    source.add_argument(
        "--ir",
        metavar="FILE",
        help="an impulse response file instead of a room (resampled to IN's rate)",
    )
    parser.add_argument("--pre", metavar="CHAIN", help="plugins before the room")
    parser.add_argument("--post", metavar="CHAIN", help="plugins after the room")
    parser.add_argument("--mix", metavar="WET_DB[,DRY_DB]", type=_mix,
                        help="reverb and direct levels, dB (default: the room's); write "
                        "--mix=-12,0 when the value starts with '-'")  # fmt: skip
    parser.add_argument("--predelay-ms", type=float, metavar="MS", help="delay before the reverb")
    parser.add_argument("--tail-s", type=float, metavar="S",
                        help="seconds rendered after the input ends (default: until the tail is "
                        "90 dB below the peak)")  # fmt: skip
    parser.add_argument(
        "--bit-depth",
        type=int,
        choices=BIT_DEPTHS,
        help="16 or 24-bit integer, 32 = float (default: the input's)",
    )
    parser.add_argument(
        "--channels",
        type=int,
        metavar="N",
        help="output channels (default: the input's; a mono input -> any count, 2 through a "
        "room's microphone pair)",
    )
    parser.add_argument("--block-size", type=int, default=OFFLINE_BLOCK_SIZE, metavar="FRAMES",
                        help=f"engine block (default {OFFLINE_BLOCK_SIZE}; does not change the "
                        "output)")  # fmt: skip
    parser.add_argument(
        "--jobs", type=int, metavar="N", help="processes for a folder (default: one per CPU core)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--list-plugins",
        action="store_true",
        help="list the built-in plugins and their parameters, then exit",
    )


# ---- sources and the per-file work -----------------------------------------------------


def _source(args: argparse.Namespace) -> Source:
    if args.ir:
        check_input(args.ir)  # clear errors for a missing or broken IR file
        return ("ir", str(args.ir))
    if args.room:
        return ("room", Room.from_toml(args.room).to_dict())
    return ("room", load_preset(args.preset or DEFAULT_PRESET).to_dict())


def _resolve(source: Source, sample_rate_hz: float, channels: int) -> Room | np.ndarray:
    kind, value = source
    if kind == "room":
        return Room.from_dict(value)
    if kind == "irs":
        irs, _, true_stereo, _ = value
        return np.asarray(irs[(sample_rate_hz, true_stereo and channels == 2)])
    with AudioFile(value) as f:
        if f.samplerate != sample_rate_hz:
            with f.resampled_to(sample_rate_hz) as r:
                ir = np.asarray(r.read(r.frames), dtype=np.float32)
        else:
            ir = np.asarray(f.read(f.frames), dtype=np.float32)
    if ir.shape[0] == 4:  # true stereo as `rtverb rir` writes it: LL, LR, RL, RR
        return ir.reshape(2, 2, -1)
    return ir[0] if ir.shape[0] == 1 else ir  # mono IR: (taps,)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    wet_db, dry_db = args.mix if args.mix else (None, None)
    return {
        "wet_db": wet_db, "dry_db": dry_db, "predelay_ms": args.predelay_ms,
        "tail_s": args.tail_s, "bit_depth": args.bit_depth, "channels": args.channels,
        "block_size": args.block_size, "overwrite": args.overwrite,
    }  # fmt: skip


def _render_one(in_path: str, out_path: str, source: Source, pre: str | None, post: str | None,
                options: dict[str, Any], progress: Any = None) -> RenderResult:  # fmt: skip
    """One file (also the worker of a folder render: all arguments cross processes)."""
    info = check_input(in_path)
    if source[0] == "irs":  # the room's mix, unless overridden; its pair for errors
        options = {**source[1][1], **{k: v for k, v in options.items() if v is not None}}
        options["pair"] = source[1][3]
    return render_file(
        in_path, out_path, _resolve(source, info.sample_rate_hz, info.channels),
        pre=parse_chain(pre) if pre else None, post=parse_chain(post) if post else None,
        progress=progress, **options,
    )  # fmt: skip


def _summary(result: RenderResult) -> str:
    rate, ch = result.sample_rate_hz, result.channels
    text = (
        f"wrote {result.out_path.resolve()} ({result.output_frames / rate:.2f} s, {rate:g} Hz, "
        f"{ch} ch, peak {result.peak_dbfs:.1f} dBFS) in {result.wall_s:.2f} s, "
        f"{result.realtime_factor:.0f}x real time"
        + (f" (+ {result.synth_s:.2f} s synthesizing the IR)" if result.synth_s else "")
    )
    if result.clipped_samples:
        text += (
            f"\nwarning: {result.clipped_samples} samples clipped; lower --mix or write "
            "--bit-depth 32 (float)"
        )
    return text


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
        TimeRemainingColumn(), console=Console(stderr=True), disable=quiet, transient=True,
    )  # fmt: skip


# ---- folders -------------------------------------------------------------------------------


def _folder_jobs(in_dir: Path, out_dir: Path | None) -> list[tuple[Path, Path]]:
    if out_dir is None:
        raise RenderError(f"{in_dir} is a folder: give an existing output folder as OUT")
    if not out_dir.is_dir():
        raise RenderError(f"{out_dir}: the output folder does not exist; create it first")
    if out_dir.resolve() == in_dir.resolve():
        raise RenderError(f"{out_dir}: is the input folder; choose another output folder")
    readable = get_supported_read_formats()
    files = sorted(
        p for p in in_dir.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in readable
    )  # fmt: skip
    if not files:
        raise RenderError(f"{in_dir}: no audio files ({', '.join(readable)}) in the folder")
    writable = set(get_supported_write_formats()) - {".mp3", ".ogg"}  # no lossy re-encoding
    return [(p, out_dir / (p.name if p.suffix.lower() in writable else p.stem + ".wav"))
            for p in files]  # fmt: skip


def _synthesize_per_rate(room: Room, files: list[Path]) -> Source:
    """Synthesize the room once per sample rate here, so workers need not load the model."""
    kinds = set()
    for path in files:
        try:
            info = check_input(path)
        except AudioFileError:
            continue  # reported when that file is rendered
        kinds.add((info.sample_rate_hz, room.true_stereo and info.channels == 2))
    irs = {
        (rate, stereo): room_ir(room, round(rate), 2 if stereo else 1)
        for rate, stereo in sorted(kinds)
    }
    mix = {"wet_db": room.wet_db, "dry_db": room.dry_db, "predelay_ms": room.predelay_ms}
    return ("irs", (irs, mix, room.true_stereo, room.pair))


def _render_folder(args: argparse.Namespace, source: Source) -> int:
    """Render every audio file of IN into the folder OUT: in parallel processes, or in this
    process with ``--jobs 1``. A failed file is reported and the others go on."""
    jobs = _folder_jobs(Path(args.input), Path(args.output) if args.output else None)
    workers = max(1, min(args.jobs or os.cpu_count() or 1, len(jobs)))
    if source[0] == "room" and workers > 1:
        source = _synthesize_per_rate(Room.from_dict(source[1]), [i for i, _ in jobs])
    options = _options(args)
    failed = 0
    with _progress(args.quiet) as bar:
        task = bar.add_task(f"rendering {len(jobs)} files", total=len(jobs))

        def report(name: Path, result: Callable[[], RenderResult]) -> None:
            nonlocal failed
            try:
                message = _summary(result())
            except (
                RenderError,
                AudioFileError,
                ChainError,
                RoomError,
                ValueError,
                RuntimeError,
            ) as e:
                failed += 1
                message = f"error: {name}: {e}"
            bar.console.print(message, highlight=False, soft_wrap=True)
            bar.advance(task)

        if workers == 1:
            for i, o in jobs:
                report(
                    i, partial(_render_one, str(i), str(o), source, args.pre, args.post, options)
                )
        else:
            context = multiprocessing.get_context("spawn")  # no forking of ONNX Runtime threads
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = {
                    pool.submit(
                        _render_one, str(i), str(o), source, args.pre, args.post, options
                    ): i
                    for i, o in jobs
                }
                for future in as_completed(futures):
                    report(futures[future], future.result)
    if failed:
        print(f"rtverb render: {failed} of {len(jobs)} files failed", file=sys.stderr)
    return 1 if failed else 0


# ---- the command ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    if args.list_plugins:
        print(describe_plugins())
        return 0
    try:
        if args.channels is not None and not 1 <= args.channels <= MAX_CHANNELS:
            raise RenderError(f"--channels {args.channels}: give 1 to {MAX_CHANNELS}")
        for chain in (args.pre, args.post):
            if chain:
                parse_chain(chain)  # fail before any work
        source = _source(args)
        if args.input and Path(args.input).is_dir():
            return _render_folder(args, source)
        if args.input is None:
            if not DEMO_WAV.is_file():
                raise RenderError(
                    f"{DEMO_WAV}: the demo clip is missing; run python -m rtverb.offline.demo"
                )
            in_path, out_path = DEMO_WAV, Path(args.output or DEMO_OUT)
        else:
            in_path = Path(args.input)
            out_path = Path(args.output or f"{in_path.stem}-rtverb.wav")
        total = check_input(in_path).frames
        with _progress(args.quiet) as bar:
            task = bar.add_task(f"rendering {in_path.name}", total=total)
            result = _render_one(
                str(in_path), str(out_path), source, args.pre, args.post, _options(args),
                progress=lambda n: bar.advance(task, n),
            )  # fmt: skip
        print(_summary(result))
        return 0
    except (RenderError, AudioFileError, ChainError, RoomError) as e:
        print(f"rtverb render: error: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:  # e.g. the synthesis model is missing
        print(f"rtverb render: error: {e}", file=sys.stderr)
        return 1
