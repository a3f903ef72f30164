"""What `rtverb bench` measures: rtverb's per-block cost, against pedalboard (`measure`).

Drives `rtverb.Engine.process` block by block, as the live callback does, with
`pedalboard.Convolution` on the same IR and blocks interleaved in the same loop (same
conditions), then times blocks during IR swaps, an offline render, and checks accuracy against
`scipy.signal.fftconvolve`. Everything runs on this one thread, like an audio thread: numpy's
FFT is single-threaded and the hot path calls no BLAS.

By default blocks run back to back at normal priority: quick, and fair between the two, but
on a busy machine the OS preempts the loop for whole milliseconds and the tail figures (p99.9,
max, headroom) measure the machine's load. ``--realtime`` runs as a live audio thread does:
SCHED_FIFO where allowed, one block per block period (caches then start cold each block).
The command (arguments, report) is `rtverb.cli.bench`.
"""

from __future__ import annotations

import gc
import time
from typing import Any

import numpy as np

from rtverb.bench.timing import block_stats, median_us
from rtverb.dsp.convolver import Convolver
from rtverb.dsp.engine import Engine

#: Blocks processed before timing starts (plans, caches, the first periods of every stage).
WARMUP_BLOCKS = 300
#: The last warm-up blocks, timed to size the fixed reference work like a median rtverb block.
CALIBRATION_BLOCKS = 100
#: IR swaps timed per run.
SWAPS = 8


def measure(
    ir: np.ndarray,
    block_size: int,
    sample_rate_hz: float,
    seconds: float,
    rng: np.random.Generator,
    paced: bool = False,
    channels: int | None = None,
) -> dict[str, Any]:
    """Time one block size: steady blocks against pedalboard, swap blocks, offline, accuracy.

    ``ir``: (channels, taps), (1, taps) for one IR on every one of ``channels``, or a
    true-stereo (2, 2, taps) matrix: pedalboard then does the four paths as it must build
    them (`_PedalboardPaths`). ``paced``: one block per block period, as an audio device asks
    (else back to back). ``channels`` defaults to the IR's.
    """
    channels = channels or ir.shape[0]
    budget_us = block_size / sample_rate_hz * 1e6
    n = max(1000, round(seconds * sample_rate_hz / block_size))
    engine = Engine(
        ir,
        channels=channels,
        block_size=block_size,
        sample_rate_hz=sample_rate_hz,
        wet_db=0.0,
        dry_db=0.0,
        max_ir_s=max(12.0, ir.shape[-1] / sample_rate_hz),
    )
    can_pb = channels <= 2  # pedalboard convolves mono or stereo only
    x = rng.standard_normal((channels, block_size * 64)).astype(np.float32)
    timer = _Interleaved(
        engine,
        _pedalboard(ir, sample_rate_hz) if can_pb else None,
        [x[:, i * block_size : (i + 1) * block_size] for i in range(64)],
        sample_rate_hz,
        _Pacer(block_size / sample_rate_hz, paced),
    )
    timer.calibrate()
    # as `rtverb live` streams: the cyclic garbage collector frozen and paused (a collection
    # triggered by pedalboard's per-block arrays would otherwise land in someone's timing)
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        ours, theirs, floor = timer.run(n)
        swap_us = _swap_blocks(engine, ir, timer.blocks, timer.out, timer.pacer)
    finally:
        gc.enable()
        gc.unfreeze()
    rtverb_figures = (
        _rtverb_figures(engine, ours, swap_us, budget_us)
        | {"rtf": _offline_rtf(engine, x, sample_rate_hz, seconds)}
        | _accuracy(ir, channels, block_size, sample_rate_hz, rng, can_pb)
    )
    return {
        "config": {
            "block_size": block_size,
            "budget_us": budget_us,
            "blocks_timed": n,
            "partitions": engine.convolver.describe(),
        },
        "rtverb": rtverb_figures,
        "pedalboard": block_stats(theirs, budget_us) if can_pb else None,
        "machine_floor": block_stats(floor, budget_us),
    }


def _rtverb_figures(
    engine: Engine, ours: np.ndarray, swap_us: np.ndarray, budget_us: float
) -> dict[str, Any]:
    """rtverb's per-block figures, its swap blocks, load and the schedule's flatness."""
    ours_all = np.concatenate([ours, swap_us])
    figures = block_stats(ours, budget_us) | {
        "swap_block_max_us": float(swap_us.max()),
        "swap_block_mean_us": float(swap_us.mean()),
        "swap_blocks": len(swap_us),
        "swaps": SWAPS,
        "load_mean": float(ours.mean() / budget_us),
        "load_worst": float(ours_all.max() / budget_us),
        "over_budget_blocks": int(np.sum(ours_all > budget_us)),
    }
    figures["headroom"] = budget_us / figures["p999_us"]
    # The schedule's flatness, robust to the OS: the median cost of each block position in
    # the longest period; the worst position over the median block.
    period = engine.convolver.stages[-1].period_blocks
    position = (WARMUP_BLOCKS + np.arange(len(ours))) % period
    medians = [float(np.median(ours[position == p])) for p in range(period)]
    figures["worst_position_p50_us"] = max(medians)
    figures["period_blocks"] = period
    return figures


#: Who runs first in block i: rtverb (0), pedalboard (1), the fixed workload (2), in turn.
_ORDERS = ((0, 1, 2), (1, 2, 0), (2, 0, 1))


