"""``rtverb plot``: pictures of a room, an IR, two IRs' decay curves (`rtverb.analysis.plot`)::

rtverb plot room ROOM.toml -o room.png         (a room file or a preset name)
rtverb plot ir IR.wav -o ir.png [--channel N]
rtverb plot edc A.wav B.wav -o edc.png [--labels pred,truth] [--distance-m D]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rtverb.analysis.ir_file import AnalyzeError, read_channel
from rtverb.analysis.plot import plot_edc_overlay, plot_ir, plot_room
from rtverb.room.presets import load_preset
from rtverb.room.room import RoomError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    room = sub.add_parser("room", help="the room in 3D with source and listener")
    room.add_argument("room", help="a room file (.toml) or a preset name")
    ir = sub.add_parser("ir", help="an IR's waveform and spectrogram")
    ir.add_argument("ir", type=Path, help="impulse response audio file")
    edc = sub.add_parser("edc", help="two IRs' energy decay curves per octave band, overlaid")
    edc.add_argument("ir", type=Path, nargs=2, metavar="IR", help="two impulse response files")
    edc.add_argument("--labels", default="", help="two names, comma-separated (default: files)")
    edc.add_argument("--distance-m", type=float, help="onset at this geometric distance")
    for p in (room, ir, edc):
        p.add_argument("-o", "--out", type=Path, required=True, help="output picture (.png)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing picture")
    for p in (ir, edc):
        p.add_argument("--channel", type=int, default=1, help="channel of the file (1 = first)")


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    try:
        if out.suffix.lower() != ".png":
            raise ValueError(f"{out}: pictures are PNG files; name the output *.png")
        if out.exists() and not args.overwrite:
            raise ValueError(f"{out}: already exists; pass --overwrite or choose another name")
        if args.what == "room":
            plot_room(load_preset(args.room), out)
        elif args.what == "ir":
            ir, fs = read_channel(args.ir, args.channel)
            plot_ir(ir, fs, out, title=f"{args.ir.name}: {len(ir) / fs:.2f} s at {fs:g} Hz")
        else:
            labels = args.labels.split(",") if args.labels else [p.name for p in args.ir]
            if len(labels) != 2:
                raise ValueError(
                    f"--labels: give two names separated by a comma, got {args.labels!r}"
                )
            (a, fs_a), (b, fs_b) = (read_channel(p, args.channel) for p in args.ir)
            plot_edc_overlay(a, b, fs_a, out, labels, fs_b, args.distance_m)
    except (AnalyzeError, RoomError, ValueError, ImportError, OSError) as e:
        print(f"rtverb plot: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0
