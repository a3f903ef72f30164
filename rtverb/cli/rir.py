"""``rtverb rir ROOM -o IR.wav``: synthesize a room's impulse response to a file, one channel per
path (a microphone pair: left, right; true stereo: LL, LR, RL, RR)."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from rtverb.files import OutputError
from rtverb.offline.audio_io import AudioFileError, SafeWriter, check_output
from rtverb.room.presets import load_preset
from rtverb.room.room import RoomError

#: What the channels of a written IR are, by the synthesized IR's dimensions.
PATH_ORDER = {
    1: "",
    2: " (left capsule, right capsule)",
    3: " (source to capsule: LL, LR, RL, RR; true stereo)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("room", help="a room file (.toml) or a preset name")
    parser.add_argument(
        "-o", "--out", required=True, type=Path, help="output audio file (.wav, .flac)"
    )
    parser.add_argument("--sample-rate", type=int, default=48000, help="Hz (default 48000)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument(
        "--plot", action="store_true", help="also write OUT.png (waveform, spectrogram)"
    )


def run(args: argparse.Namespace) -> int:
    from rtverb.synth import ModelError, synthesize

    try:
        room = load_preset(args.room)
        out = check_output(Path(args.room), args.out, args.overwrite)
        png = out.with_suffix(".png")
        if args.plot and png.exists() and not args.overwrite:
            raise AudioFileError(f"{png}: already exists; pass --overwrite or choose another name")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            ir = synthesize(room, args.sample_rate)
            elapsed_ms = 1e3 * (time.perf_counter() - t0)
        for w in caught:
            print(f"rtverb rir: warning: {w.message}", file=sys.stderr)
        paths = ir.reshape(-1, ir.shape[-1])  # one channel per path
        with SafeWriter(out, args.sample_rate, len(paths), 32) as writer:
            writer.write(paths)
    except (RoomError, AudioFileError, ModelError, ValueError) as e:
        print(f"rtverb rir: error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {out}: {ir.shape[-1] / args.sample_rate:.2f} s at {args.sample_rate} Hz, "
        f"{len(paths)} channel{'s' * (len(paths) > 1)}{PATH_ORDER[ir.ndim]}, "
        f"synthesized in {elapsed_ms:.1f} ms (first call includes loading the model)"
    )
    if args.plot:
        from rtverb.analysis.plot import plot_ir

        title = f"{room.name}: the first channel of {len(paths)}" if len(paths) > 1 else ""
        try:
            plot_ir(paths[0], args.sample_rate, png, title=title)
        except OutputError as e:
            print(f"rtverb rir: error: {e}", file=sys.stderr)
            return 2
        print(f"wrote {png}")
    return 0
