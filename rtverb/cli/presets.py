"""``rtverb presets``: the room presets with T30 and C50 measured on their synthesized IRs.

The presets themselves (loading, saving, listing) are `rtverb.room.presets`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import warnings
from typing import Any

import numpy as np

from rtverb.analysis.acoustics import measure
from rtverb.room.presets import PRESETS_DIR, list_presets, load_preset
from rtverb.room.room import Room, RoomError

#: Octave bands averaged for the one-number T30 of `rtverb presets` (ISO 3382-1 "mid": 500, 1k).
MID_BANDS_HZ = (500.0, 1000.0)


def measure_preset(room: Room, sample_rate_hz: int = 48000) -> dict[str, float]:
    """T30 (mean of 500 Hz and 1 kHz, s) and broadband C50 (dB) of the synthesized IR, heard
    by an omni at the listener position (the room's own figures, whatever its pair).

    Raises:
        ImportError: the synthesizer (`rtverb.synth`) is not available.
    """
    from rtverb.synth import synthesize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # presets are checked to be inside the domain
        ir = synthesize(dataclasses.replace(room, pair="mono"), sample_rate_hz)
    metrics = measure(np.asarray(ir, dtype=np.float64), sample_rate_hz, distance_m=room.distance_m)
    mid = [t for b, t in zip(metrics.bands_hz, metrics.T30_s, strict=True) if b in MID_BANDS_HZ]
    return {
        "T30_s": float(np.nanmean(mid)) if not all(math.isnan(t) for t in mid) else math.nan,
        "C50_db": metrics.C50_broadband_db,
        "ir_s": len(ir) / sample_rate_hz,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print the list as JSON instead of a table"
    )
    parser.add_argument(
        "--no-measure",
        action="store_true",
        help="skip synthesizing each room (list names and Sabine RT60 only)",
    )


def _row(name: str, measure_ir: bool) -> dict[str, Any]:
    room = load_preset(name)
    rt = room.sabine_rt60_s()
    row: dict[str, Any] = {
        "name": name,
        "title": room.name,
        "size_m": list(room.size_m),
        "sabine_rt60_mid_s": float((rt[2] + rt[3]) / 2),
        "description": room.description,
        "builtin": (PRESETS_DIR / f"{name}.toml").exists(),
    }
    if measure_ir:
        row.update(measure_preset(room))
    return row


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    measure_ir = not args.no_measure
    note = ""
    if measure_ir:
        try:
            import rtverb.synth  # noqa: F401
        except ImportError as e:
            measure_ir = False
            note = f"T30/C50 not measured: the synthesizer is not available ({e})"
    try:
        rows = [_row(name, measure_ir) for name in list_presets()]
    except RoomError as e:
        console.print(f"[red]error:[/red] {e}")
        return 1
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"rtverb presets ({PRESETS_DIR})")
    table.add_column("name")
    table.add_column("size (m)")
    table.add_column("T30 (s)", justify="right")
    table.add_column("C50 (dB)", justify="right")
    table.add_column("Sabine RT60 (s)", justify="right")
    table.add_column("description", overflow="fold")
    for row in rows:
        table.add_row(
            row["name"] + ("" if row["builtin"] else " (user)"),
            " x ".join(f"{v:g}" for v in row["size_m"]),
            f"{row['T30_s']:.2f}" if "T30_s" in row else "-",
            f"{row['C50_db']:.1f}" if "C50_db" in row else "-",
            f"{row['sabine_rt60_mid_s']:.2f}",
            row["description"],
        )
    console.print(table)
    console.print(
        "T30: mean of the 500 Hz and 1 kHz octave bands; C50: broadband; both measured on the "
        "synthesized IR by an omni at the listener (ISO 3382-1). Sabine RT60: mid-band "
        "estimate from the room file."
    )
    if note:
        console.print(f"[yellow]{note}[/yellow]")
    return 0
