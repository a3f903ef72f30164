"""`rtverb bench`: does rtverb keep up on this machine? Per-block cost, against pedalboard.

Drives `rtverb.Engine.process` block by block, as the live callback does, with
`pedalboard.Convolution` on the same IR and blocks interleaved in the same loop (same
conditions), then times blocks during IR swaps, an offline render, and checks accuracy against
`scipy.signal.fftconvolve`. Everything runs on this one thread, like an audio thread: numpy's
FFT is single-threaded and the hot path calls no BLAS.

By default blocks run back to back at normal priority: quick, and fair between the two, but
on a busy machine the OS preempts the loop for whole milliseconds and the tail figures (p99.9,
max, headroom) measure the machine's load. ``--realtime`` runs as a live audio thread does:
SCHED_FIFO where allowed, one block per block period (caches then start cold each block).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import rtverb
from rtverb.bench.render import chain_block_cost
from rtverb.bench.report import report, save_plot, stats
from rtverb.dsp.convolver import Convolver
from rtverb.dsp.engine import Engine
from rtverb.offline.chain import ChainError, parse_chain

#: Blocks processed before timing starts (plans, caches, the first periods of every stage).
WARMUP_BLOCKS = 300
#: The last warm-up blocks, timed to size the fixed reference work like a median rtverb block.
CALIBRATION_BLOCKS = 100
#: IR swaps timed per run.
SWAPS = 8
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
    if args.channels < 1 or args.block < 1 or args.sample_rate <= 0 or args.seconds <= 0:
        print(
            "rtverb bench: channels, block, sample rate and seconds must be positive",
            file=sys.stderr,
        )
        return 2
    rng = np.random.default_rng(args.seed)
    try:
        ir, source = load_ir(args, rng)
    except (OSError, ValueError) as e:
        print(f"rtverb bench: {e}", file=sys.stderr)
        return 2
    chains = {k: v for k, v in (("pre", args.pre), ("post", args.post)) if v}
    try:
        for text in chains.values():
            parse_chain(text)
    except ChainError as e:
        print(f"rtverb bench: {e}", file=sys.stderr)
        return 2
    plot_module: Any = None
    if args.plot:
        try:  # an optional extra: imported only when asked for
            import matplotlib

            matplotlib.use("Agg")
            plot_module = importlib.import_module("matplotlib.pyplot")
        except ImportError:
            print(
                "rtverb bench: --plot needs matplotlib: pip install 'rtverb[plot]'", file=sys.stderr
            )
            return 2
    config = {
        "sample_rate_hz": args.sample_rate,
        "channels": args.channels,
        "ir_taps": ir.shape[1],
        "ir_s": ir.shape[1] / args.sample_rate,
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
    if args.plot and plot_module is not None:
        save_plot(plot_module, results, args.plot)
        if not args.json:
            print(f"plot: {args.plot}")
    return 0


def _measure_all(
    args: argparse.Namespace, ir: np.ndarray, rng: np.random.Generator, chains: dict[str, str]
) -> list[dict[str, Any]]:
    results = []
    for block in SWEEP_BLOCKS if args.sweep else (args.block,):
        if not args.json:
            print(f"measuring block {block} ...", file=sys.stderr, flush=True)
        results.append(measure(ir, block, args.sample_rate, args.seconds, rng, args.realtime))
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
    """The IR as (channels, taps) float32, and where it came from."""
    if args.ir is None:
        if not 0 < args.ir_seconds <= 60:
            raise ValueError(f"--ir-seconds: expected 0..60 s, got {args.ir_seconds}")
        taps = round(args.ir_seconds * args.sample_rate)
        t = np.arange(taps) / args.sample_rate
        decay = 10 ** (-3 * t / max(0.2, 0.5 * args.ir_seconds))  # -60 dB at half the length
        ir = rng.standard_normal((args.channels, taps)) * decay
        return ir.astype(np.float32), f"synthetic decaying noise, {args.ir_seconds:g} s"
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
    if ir.shape[0] not in (1, args.channels):
        raise ValueError(f"{path}: {ir.shape[0]} channels; --channels is {args.channels}")
    return np.ascontiguousarray(np.broadcast_to(ir, (args.channels, ir.shape[1]))), str(path)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_avg": [round(x, 2) for x in load],
        "system": f"{platform.system()} {platform.release()}",
    }


def versions() -> dict[str, str]:
    import pedalboard
    import scipy

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pedalboard": pedalboard.__version__,
        "rtverb": rtverb.__version__,
    }


def measure(
    ir: np.ndarray,
    block: int,
    sample_rate_hz: float,
    seconds: float,
    rng: np.random.Generator,
    paced: bool = False,
) -> dict[str, Any]:
    """Time one block size: steady blocks against pedalboard, swap blocks, offline, accuracy.

    ``paced``: one block per block period, as an audio device asks (else back to back).
    """
    channels = ir.shape[0]
    budget_us = block / sample_rate_hz * 1e6
    n = max(1000, round(seconds * sample_rate_hz / block))
    max_ir_s = max(12.0, ir.shape[1] / sample_rate_hz)
    engine = Engine(
        ir,
        channels=channels,
        block_size=block,
        sample_rate_hz=sample_rate_hz,
        wet_db=0.0,
        dry_db=0.0,
        max_ir_s=max_ir_s,
    )
    can_pb = channels <= 2  # pedalboard convolves mono or stereo only
    pb = _pedalboard(ir, sample_rate_hz) if can_pb else None
    x = rng.standard_normal((channels, block * 64)).astype(np.float32)
    blocks = [x[:, i * block : (i + 1) * block] for i in range(64)]
    out = np.empty((channels, block), np.float32)
    for i in range(WARMUP_BLOCKS - CALIBRATION_BLOCKS):
        engine.process(blocks[i % 64], out)
        if pb is not None:
            pb.process(blocks[i % 64], sample_rate_hz, buffer_size=block, reset=False)
    fixed = _FixedWork(_median_us(lambda: engine.process(blocks[0], out)))
    clock, pacer = time.perf_counter_ns, _Pacer(block / sample_rate_hz, paced)

    def interleaved(count: int) -> tuple[np.ndarray, ...]:
        """Per-block µs of rtverb, pedalboard and the fixed work, each in turn first."""
        times = np.zeros((3, count))
        for i in range(count):
            pacer.wait()
            b = blocks[i % 64]
            for who in _ORDERS[i % 3]:
                t0 = clock()
                if who == 0:
                    engine.process(b, out)
                elif who == 1:
                    if pb is not None:
                        pb.process(b, sample_rate_hz, buffer_size=block, reset=False)
                else:
                    fixed()
                times[who, i] = (clock() - t0) / 1e3
        return tuple(times)

    # the fixed work's size, matched to rtverb's median block in the same conditions
    ours, _, floor = interleaved(CALIBRATION_BLOCKS)
    fixed.reps = max(1, round(fixed.reps * np.median(ours) / np.median(floor)))
    # as `rtverb live` streams: the cyclic garbage collector frozen and paused (a collection
    # triggered by pedalboard's per-block arrays would otherwise land in someone's timing)
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        ours, theirs, floor = interleaved(n)
        swap_us = _swap_blocks(engine, ir, blocks, out, pacer)
    finally:
        gc.enable()
        gc.unfreeze()
    ours_all = np.concatenate([ours, swap_us])
    rtverb_stats = stats(ours, budget_us) | {
        "swap_block_max_us": float(swap_us.max()),
        "swap_block_mean_us": float(swap_us.mean()),
        "swap_blocks": len(swap_us),
        "swaps": SWAPS,
        "rtf": _offline_rtf(engine, x, sample_rate_hz, seconds),
        "headroom": budget_us / stats(ours, budget_us)["p999_us"],
        "load_mean": float(ours.mean() / budget_us),
        "load_worst": float(ours_all.max() / budget_us),
        "over_budget_blocks": int(np.sum(ours_all > budget_us)),
    }
    # The schedule's flatness, robust to the OS: the median cost of each block position in
    # the longest period; the worst position over the median block.
    period = engine.convolver.stages[-1].period_blocks
    position = (WARMUP_BLOCKS + np.arange(n)) % period
    medians = [float(np.median(ours[position == p])) for p in range(period)]
    rtverb_stats["worst_position_p50_us"] = max(medians)
    rtverb_stats["period_blocks"] = period
    rtverb_stats.update(_accuracy(ir, block, sample_rate_hz, rng, can_pb))
    return {
        "config": {
            "block_size": block,
            "budget_us": budget_us,
            "blocks_timed": n,
            "partitions": engine.convolver.describe(),
        },
        "rtverb": rtverb_stats,
        "pedalboard": stats(theirs, budget_us) if can_pb else None,
        "machine_floor": stats(floor, budget_us),
    }


#: Who runs first in block i: rtverb (0), pedalboard (1), the fixed workload (2), in turn.
_ORDERS = ((0, 1, 2), (1, 2, 0), (2, 0, 1))


def _median_us(fn: Callable[[], object], calls: int = 200) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e3)
    return float(np.median(times))


class _FixedWork:
    """The machine's own jitter: the same numpy work every call, as long as a median block.

    Timed interleaved with the engines, its tail (p99.9, max) is what this machine and its
    other load add to any code; rtverb's tail beyond it is rtverb's.
    """

    def __init__(self, target_us: float) -> None:
        self.a = np.ones((2, 1025), np.complex64)
        self.out = np.empty_like(self.a)
        self.reps = 8
        per_rep = _median_us(self) / self.reps
        self.reps = max(1, round(target_us / per_rep))

    def __call__(self) -> None:
        for _ in range(self.reps):
            np.multiply(self.a, self.a, out=self.out)


def _pedalboard(ir: np.ndarray, sample_rate_hz: float) -> Any:
    import pedalboard

    return pedalboard.Convolution(ir[0] if ir.shape[0] == 1 else ir, sample_rate=sample_rate_hz)


class _Pacer:
    """Waits for each next block to be due, like an audio device's clock (when ``on``)."""

    def __init__(self, period_s: float, on: bool) -> None:
        self.period_s, self.on, self.due = period_s, on, time.perf_counter()

    def wait(self) -> None:
        if self.on:
            self.due += self.period_s
            delay = self.due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:  # fell behind: carry on, no burst to catch up
                self.due = time.perf_counter()


