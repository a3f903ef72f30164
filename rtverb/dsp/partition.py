"""Partition plan of the `Convolver`: stage layout, and the schedule that spreads the work.

A stage of uniform partitions of L frames covers IR taps from 2L on (the head, of one block,
from 0). That gives it one period of L frames to compute each result, so its input FFT, its
multiply-accumulate (MAC) over partitions and its inverse FFT can be spread over the blocks
of that period. `plan_stages` lays out the stages for the longest IR; `schedule` decides,
for one IR, which block of each period does which part, so that no block spikes. Both use a
rough cost model (µs on a slow core) that only has to get the proportions right.
"""

from __future__ import annotations

import functools
import heapq
import math
from dataclasses import dataclass

import numpy as np

#: Each stage's partitions are this many times longer than the previous stage's.
PARTITION_RATIO = 4
#: Longest partition (FFT of twice this): a bigger FFT in one block would stand out.
MAX_PARTITION_FRAMES = 4096
#: Stages with partitions this long do their FFTs one channel per block.
SPLIT_FFT_FRAMES = 2048


@dataclass(frozen=True)
class Stage:
    """One uniform stage: partitions of ``partition_frames`` covering taps [start_tap, stop_tap).

    Its work repeats every ``period_blocks`` blocks; the input spectrum is taken in block
    ``fft_phase`` of the period, over ``fft_pieces`` blocks: 1, or one per channel.
    """

    partition_frames: int
    start_tap: int
    stop_tap: int
    period_blocks: int
    fft_phase: int
    fft_pieces: int = 1

    @property
    def partitions(self) -> int:
        return -(-(self.stop_tap - self.start_tap) // self.partition_frames)

    def used_partitions(self, taps: int) -> int:
        """How many partitions an IR of ``taps`` taps fills in this stage."""
        return max(0, -(-(min(taps, self.stop_tap) - self.start_tap) // self.partition_frames))


def _fft_cost(frames: int, channels: int) -> float:
    """Rough cost of one stage FFT or inverse FFT (µs on a slow core); only for balancing."""
    n = 2 * frames
    return 4.0 + 4.5e-4 * channels * n * math.log2(n)


def _mac_cost(frames: int, channels: int) -> float:
    """Rough cost of multiplying-accumulating one partition (µs); only for balancing."""
    return 1.5 + 1.2e-3 * channels * (frames + 1)


def plan_stages(block_size: int, max_taps: int, channels: int = 1) -> tuple[Stage, ...]:
    """The stage layout for IRs of up to ``max_taps`` taps, FFT phases staggered."""
    sizes = [(block_size, 0)]
    while True:
        size, start = sizes[-1]
        bigger = size * PARTITION_RATIO
        if bigger > max(MAX_PARTITION_FRAMES, block_size) or 2 * bigger >= max_taps:
            break
        sizes.append((bigger, 2 * bigger))
    k_max = sizes[-1][0] // block_size
    load = np.zeros(k_max)
    stages: list[Stage] = []
    for i in reversed(range(len(sizes))):
        size, start = sizes[i]
        stop = sizes[i + 1][1] if i + 1 < len(sizes) else max_taps
        period = size // block_size
        pieces = channels if size >= SPLIT_FFT_FRAMES and period >= 4 * channels else 1
        phase = 0
        if period > 1:  # in the first half of the period, on the least loaded blocks
            cost = _fft_cost(size, channels) / pieces
            worst = load.reshape(-1, period).max(axis=0)
            spans = [worst[p : p + pieces].max() for p in range(period // 2 - pieces + 1)]
            phase = int(np.argmin(spans))
            for k in range(pieces):
                load[phase + k :: period] += cost
        stages.append(Stage(size, start, max(stop, start + size), period, phase, pieces))
    return tuple(reversed(stages))


#: A MAC chunk: partitions [first, stop) and whether it starts the period's sum.
Chunk = tuple[int, int, bool]


#: Per stage: the block of its inverse FFT's first piece, and its MAC chunk in each block.
Schedule = tuple[tuple[int, ...], tuple[tuple[Chunk | None, ...], ...]]


@functools.lru_cache(maxsize=32)  # IRs of one length share one schedule (it takes ~5 ms)
def schedule(stages: tuple[Stage, ...], used: tuple[int, ...], channels: int) -> Schedule:
    """Spread each stage's MAC over its period, leaving room for its FFT and inverse FFT.

    Greedy on a cost model over the longest period, largest stage first: the inverse FFT goes
    in the second half of the period, where it leaves the lowest peak, and each partition
    goes to the block whose worst tick is least loaded. Blocks in phase order take partitions
    from the last down to the first, so partition 0 (the newest spectrum) follows the FFT.
    """
    k_max = stages[-1].period_blocks
    load = np.zeros(k_max)
    for st in stages[1:]:
        for k in range(st.fft_pieces):
            cost = _fft_cost(st.partition_frames, channels) / st.fft_pieces
            load[st.fft_phase + k :: st.period_blocks] += cost
    ifft_phase = [0] * len(stages)
    mac: list[list[Chunk | None]] = [[(0, used[0], True) if used[0] else None]]
    mac.extend([None] * st.period_blocks for st in stages[1:])
    for s in reversed(range(1, len(stages))):
        st, count, pieces = stages[s], used[s], stages[s].fft_pieces
        period, fft = st.period_blocks, _fft_cost(st.partition_frames, channels) / pieces
        if count == 0:
            ifft_phase[s] = period  # never: the stage has nothing to transform
            continue
        phase_load = load.reshape(-1, period).max(axis=0)
        unit, cap = _mac_cost(st.partition_frames, channels), chunk_cap(st)
        best: tuple[float, int, list[int]] | None = None
        for last in range(period // 2, period - pieces + 1):  # the inverse FFT's first block
            trial = phase_load.copy()
            trial[last : last + pieces] += fft
            counts = _spread(trial, count, unit, cap, last + 1)
            peak = float(np.max(trial + unit * np.array(counts)))
            if best is None or peak <= best[0]:
                best = (peak, last, counts)
        assert best is not None
        _, last, counts = best
        ifft_phase[s] = last
        for k in range(pieces):
            load[last + k :: period] += fft
        final = max(p for p in range(period) if counts[p])
        if final < st.fft_phase + pieces - 1:  # partition 0 must wait for this period's FFT
            counts[final] -= 1
            counts[last] += 1
        stop, first = count, True
        for p in range(period):
            if counts[p]:
                mac[s][p] = (stop - counts[p], stop, first)
                load[p::period] += counts[p] * unit
                stop, first = stop - counts[p], False
    return tuple(ifft_phase), tuple(tuple(chunks) for chunks in mac)


def _spread(load: np.ndarray, count: int, unit: float, cap: int, phases: int) -> list[int]:
    """How many of ``count`` equal units each of the first ``phases`` blocks takes (greedy)."""
    counts = [0] * len(load)
    heap = [(float(load[p]) + unit, p) for p in range(phases)]
    heapq.heapify(heap)
    for _ in range(count):
        cost, p = heapq.heappop(heap)
        counts[p] += 1
        if counts[p] < cap:
            heapq.heappush(heap, (cost + unit, p))
    return counts


def chunk_cap(stage: Stage) -> int:
    """Most partitions one block multiplies in a stage (sizes the scratch buffer)."""
    if stage.period_blocks == 1:
        return stage.partitions
    return -(-stage.partitions // (stage.period_blocks // 2)) + 1
