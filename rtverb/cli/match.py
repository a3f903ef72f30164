"""``rtverb match TARGET.wav -o room.toml`` (or ``--t30 "500:1.8,1000:1.7" --c50 -2``).

Finds a room inside the model domain whose synthesized IR matches the target (`rtverb.matching`),
writes it as a room file, and prints target vs matched per band and which domain bound, if
any, stopped the fit. A multi-channel target is matched on its first channel (``--channel``).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from rtverb.analysis.ir_file import AnalyzeError, read_ir
from rtverb.matching import Match, MatchError, Target, match, target_from_ir, target_from_text
from rtverb.matching.fit import MAX_EVALUATIONS, SIZE_GRID, T30_CORRECTIONS
from rtverb.matching.target import MATCH_BANDS_HZ
from rtverb.room.presets import load_preset
from rtverb.room.room import RoomError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "examples:\n"
        "  rtverb match hall_ir.wav -o hall.toml --plot\n"
        '  rtverb match --t30 "500:1.8,1000:1.7" --c50=-2 -o hall.toml\n'
        "  rtverb match ir.wav --size 12,9,5 -o room.toml\n"
        "  rtverb match ir.wav --start my_room.toml --fix size,positions -o room.toml"
    )
    parser.add_argument("target", nargs="?", type=Path, help="target impulse response file")
    parser.add_argument("-o", "--out", required=True, type=Path, help="room file to write (.toml)")
    numbers = parser.add_argument_group("target numbers (instead of a file)")
    numbers.add_argument("--t30", metavar="BANDS", help='T30 s: "500:1.8,1000:1.7" or "1.8"')
    numbers.add_argument("--edt", metavar="BANDS", help="EDT s, as --t30")
    numbers.add_argument("--c50", metavar="BANDS", help="C50 dB, as --t30 (write --c50=-2)")
    numbers.add_argument("--drr", metavar="DB", help="direct-to-reverberant ratio, dB")
    held = parser.add_argument_group("what you know")
    held.add_argument("--size", metavar="X,Y,Z", help="hold the room size, metres")
    held.add_argument("--start", metavar="ROOM", help="a room file or preset (with --fix)")
    held.add_argument("--fix", metavar="PARTS", help="hold parts of --start: size,positions")
    parser.add_argument(
        "--fit-mix",
        action="store_true",
        help="the target holds a dry path (a plugin's IR): fit the dry level too",
    )
    parser.add_argument("--channel", type=int, default=1, help="target channel (1 = first)")
    parser.add_argument(
        "--max-evaluations",
        type=int,
        default=MAX_EVALUATIONS,
        help=f"rooms synthesized by the search, at most ({MAX_EVALUATIONS})",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing room file")
    parser.add_argument("--plot", action="store_true", help="also write OUT.png: EDCs overlaid")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _size(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise MatchError(f"--size: expected X,Y,Z in metres, e.g. 12,9,5; got {text!r}")
    return values[0], values[1], values[2]


def _fmt(value: float, fmt: str) -> str:
    return "-" if math.isnan(value) else fmt.format(value)


def print_comparison(result: Match) -> None:
    """Target vs matched per band, DRR, and the bounds that stopped the fit."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="target / matched")
    table.add_column("")
    for band in MATCH_BANDS_HZ:
        table.add_column(
            f"{band / 1000:g} kHz" if band >= 1000 else f"{band:g} Hz", justify="right"
        )
    t, m = result.target, result.metrics
    for label, want, got, fmt in (
        ("T30 (s)", t.T30_s, m.T30_s, "{:.2f}"),
        ("EDT (s)", t.EDT_s, m.EDT_s, "{:.2f}"),
        ("C50 (dB)", t.C50_db, m.C50_db, "{:.1f}"),
    ):
        table.add_row(
            label, *(f"{_fmt(a, fmt)} / {_fmt(b, fmt)}" for a, b in zip(want, got, strict=True))
        )
    console = Console()
    console.print(table)
    console.print(f"DRR: {_fmt(t.DRR_db, '{:.1f}')} / {_fmt(m.DRR_db, '{:.1f}')} dB")
    if result.bounds_hit:
        console.print("stopped by the model domain: " + "; ".join(result.bounds_hit), markup=False)


def _target(args: argparse.Namespace) -> tuple[Target, tuple[np.ndarray, float] | None]:
    if args.target is None:
        return target_from_text(args.t30, args.edt, args.c50, args.drr), None
    if any(v is not None for v in (args.t30, args.edt, args.c50, args.drr)):
        raise MatchError("give a target file or target numbers (--t30 ...), not both")
    ir, fs = read_ir(args.target)
    if not 1 <= args.channel <= ir.shape[0]:
        raise MatchError(
            f"{args.target}: --channel {args.channel} does not exist; it has {ir.shape[0]}"
        )
    return target_from_ir(ir[args.channel - 1], fs, str(args.target)), (ir[args.channel - 1], fs)


def run(args: argparse.Namespace) -> int:
    try:
        out: Path = args.out
        if out.suffix.lower() != ".toml":
            raise MatchError(f"{out}: a room file is TOML; name it *.toml")
        if not out.parent.is_dir():
            raise MatchError(f"{out}: the folder {out.parent} does not exist")
        if out.exists() and not args.overwrite:
            raise MatchError(f"{out}: already exists; pass --overwrite or choose another name")
        target, target_ir = _target(args)
        start = load_preset(args.start) if args.start else None
        fix = frozenset(p.strip() for p in args.fix.split(",")) if args.fix else frozenset()
        size = _size(args.size) if args.size else None
        rate = int(target_ir[1]) if target_ir else 48000
        if args.quiet:
            result = match(target, rate, size, start, fix, args.fit_mix, args.max_evaluations)
        else:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            with Progress(
                TextColumn("matching"), BarColumn(), MofNCompleteColumn(), transient=True
            ) as bar:
                total = args.max_evaluations + (len(SIZE_GRID) + 1) * T30_CORRECTIONS + 1
                task = bar.add_task("", total=total)
                result = match(
                    target,
                    rate,
                    size,
                    start,
                    fix,
                    args.fit_mix,
                    args.max_evaluations,
                    lambda n: bar.update(task, completed=n),
                )
        room = replace(
            result.room,
            name=out.stem.replace("_", " "),
            description=f"matched by rtverb match to {target.source}",
        )
        room.to_toml(out)
    except (MatchError, AnalyzeError, RoomError) as e:
        print(f"rtverb match: error: {e}", file=sys.stderr)
        return 2
    print_comparison(result)
    print(f"wrote {out} ({result.evaluations} rooms synthesized in {result.elapsed_s:.1f} s)")
    if args.plot and target_ir is not None:
        from rtverb.analysis.plot import plot_edc_overlay
        from rtverb.matching.fit import matched_ir

        png = out.with_suffix(".png")
        plot_edc_overlay(
            matched_ir(room, rate, args.fit_mix),
            target_ir[0],
            rate,
            png,
            ("matched", "target"),
            target_ir[1],
        )
        print(f"wrote {png}")
    return 0