def _swap_blocks(
    engine: Engine, ir: np.ndarray, blocks: list[np.ndarray], out: np.ndarray, pacer: _Pacer
) -> np.ndarray:
    """Times of every block from `set_ir` until the crossfade ends, over `SWAPS` swaps."""
    times: list[float] = []
    other = -ir[:, ::-1].copy()  # same length, a different room
    for k in range(SWAPS):
        engine.set_ir(other if k % 2 == 0 else ir)  # prepared here, on the "control" thread
        i = 0
        while engine.convolver.swapping or i == 0:
            pacer.wait()
            t0 = time.perf_counter_ns()
            engine.process(blocks[i % 64], out)
            times.append((time.perf_counter_ns() - t0) / 1e3)
            i += 1
        for _ in range(7 * k % 13):  # let swaps start at different phases of the periods
            pacer.wait()
            engine.process(blocks[0], out)
    return np.array(times)


def _offline_rtf(engine: Engine, x: np.ndarray, sample_rate_hz: float, seconds: float) -> float:
    """Seconds of compute per second of audio, rendering one long buffer (a file)."""
    audio = np.tile(x, (1, max(1, round(min(seconds, 10.0) * sample_rate_hz / x.shape[1]))))
    t0 = time.perf_counter()
    engine.process(audio)
    return (time.perf_counter() - t0) / (audio.shape[1] / sample_rate_hz)