class _FixedWork:
    """The machine's own jitter: the same numpy work every call, as long as a median block.

    Timed interleaved with the engines, its tail (p99.9, max) is what this machine and its
    other load add to any code; rtverb's tail beyond it is rtverb's.
    """

    def __init__(self, target_us: float) -> None:
        self.a = np.ones((2, 1025), np.complex64)
        self.out = np.empty_like(self.a)
        self.reps = 8
        per_rep = median_us(self) / self.reps
        self.reps = max(1, round(target_us / per_rep))

    def __call__(self) -> None:
        for _ in range(self.reps):
            np.multiply(self.a, self.a, out=self.out)


class _Interleaved:
    """Times rtverb, pedalboard and a fixed workload block by block, each in turn first."""

    def __init__(
        self,
        engine: Engine,
        pb: Any,
        blocks: list[np.ndarray],
        sample_rate_hz: float,
        pacer: _Pacer,
    ) -> None:
        self.engine, self.pb, self.blocks = engine, pb, blocks
        self.sample_rate_hz, self.pacer = sample_rate_hz, pacer
        self.out = np.empty_like(blocks[0])
        for i in range(WARMUP_BLOCKS - CALIBRATION_BLOCKS):
            self._engine_block(i)
            self._pedalboard_block(i)
        self.fixed = _FixedWork(median_us(lambda: engine.process(blocks[0], self.out)))

    def calibrate(self) -> None:
        """Match the fixed work to rtverb's median block, timed in the same conditions."""
        ours, _, floor = self.run(CALIBRATION_BLOCKS)
        self.fixed.reps = max(1, round(self.fixed.reps * np.median(ours) / np.median(floor)))

    def run(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-block µs of rtverb, pedalboard (zeros without it) and the fixed work."""
        clock = time.perf_counter_ns
        times = np.zeros((3, count))
        work = (self._engine_block, self._pedalboard_block, lambda i: self.fixed())
        for i in range(count):
            self.pacer.wait()
            for who in _ORDERS[i % 3]:
                t0 = clock()
                work[who](i)
                times[who, i] = (clock() - t0) / 1e3
        return times[0], times[1], times[2]

    def _engine_block(self, i: int) -> None:
        self.engine.process(self.blocks[i % 64], self.out)

    def _pedalboard_block(self, i: int) -> None:
        if self.pb is not None:
            block = self.blocks[i % 64]
            self.pb.process(block, self.sample_rate_hz, buffer_size=block.shape[1], reset=False)


def _pedalboard(ir: np.ndarray, sample_rate_hz: float) -> Any:
    import pedalboard

    if ir.ndim == 3:
        return _PedalboardPaths(ir, sample_rate_hz)
    return pedalboard.Convolution(ir[0] if ir.shape[0] == 1 else ir, sample_rate=sample_rate_hz)


class _PedalboardPaths:
    """A true-stereo IR's four paths as pedalboard must build them: its plugins cannot route
    one channel into the other, so two stereo Convolutions, ``[h_LL, h_RR]`` on the input and
    ``[h_RL, h_LR]`` on the input with its channels swapped, summed (each one normalized by
    pedalboard: for timing, not for accuracy)."""

    def __init__(self, ir: np.ndarray, sample_rate_hz: float) -> None:
        import pedalboard

        direct, cross = np.stack([ir[0, 0], ir[1, 1]]), np.stack([ir[1, 0], ir[0, 1]])
        self.direct = pedalboard.Convolution(direct, sample_rate=sample_rate_hz)
        self.cross = pedalboard.Convolution(cross, sample_rate=sample_rate_hz)

    def process(self, block: np.ndarray, sample_rate_hz: float, **kwargs: Any) -> np.ndarray:
        a = self.direct.process(block, sample_rate_hz, **kwargs)
        b = self.cross.process(block[::-1], sample_rate_hz, **kwargs)
        return np.add(a, b, out=a)


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
    other = -ir[..., ::-1].copy()  # same length, a different room
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
    ir: np.ndarray,
    channels: int,
    block_size: int,
    sample_rate_hz: float,
    rng: np.random.Generator,
    with_pb: bool,
) -> dict[str, float]:
    """Max error x peak against scipy's fftconvolve and against pedalboard (gain undone)."""
    from scipy.signal import fftconvolve

    taps = ir.shape[-1]
    x = np.zeros((channels, taps + block_size + 4800), np.float32)
    x[:, :4800] = rng.standard_normal((channels, 4800))
    conv = Convolver(
        ir, block_size, sample_rate_hz, channels=channels, max_ir_s=max(12.0, taps / sample_rate_hz)
    )
    y = conv.process(x)[:, block_size:]  # drop the latency
    # a matrix: output o sums input i through ir[i, o]; else channel c through ir[c]
    paths = ir if ir.ndim == 3 else ir[:, None] * np.eye(channels, dtype=ir.dtype)[..., None]
    ref = np.stack(
        [
            sum(fftconvolve(x[i].astype(np.float64), paths[i, o])[: y.shape[1]]
                for i in range(channels))
            for o in range(channels)
        ]
    )  # fmt: skip
    peak = np.max(np.abs(ref))
    out = {"max_error_vs_fftconvolve": float(np.max(np.abs(y - ref)) / peak)}
    if with_pb and ir.ndim == 2:
        z = _pedalboard(ir, sample_rate_hz).process(
            x, sample_rate_hz, buffer_size=block_size, reset=False
        )[:, : y.shape[1]]
        # pedalboard scales each IR by 0.125 / its largest channel norm, summed in float32
        # (1% off for a 3 s IR): undo it with the least-squares gain.
        z = z.reshape(channels, -1).astype(np.float64)
        z *= np.vdot(z, ref) / np.vdot(z, z)
        out["max_error_vs_pedalboard"] = float(np.max(np.abs(z - ref)) / peak)
    return out
