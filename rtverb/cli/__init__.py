"""The `rtverb` command line: one subcommand per module.

Each module named in `COMMANDS` provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "analyze": ("rtverb.cli.analyze", "Measure an impulse response: T30, EDT, C50, C80, D50, DRR."),
    "bench": (
        "rtverb.cli.bench",
        "Does rtverb keep up on this machine? Per-block cost vs pedalboard.",
    ),
    "capture": (
        "rtverb.cli.capture",
        "Capture an impulse response: a plugin chain, a sound card, or a dry/wet pair.",
    ),
    "live": (
        "rtverb.cli.live",
        "Hear a microphone or a file through the room; OSC moves the room.",
    ),
    "match": (
        "rtverb.cli.match",
        "Find an editable room that matches an IR or target T30/C50 numbers.",
    ),
    "plot": ("rtverb.cli.plot", "Pictures: a room in 3D, an IR, two IRs' decay curves (PNG)."),
    "presets": (
        "rtverb.cli.presets",
        "List the room presets with T30 and C50 of the synthesized IR.",
    ),
    "rir": ("rtverb.cli.rir", "Synthesize a room's impulse response to an audio file."),
    "render": ("rtverb.cli.render", "Render audio files through pre-chain -> room -> post-chain."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtverb", description="Real-time neural room reverb.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `rtverb analyze --json | head`
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    sys.exit(main())