def _accuracy(
    ir: np.ndarray, block: int, sample_rate_hz: float, rng: np.random.Generator, with_pb: bool
) -> dict[str, float]:
    """Max error x peak against scipy's fftconvolve and against pedalboard (gain undone)."""
    from scipy.signal import fftconvolve

    channels, taps = ir.shape
    x = np.zeros((channels, taps + block + 4800), np.float32)
    x[:, :4800] = rng.standard_normal((channels, 4800))
    conv = Convolver(ir, block, sample_rate_hz, max_ir_s=max(12.0, taps / sample_rate_hz))
    y = conv.process(x)[:, block:]  # drop the latency
    ref = np.stack(
        [fftconvolve(a.astype(np.float64), h)[: y.shape[1]] for a, h in zip(x, ir, strict=True)]
    )
    peak = np.max(np.abs(ref))
    out = {"max_error_vs_fftconvolve": float(np.max(np.abs(y - ref)) / peak)}
    if with_pb:
        z = _pedalboard(ir, sample_rate_hz).process(
            x, sample_rate_hz, buffer_size=block, reset=False
        )[:, : y.shape[1]]
        # pedalboard scales each IR by 0.125 / its largest channel norm, summed in float32
        # (1% off for a 3 s IR): undo it with the least-squares gain.
        z = z.reshape(channels, -1).astype(np.float64)
        z *= np.vdot(z, ref) / np.vdot(z, z)
        out["max_error_vs_pedalboard"] = float(np.max(np.abs(z - ref)) / peak)
    return out
