"""``rtverb rir ROOM -o IR.wav``: synthesize a room's impulse response to a file."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from rtverb.offline.audio_io import AudioFileError, SafeWriter, check_output
from rtverb.room.presets import load_preset
from rtverb.room.room import RoomError


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
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            ir = synthesize(room, args.sample_rate)
            elapsed_ms = 1e3 * (time.perf_counter() - t0)
        for w in caught:
            print(f"rtverb rir: warning: {w.message}", file=sys.stderr)
        with SafeWriter(out, args.sample_rate, 1, 32) as writer:
            writer.write(ir[None, :])
    except (RoomError, AudioFileError, ModelError, ValueError) as e:
        print(f"rtverb rir: error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {out}: {len(ir) / args.sample_rate:.2f} s at {args.sample_rate} Hz, "
        f"synthesized in {elapsed_ms:.1f} ms (first call includes loading the model)"
    )
    if args.plot:
        from rtverb.analysis.plot import plot_ir

        png = out.with_suffix(".png")
        plot_ir(ir, args.sample_rate, png)
        print(f"wrote {png}")
    return 0
