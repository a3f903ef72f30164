"""``rtverb analyze IR.wav [--distance-m D] [--channel N] [--json]``: room-acoustic parameters.

Prints T20, T30, EDT, C50, C80 and D50 per octave band (125 Hz-8 kHz), and broadband C50 and
DRR (`rtverb.analysis.ir_file.analyze`; measured IRs with a noise floor are handled). The onset is
the geometric direct path when ``--distance-m`` is given, else detected.

Multi-channel files: every channel is analyzed (one table per channel; with ``--json`` a list
of objects, each with a ``channel`` number, 1 = first) unless ``--channel N`` picks one. One
channel gives one JSON object with exactly the keys of `JSON_KEYS` (NaN becomes null).

Stereo IRs (2 channels: a microphone pair; 4: true stereo, LL LR RL RR as `rtverb rir` writes
them) also get the inter-channel coherence of each pair of capsules per octave band, on the
late part (`rtverb.analysis.acoustics.interchannel_coherence`): a table row, and in JSON a
``coherence`` list on each channel of the pair.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from rtverb.analysis.acoustics import Metrics, interchannel_coherence
from rtverb.analysis.ir_file import AnalyzeError, analyze, onset_warning, read_ir

#: The JSON object's keys, in order (the issue's format).
JSON_KEYS = (
    "bands_hz",
    "T30_s",
    "EDT_s",
    "C50_db",
    "C80_db",
    "D50",
    "C50_broadband_db",
    "DRR_db",
)
#: Table rows: (Metrics field, label, format).
ROWS = (
    ("T20_s", "T20 (s)", "{:.2f}"),
    ("T30_s", "T30 (s)", "{:.2f}"),
    ("EDT_s", "EDT (s)", "{:.2f}"),
    ("C50_db", "C50 (dB)", "{:.1f}"),
    ("C80_db", "C80 (dB)", "{:.1f}"),
    ("D50", "D50", "{:.2f}"),
)


def to_json(metrics: Metrics) -> dict[str, Any]:
    """The issue's JSON object: `JSON_KEYS` in order, NaN as None."""
    data = metrics.to_json()
    return {key: data[key] for key in JSON_KEYS}


def _cell(value: float, fmt: str) -> str:
    return "-" if math.isnan(value) else fmt.format(value)


def print_table(metrics: Metrics, title: str) -> None:
    """One rich table: metrics as rows, octave bands as columns; broadband figures below."""
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("")
    for band in metrics.bands_hz:
        table.add_column(
            f"{band / 1000:g} kHz" if band >= 1000 else f"{band:g} Hz", justify="right"
        )
    for key, label, fmt in ROWS:
        table.add_row(label, *(_cell(v, fmt) for v in getattr(metrics, key)))
    console = Console()
    console.print(title, markup=False, highlight=False, soft_wrap=True)  # paths: no markup
    console.print(table)
    console.print(
        f"broadband: C50 {_cell(metrics.C50_broadband_db, '{:.1f}')} dB, "
        f"DRR {_cell(metrics.DRR_db, '{:.1f}')} dB   ('-': not measurable, e.g. T30 needs 35 dB "
        "of decay above the noise)"
    )


#: By a file's channel count, the channel pairs (1 = first) that are a microphone pair's two
#: capsules and their row labels, in `rtverb rir`'s order (left, right; true stereo: source to
#: capsule LL, LR, RL, RR).
CAPSULE_PAIRS: dict[int, dict[tuple[int, int], str]] = {
    2: {(1, 2): "capsules L-R (1-2)"},
    4: {(1, 2): "left source LL-LR (1-2)", (3, 4): "right source RL-RR (3-4)"},
}


def print_coherence(coherence: dict[str, list[float]], bands_hz: list[float]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="inter-channel coherence, late part (1: identical, 0: uncorrelated)")
    table.add_column("")
    for band in bands_hz:
        table.add_column(
            f"{band / 1000:g} kHz" if band >= 1000 else f"{band:g} Hz", justify="right"
        )
    for label, values in coherence.items():
        table.add_row(label, *(_cell(v, "{:.2f}") for v in values))
    Console().print(table)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ir", type=Path, help="impulse response (wav, flac, aiff, mp3, ogg)")
    parser.add_argument(
        "--distance-m",
        type=float,
        help="source-listener distance: the onset is then the geometric direct path",
    )
    parser.add_argument(
        "--delay-samples",
        type=int,
        default=0,
        help="samples between the file's start and the emission (40 for rtverb and "
        "pyroomacoustics IRs); used with --distance-m",
    )
    parser.add_argument(
        "--channel", type=int, help="analyze only channel N (1 = first); default: every channel"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON: one object, or a list of objects (with 'channel') for several channels",
    )


def _check_args(args: argparse.Namespace) -> None:
    if args.distance_m is not None and not (math.isfinite(args.distance_m) and args.distance_m > 0):
        raise AnalyzeError(
            f"--distance-m must be a positive distance in metres, got {args.distance_m}"
        )
    if args.delay_samples < 0:
        raise AnalyzeError(f"--delay-samples must be 0 or more, got {args.delay_samples}")


def run(args: argparse.Namespace) -> int:
    try:
        _check_args(args)
        ir, sample_rate_hz = read_ir(args.ir)
        channels = range(1, ir.shape[0] + 1)
        if args.channel is not None:
            if args.channel not in channels:
                raise AnalyzeError(
                    f"{args.ir}: --channel {args.channel} does not exist; the file has "
                    f"{ir.shape[0]} channel(s), numbered 1-{ir.shape[0]}"
                )
            channels = range(args.channel, args.channel + 1)
        results = []
        for channel in channels:
            name = f"{args.ir}" + (f" channel {channel}" if ir.shape[0] > 1 else "")
            try:
                metrics = analyze(
                    ir[channel - 1], sample_rate_hz, args.distance_m, args.delay_samples
                )
            except AnalyzeError as e:
                others = "" if len(channels) == 1 else "; pick another with --channel N"
                raise AnalyzeError(f"{name}: {e}{others}") from None
            if args.distance_m is not None:
                warning = onset_warning(
                    ir[channel - 1], sample_rate_hz, args.distance_m, args.delay_samples
                )
                if warning:
                    print(f"rtverb analyze: warning: {name}: {warning}", file=sys.stderr)
            results.append((channel, name, metrics))
        coherence: dict[tuple[int, int], list[float]] = {}
        if args.channel is None:
            for first, second in CAPSULE_PAIRS.get(ir.shape[0], {}):
                left, right = ir[first - 1], ir[second - 1]
                coherence[first, second] = interchannel_coherence(left, right, sample_rate_hz)
    except AnalyzeError as e:
        print(f"rtverb analyze: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        if len(results) == 1:
            output: Any = to_json(results[0][2])
        else:
            output = [{"channel": channel, **to_json(m)} for channel, _, m in results]
            for (first, second), values in coherence.items():
                clean = [None if math.isnan(v) else v for v in values]
                output[first - 1]["coherence"] = output[second - 1]["coherence"] = clean
        print(json.dumps(output, indent=2, allow_nan=False))
        return 0
    duration_s = ir.shape[1] / sample_rate_hz
    onset = f"geometric, {args.distance_m:g} m" if args.distance_m is not None else "detected"
    for _, name, metrics in results:
        print_table(metrics, f"{name}: {duration_s:.2f} s at {sample_rate_hz:g} Hz, onset {onset}")
    if coherence:
        labels = CAPSULE_PAIRS[ir.shape[0]]
        rows = {labels[pair]: values for pair, values in coherence.items()}
        print_coherence(rows, results[0][2].bands_hz)
    return 0
