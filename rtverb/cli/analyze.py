"""``rtverb analyze IR.wav [--distance-m D] [--channel N] [--json]``: room-acoustic parameters.

Prints T20, T30, EDT, C50, C80 and D50 per octave band (125 Hz-8 kHz), and broadband C50 and
DRR (`rtverb.analysis.acoustics.measure`; measured IRs with a noise floor are handled). The onset is
the geometric direct path when ``--distance-m`` is given, else detected.

Multi-channel files: every channel is analyzed (one table per channel; with ``--json`` a list
of objects, each with a ``channel`` number, 1 = first) unless ``--channel N`` picks one. One
channel gives one JSON object with exactly the keys of `JSON_KEYS` (NaN becomes null).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from rtverb.analysis.acoustics import DIRECT_WINDOW_S, Metrics, measure, onset_index

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


class AnalyzeError(ValueError):
    """An impulse response file cannot be analyzed; the message names the problem and the fix."""


def read_ir(path: str | os.PathLike[str]) -> tuple[np.ndarray, float]:
    """Read an impulse response file: ((channels, frames) float32, sample rate in Hz).

    Raises:
        AnalyzeError: missing, not a file, unsupported, empty, unreadable, no frames, NaN/Inf.
    """
    from pedalboard.io import AudioFile, get_supported_read_formats

    path = Path(path)
    if not path.exists():
        raise AnalyzeError(f"{path}: no such file")
    if not path.is_file():
        raise AnalyzeError(f"{path}: not a file; give an impulse response audio file")
    formats = get_supported_read_formats()
    if path.suffix.lower() not in formats:
        raise AnalyzeError(
            f"{path}: unsupported file type {path.suffix or '(none)'!r}; "
            f"rtverb reads {', '.join(formats)}"
        )
    try:
        if path.stat().st_size == 0:
            raise AnalyzeError(f"{path}: the file is empty (0 bytes)")
        with AudioFile(str(path)) as f:
            sample_rate_hz = float(f.samplerate)
            ir = np.asarray(f.read(f.frames), dtype=np.float32)
    except AnalyzeError:
        raise
    except (ValueError, RuntimeError, OSError) as e:
        raise AnalyzeError(
            f"{path}: not a readable audio file (corrupt, truncated or not audio?): {e}"
        ) from None
    if ir.shape[-1] == 0:
        raise AnalyzeError(f"{path}: the file holds no audio frames")
    if not np.all(np.isfinite(ir)):
        raise AnalyzeError(f"{path}: the file contains NaN or Inf samples")
    return ir.reshape(-1, ir.shape[-1]), sample_rate_hz


def analyze(
    ir: np.ndarray,
    sample_rate_hz: float,
    distance_m: float | None = None,
    delay_samples: int = 0,
) -> Metrics:
    """Measure one channel (``(frames,)``); `AnalyzeError` if silent or the onset is impossible."""
    if not np.any(ir):
        raise AnalyzeError("is silent (all samples are zero)")
    if distance_m is not None:
        onset = onset_index(ir, sample_rate_hz, distance_m, delay_samples)
        if onset >= len(ir):
            raise AnalyzeError(
                f"the direct path at {distance_m:g} m arrives at {1e3 * onset / sample_rate_hz:.1f}"
                f" ms, after the end of the file ({1e3 * len(ir) / sample_rate_hz:.1f} ms); "
                "check --distance-m and --delay-samples"
            )
    return measure(ir, sample_rate_hz, distance_m, delay_samples)


def onset_warning(
    ir: np.ndarray, sample_rate_hz: float, distance_m: float, delay_samples: int
) -> str | None:
    """A warning when the file's direct sound is far from where the distance puts it."""
    geometric = onset_index(ir, sample_rate_hz, distance_m, delay_samples)
    detected = onset_index(ir, sample_rate_hz)
    if abs(geometric - detected) <= DIRECT_WINDOW_S * sample_rate_hz:
        return None
    return (
        f"the direct sound is detected at {1e3 * detected / sample_rate_hz:.1f} ms but "
        f"--distance-m {distance_m:g} puts it at {1e3 * geometric / sample_rate_hz:.1f} ms; "
        "C50, D50 and DRR use the geometric onset (omit --distance-m to use the detected one, "
        "or set --delay-samples to the file's latency)"
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
    except AnalyzeError as e:
        print(f"rtverb analyze: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        if len(results) == 1:
            output: Any = to_json(results[0][2])
        else:
            output = [{"channel": channel, **to_json(m)} for channel, _, m in results]
        print(json.dumps(output, indent=2, allow_nan=False))
        return 0
    duration_s = ir.shape[1] / sample_rate_hz
    onset = f"geometric, {args.distance_m:g} m" if args.distance_m is not None else "detected"
    for _, name, metrics in results:
        print_table(metrics, f"{name}: {duration_s:.2f} s at {sample_rate_hz:g} Hz, onset {onset}")
    return 0
