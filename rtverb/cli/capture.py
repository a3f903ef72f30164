"""``rtverb capture (--chain CHAIN | --device IN[,OUT] | --dry DRY --wet WET) -o IR.wav``.

Captures an impulse response (`rtverb.capture`), writes it as a 32-bit float WAV (channels:
the outputs; a ``--true-stereo`` IR as in1->out1, in1->out2, in2->out1, in2->out2), then
prints the ``rtverb analyze`` table of its first channel and the peak-to-noise ratio.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rtverb.analysis.ir_file import AnalyzeError, analyze, read_ir
from rtverb.capture import Capture, CaptureError, capture_chain, capture_device, capture_dry_wet
from rtverb.capture.chain import DEFAULT_LEVEL_DB, DEFAULT_MAX_IR_S
from rtverb.capture.device import parse_devices
from rtverb.cli.analyze import print_table
from rtverb.offline.audio_io import AudioFileError, SafeWriter, check_output
from rtverb.offline.chain import ChainError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "examples:\n"
        '  rtverb capture --chain "Reverb(room_size=0.8)" -o reverb_ir.wav\n'
        "  rtverb capture --device 2,3 --repeats 4 --max-ir-s 2 -o room_ir.wav\n"
        "  rtverb capture --dry take_dry.wav --wet take_wet.wav -o ir.wav"
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--chain", metavar="CHAIN", help="pedalboard plugins, as `rtverb render`")
    what.add_argument("--device", metavar="IN[,OUT]", help="a sound card (python -m sounddevice)")
    what.add_argument("--dry", metavar="DRY", type=Path, help="the dry recording (with --wet)")
    parser.add_argument("--wet", metavar="WET", type=Path, help="the processed recording")
    parser.add_argument("-o", "--out", required=True, type=Path, help="output IR (.wav)")
    parser.add_argument("--sample-rate", type=int, default=48000, help="Hz (default 48000)")
    parser.add_argument(
        "--max-ir-s",
        type=float,
        default=DEFAULT_MAX_IR_S,
        help=f"longest IR kept (default {DEFAULT_MAX_IR_S:g} s)",
    )
    parser.add_argument(
        "--sweep-s",
        type=float,
        help="sweep length (default: long enough to keep harmonic distortion out of --max-ir-s)",
    )
    parser.add_argument(
        "--level-db",
        type=float,
        default=DEFAULT_LEVEL_DB,
        help=f"sweep level, dBFS (default {DEFAULT_LEVEL_DB:g})",
    )
    parser.add_argument(
        "--true-stereo", action="store_true", help="sweep each input of the chain alone: a 2x2 IR"
    )
    parser.add_argument("--repeats", type=int, default=1, help="sweeps averaged (--device)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--plot", action="store_true", help="also write OUT.png (IR and EDCs)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


@contextmanager
def _progress(quiet: bool, label: str) -> Iterator[Callable[[float], None] | None]:
    """A rich progress bar fed with fractions of the work (None when quiet)."""
    if quiet:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), transient=True
    ) as bar:
        task = bar.add_task(label, total=1.0)
        done = [0.0]

        def advance(fraction: float) -> None:
            done[0] = min(done[0] + fraction, 1.0)
            bar.update(task, completed=done[0])

        yield advance


def _check(args: argparse.Namespace) -> None:
    if (args.dry is None) != (args.wet is None):
        raise CaptureError("give --dry and --wet together")
    if args.true_stereo and args.chain is None:
        raise CaptureError("--true-stereo works with --chain only")
    if args.repeats != 1 and args.device is None:
        raise CaptureError("--repeats works with --device only")
    if args.out.suffix.lower() != ".wav":
        raise CaptureError(f"{args.out}: the IR is written as a float WAV; name it *.wav")
    if args.sweep_s is not None and not (math.isfinite(args.sweep_s) and 1 <= args.sweep_s <= 60):
        raise CaptureError(f"--sweep-s must be 1-60 s, got {args.sweep_s:g}")


def _capture(args: argparse.Namespace) -> Capture:
    options = {"max_ir_s": args.max_ir_s, "sweep_s": args.sweep_s, "level_db": args.level_db}
    if args.chain is not None:
        with _progress(args.quiet, "sweeping the chain") as progress:
            return capture_chain(
                args.chain,
                args.sample_rate,
                true_stereo=args.true_stereo,
                progress=progress,
                **options,
            )
    if args.device is not None:
        with _progress(args.quiet, "playing and recording") as progress:
            return capture_device(
                parse_devices(args.device),
                args.sample_rate,
                repeats=args.repeats,
                progress=progress,
                **options,
            )
    dry, dry_fs = read_ir(args.dry)
    wet, wet_fs = read_ir(args.wet)
    if dry_fs != wet_fs:
        raise CaptureError(
            f"{args.dry} is at {dry_fs:g} Hz but {args.wet} at {wet_fs:g} Hz; resample one so "
            "both have the same rate"
        )
    with _progress(args.quiet, "deconvolving") as progress:
        return capture_dry_wet(dry, wet, dry_fs, args.max_ir_s, progress)


def run(args: argparse.Namespace) -> int:
    try:
        _check(args)
        source = args.dry or args.wet or Path("")
        out = check_output(source, args.out, args.overwrite)
        if args.wet is not None:
            check_output(args.wet, args.out, args.overwrite)
        result = _capture(args)
        flat = result.ir.reshape(-1, result.ir.shape[-1])
        with SafeWriter(out, result.sample_rate_hz, flat.shape[0], 32) as writer:
            writer.write(flat)
        metrics = analyze(result.first_channel(), result.sample_rate_hz)
    except (CaptureError, ChainError, AnalyzeError, AudioFileError) as e:
        print(f"rtverb capture: error: {e}", file=sys.stderr)
        return 2
    layout = {1: "mono", 2: "stereo", 3: "true stereo (in1->out1, in1->out2, in2->out1, in2->out2)"}
    shape = layout[result.ir.ndim] if result.ir.shape[0] > 1 else "mono"
    pnr = (
        "no noise floor"
        if math.isinf(result.peak_to_noise_db)
        else (f"peak-to-noise {result.peak_to_noise_db:.1f} dB")
    )
    latency = f", latency {1e3 * result.latency_s:.1f} ms removed" if result.latency_s else ""
    print(
        f"wrote {out}: {flat.shape[-1] / result.sample_rate_hz:.2f} s at "
        f"{result.sample_rate_hz:g} Hz, {shape}, {pnr}{latency}"
    )
    print_table(metrics, f"{out} channel 1")
    if args.plot:
        from rtverb.analysis.plot import plot_ir

        png = out.with_suffix(".png")
        plot_ir(result.first_channel(), result.sample_rate_hz, png, with_edc=True)
        print(f"wrote {png}")
    return 0
