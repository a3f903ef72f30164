"""``rtverb live``: hear a microphone or a file through the room while OSC moves it.

The arguments and the run; everything it runs is `rtverb.live.app.Live`.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from rtverb.files import OutputError
from rtverb.live.app import Live
from rtverb.live.report import print_summary, setup_logging, write_json_atomic
from rtverb.room.presets import DEFAULT_PRESET
from rtverb.room.room import RoomError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("input")
    src.add_argument("--input", metavar="FILE", help="stream a file instead of the microphone")
    src.add_argument("--loop", action="store_true", help="loop --input")
    src.add_argument("--device", metavar="NAME|ID", help="audio device (see --list-devices)")
    src.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    audio = parser.add_argument_group("audio")
    audio.add_argument(
        "--block",
        "--block-size",
        type=int,
        default=256,
        metavar="FRAMES",
        help="frames per callback (default 256)",
    )
    audio.add_argument(
        "--sample-rate",
        type=int,
        default=48000,
        metavar="HZ",
        help="stream rate; --input is resampled to it (default 48000)",
    )
    audio.add_argument("--channels", type=int, default=2, choices=(1, 2), help="default 2")
    room = parser.add_argument_group("room")
    room.add_argument(
        "--preset",
        metavar="NAME|FILE",
        default=DEFAULT_PRESET,
        help=f"starting room, a preset or a .toml file ({DEFAULT_PRESET})",
    )
    room.add_argument(
        "--synth",
        choices=("model", "analytic"),
        default="model",
        help="IR synthesizer: the neural model (default) or the Sabine/Eyring baseline",
    )
    room.add_argument("--pre", metavar="CHAIN", help="pedalboard plugins before the room")
    room.add_argument("--post", metavar="CHAIN", help="pedalboard plugins after the room")
    osc = parser.add_argument_group("OSC")
    osc.add_argument("--osc-port", type=int, default=9000, metavar="PORT", help="default 9000")
    osc.add_argument(
        "--osc-host",
        default="127.0.0.1",
        metavar="ADDR",
        help="listen address (default 127.0.0.1; 0.0.0.0 listens on every network interface)",
    )
    osc.add_argument(
        "--osc-allow",
        metavar="CIDR[,CIDR]",
        help="who may send OSC (default: this machine only, even with --osc-host 0.0.0.0); "
        "e.g. 192.168.1.0/24 lets a tablet on that network in",
    )
    osc.add_argument("--no-osc", action="store_true", help="do not listen for OSC")
    out = parser.add_argument_group("output")
    out.add_argument("--record", metavar="OUT.wav", help="also write the output (32-bit float)")
    out.add_argument("--overwrite", action="store_true", help="replace an existing --record file")
    out.add_argument("--seconds", type=float, metavar="N", help="stop after N seconds")
    out.add_argument("--summary-json", metavar="FILE", help="write the end summary as JSON")
    out.add_argument("--quiet", action="store_true", help="no status line")


def run(args: argparse.Namespace) -> int:
    import sounddevice as sd
    from rich.console import Console

    console = Console(stderr=True)
    if args.list_devices:
        print(sd.query_devices())
        return 0
    summary_dir = Path(args.summary_json or ".").parent
    if not summary_dir.is_dir():  # found now, not after the run
        console.print(
            f"[red]rtverb live:[/red] --summary-json {args.summary_json}: the output folder "
            f"{summary_dir} does not exist; create it first"
        )
        return 2
    setup_logging(console)
    with contextlib.ExitStack() as stack:
        try:
            live = Live(args, stack)
        except Exception as e:  # setup errors are the user's to fix: say what and how
            if not isinstance(e, RoomError | ValueError | OSError | RuntimeError):
                raise
            console.print(f"[red]rtverb live:[/red] {e}")
            return 2
        summary = live.run(console)
    print_summary(console, summary)
    if args.summary_json:
        try:
            write_json_atomic(args.summary_json, summary.to_json())
        except OutputError as e:
            console.print(f"[red]rtverb live:[/red] --summary-json: {e}")
            return 2
    return 1 if summary.failed else 0  # pragma: no cover (mypy: ExitStack may swallow exceptions)
