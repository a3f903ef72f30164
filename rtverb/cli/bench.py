"""``rtverb bench``: does rtverb keep up on this machine? Per-block cost, against pedalboard.

The arguments, the IR, the scheduling and the report; the measuring is `rtverb.bench.engine`.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rtverb.bench.engine import measure
from rtverb.bench.report import report, save_plot
from rtverb.bench.timing import chain_block_cost, machine, versions
from rtverb.files import OutputError, write_failure
from rtverb.offline.chain import ChainError, parse_chain

SWEEP_BLOCKS = (64, 128, 256, 512, 1024)
#: SCHED_FIFO priority of --realtime (JACK's default for clients is around 70-80).
REALTIME_PRIORITY = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ir-seconds",
        type=float,
        default=3.0,
        metavar="S",
        help="length of a synthetic IR (decaying noise; default 3)",
    )
    parser.add_argument(
        "--ir",
        type=Path,
        metavar="FILE",
        help="an IR file instead (wav/flac/aiff/mp3/ogg, or .npy)",
    )
    parser.add_argument("--channels", type=int, default=2, help="channels (default 2)")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument(
        "--ir-channels",
        type=int,
        metavar="N",
        help="IR channels: 1 (one IR on every channel) or --channels (one per channel; default)",
    )
    shape.add_argument(
        "--true-stereo",
        action="store_true",
        help="a true-stereo (2 inputs, 2 outputs, taps) IR; pedalboard does its four paths as "
        "it must build them (two stereo Convolutions, one on the swapped input)",
    )
    parser.add_argument(
        "--sample-rate",
        type=float,
        default=48000.0,
        metavar="HZ",
        help="sample rate in Hz (default 48000)",
    )
    parser.add_argument("--block", type=int, default=256, help="block size in frames")
    parser.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        metavar="S",
        help="audio timed per block size (default 10)",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help=f"measure blocks {', '.join(map(str, SWEEP_BLOCKS))}; print a table",
    )
    parser.add_argument(
        "--plot",
        nargs="?",
        const="rtverb-bench.png",
        metavar="PNG",
        help="with --sweep, plot cost per block size (needs matplotlib)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="time as an audio thread runs: SCHED_FIFO priority where allowed, one block per "
        "block period (takes --seconds of wall time per block size)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the IR and the input")
    parser.add_argument("--pre", metavar="CHAIN", help="also time this plugin chain per block")
    parser.add_argument("--post", metavar="CHAIN", help="also time this plugin chain per block")


def run(args: argparse.Namespace) -> int:
    rng = np.random.default_rng(args.seed)
    try:
        ir, source, chains, pyplot = _prepare(args, rng)
    except _Refused as e:
        print(f"rtverb bench: {e}", file=sys.stderr)
        return 2
    config = {
        "sample_rate_hz": args.sample_rate,
        "channels": args.channels,
        "ir_shape": list(ir.shape),
        "ir_taps": ir.shape[-1],
        "ir_s": ir.shape[-1] / args.sample_rate,
        "ir": source,
        "seconds": args.seconds,
        "machine": machine(),
        "versions": versions(),
        "threads": 1,
        "scheduling": "normal priority, blocks back to back",
    }
    restore = None
    if args.realtime:
        config["scheduling"], restore = _enter_realtime()
    try:
        results = _measure_all(args, ir, rng, chains)
    finally:
        if restore is not None:
            restore()
    if args.json:
        if args.sweep:
            print(json.dumps({"config": config, "sweep": results}, indent=2))
        else:
            print(json.dumps({"config": config | results[0].pop("config"), **results[0]}, indent=2))
    else:
        print(report(config, results))
    if pyplot is not None:
        try:
            save_plot(pyplot, results, args.plot)
        except OutputError as e:
            print(f"rtverb bench: error: {e}", file=sys.stderr)
            return 2
        if not args.json:
            print(f"plot: {args.plot}")
    return 0


class _Refused(Exception):
    """rtverb bench cannot run with these arguments; the message says why and what to do."""


def _prepare(
    args: argparse.Namespace, rng: np.random.Generator
) -> tuple[np.ndarray, str, dict[str, str], Any]:
    """The IR and where it came from, the chains to time, and pyplot when --plot asks for it."""
    if args.channels < 1 or args.block < 1 or args.sample_rate <= 0 or args.seconds <= 0:
        raise _Refused("channels, block, sample rate and seconds must be positive")
    try:
        ir, source = load_ir(args, rng)
    except (OSError, ValueError) as e:
        raise _Refused(str(e)) from None
    chains = {k: v for k, v in (("pre", args.pre), ("post", args.post)) if v}
    try:
        for text in chains.values():
            parse_chain(text)
    except ChainError as e:
        raise _Refused(str(e)) from None
    if not args.plot:
        return ir, source, chains, None
    if not Path(args.plot).parent.is_dir():
        missing = FileNotFoundError(errno.ENOENT, "no such folder")
        raise _Refused(f"error: {write_failure(Path(args.plot), missing)}")
    try:  # an optional extra: imported only when asked for
        import matplotlib

        matplotlib.use("Agg")
        return ir, source, chains, importlib.import_module("matplotlib.pyplot")
    except ImportError:
        raise _Refused("--plot needs matplotlib: pip install 'rtverb[plot]'") from None


def _measure_all(
    args: argparse.Namespace, ir: np.ndarray, rng: np.random.Generator, chains: dict[str, str]
) -> list[dict[str, Any]]:
    results = []
    for block in SWEEP_BLOCKS if args.sweep else (args.block,):
        if not args.json:
            print(f"measuring block {block} ...", file=sys.stderr, flush=True)
        results.append(
            measure(ir, block, args.sample_rate, args.seconds, rng, args.realtime, args.channels)
        )
        if chains:  # the plugins around the reverb, streamed as the live callback runs them
            results[-1]["chains"] = {
                k: chain_block_cost(v, block, args.sample_rate, args.channels, args.seconds)
                for k, v in chains.items()
            }
    return results


def _enter_realtime() -> tuple[str, Callable[[], None] | None]:
    """Switch this thread to SCHED_FIFO (as audio threads run); how, and how to undo it."""
    paced = ", one block per block period"
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
    except (AttributeError, OSError) as e:
        return f"normal priority (SCHED_FIFO refused: {e}){paced}", None
    return f"SCHED_FIFO priority {REALTIME_PRIORITY}{paced}", lambda: os.sched_setscheduler(
        0, policy, param
    )


def load_ir(args: argparse.Namespace, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """The IR as (IR channels, taps) or (2, 2, taps) float32, and where it came from."""
    ir_channels = args.channels if args.ir_channels is None else args.ir_channels
    if ir_channels not in (1, args.channels):
        raise ValueError(f"--ir-channels {ir_channels}: give 1 or --channels ({args.channels})")
    if args.true_stereo and args.channels != 2:
        raise ValueError(f"--true-stereo needs --channels 2, got {args.channels}")
    if args.ir is None:
        if not 0 < args.ir_seconds <= 60:
            raise ValueError(f"--ir-seconds: expected 0..60 s, got {args.ir_seconds}")
        taps = round(args.ir_seconds * args.sample_rate)
        t = np.arange(taps) / args.sample_rate
        decay = 10 ** (-3 * t / max(0.2, 0.5 * args.ir_seconds))  # -60 dB at half the length
        shape = (2, 2) if args.true_stereo else (ir_channels,)
        ir = rng.standard_normal((*shape, taps)) * decay
        kind = "true stereo " if args.true_stereo else ""
        return ir.astype(np.float32), f"synthetic {kind}decaying noise, {args.ir_seconds:g} s"
    path: Path = args.ir
    if path.suffix == ".npy":
        ir = np.load(path)
    else:
        from pedalboard.io import AudioFile

        with AudioFile(str(path)) as f:
            ir = f.read(f.frames)
            if f.samplerate != args.sample_rate:
                raise ValueError(
                    f"{path}: {f.samplerate:g} Hz, but --sample-rate is {args.sample_rate:g}"
                )
    ir = np.atleast_2d(np.asarray(ir, np.float32))
    if args.true_stereo:  # LL, LR, RL, RR as `rtverb rir` writes them
        if ir.shape[0] != 4:
            raise ValueError(f"{path}: {ir.shape[0]} channels; --true-stereo takes 4 (LL LR RL RR)")
        return np.ascontiguousarray(ir.reshape(2, 2, -1)), str(path)
    if ir.shape[0] not in (1, args.channels):
        raise ValueError(f"{path}: {ir.shape[0]} channels; --channels is {args.channels}")
    return np.ascontiguousarray(np.broadcast_to(ir, (ir_channels, ir.shape[1]))), str(path)
