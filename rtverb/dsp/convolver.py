"""`Convolver`: streaming convolution with a room impulse response, non-uniform partitions.

The IR is cut into stages of uniformly partitioned overlap-save convolution. The head stage
has partitions of one block (latency: one block); each later stage has partitions
`rtverb.dsp.partition.PARTITION_RATIO` times longer (at most 4096 frames), so the long tail costs
few large FFTs instead of many small ones. A stage of partitions of L frames starts at tap 2L:
that leaves it one period of L frames to compute each result, and its input FFT, its
multiply-accumulate (MAC) and its inverse FFT are spread over the blocks of that period on a
fixed schedule, balanced across stages, so that no block does a whole stage's work.

The frequency-domain delay line (FDL) of every stage is sized for ``max_ir_s`` up front and
does not depend on the IR: `Convolver.set_ir` only prepares new partition spectra, and both
the old and the new IR read the same input history while they crossfade.
"""

from __future__ import annotations

import math
import time

import numpy as np

from rtverb.dsp.partition import Stage, chunk_cap, plan_stages, schedule

#: Default IR crossfade: short enough that a moving knob is heard within ~25 ms (the head
#: stage takes the next IR when its fade ends), long enough that a room change never clicks.
CROSSFADE_MS = 20.0
#: Complex values per partition below which one reduction beats row-by-row adds.
_REDUCE_BELOW = 2048

#: State bytes a reset zeroes per block (a memset of ~10 µs). A reset silences the output until
#: the whole state is zero: ~0.4 s for the default 12 s of IR at 48 kHz, block 256.
RESET_BYTES_PER_BLOCK = 256 * 1024


class Kernel:
    """A prepared IR: partition spectra per stage and the schedule of their work.

    Each stage's spectra are (partitions, channels, bins) complex64: one IR for every channel
    is repeated per channel, because a broadcast in the hot path's multiply would allocate.
    They are scaled by the FFT length, as the input spectra are taken with ``norm="forward"``
    (a float32 scale: numpy's default would cast through float64 buffers). A matrix IR
    (inputs, outputs, taps) holds (outputs, partitions, inputs, bins): each output sums its
    product with the inputs' delay line over partitions and inputs (``matrix``).

    ``spectra`` may be views of longer buffers (e.g. shared memory sized for the longest IR):
    the schedule only reads the ``used`` partitions of each stage. ``slot`` names such a buffer
    (-1: none), for `Convolver.mark_in_use`.
    """

    __slots__ = ("taps", "spectra", "used", "ifft_phase", "mac", "matrix", "slot")

    def __init__(
        self,
        spectra: list[np.ndarray],
        taps: int,
        stages: tuple[Stage, ...],
        channels: int,
        *,
        matrix: bool = False,
        slot: int = -1,
    ) -> None:
        self.spectra, self.taps, self.matrix, self.slot = spectra, taps, matrix, slot
        self.used = tuple(st.used_partitions(taps) for st in stages)
        self.ifft_phase, self.mac = schedule(stages, self.used, channels)

    @staticmethod
    def shapes(
        stages: tuple[Stage, ...], channels: int, taps: int, matrix: bool = False
    ) -> list[tuple[int, ...]]:
        """The spectra's shapes for an IR of ``taps`` taps."""
        shapes: list[tuple[int, ...]] = []
        for st in stages:
            used, bins = st.used_partitions(taps), st.partition_frames + 1
            shapes.append((channels, used, channels, bins) if matrix else (used, channels, bins))
        return shapes

    @classmethod
    def prepare(
        cls,
        ir: np.ndarray,
        stages: tuple[Stage, ...],
        channels: int,
        *,
        into: list[np.ndarray] | None = None,
        slot: int = -1,
    ) -> Kernel:
        """Partition and transform ``ir``: (1 or ``channels``, taps) or (inputs, outputs,
        taps) float64, as `check_ir` returns it.

        The spectra are written into ``into`` (one array per stage, of `shapes` for the longest
        IR: the leading partitions are used) when given, else into new arrays.
        """
        matrix = ir.ndim == 3
        paths = ir.reshape(-1, ir.shape[-1])  # (channels, taps) or (inputs x outputs, taps)
        taps = paths.shape[1]
        spectra = []
        for s, shape in enumerate(cls.shapes(stages, channels, taps, matrix)):
            size = stages[s].partition_frames
            used = shape[1] if matrix else shape[0]
            start = stages[s].start_tap
            seg = np.zeros((paths.shape[0], used * size))
            part = paths[:, start : start + used * size]
            seg[:, : part.shape[1]] = part
            parts = seg.reshape(paths.shape[0], used, size).transpose(1, 0, 2)
            spec = np.fft.rfft(parts, n=2 * size, axis=-1) * (2 * size)  # (parts, paths, bins)
            if matrix:
                full = spec.reshape(used, channels, channels, size + 1).transpose(2, 0, 1, 3)
            else:
                full = np.broadcast_to(spec, shape)
            if into is None:
                out = np.empty(shape, np.complex64)
            else:
                out = into[s][:, :used] if matrix else into[s][:used]
            np.copyto(out, full, casting="same_kind")
            spectra.append(out)
        return cls(spectra, taps, stages, channels, matrix=matrix, slot=slot)


def check_ir(
    ir: np.ndarray, channels: int, max_taps: int, sample_rate_hz: float, max_ir_s: float
) -> np.ndarray:
    """The IR as (1 or ``channels``, taps) or (inputs, outputs, taps) float64, or a ValueError
    naming what is wrong (``channels`` 0: any count)."""
    if not isinstance(ir, np.ndarray):
        raise ValueError(f"ir: expected a numpy array, got {type(ir).__name__}")
    if ir.dtype not in (np.float32, np.float64):
        raise ValueError(f"ir: expected float32 or float64 samples, got {ir.dtype}")
    if ir.ndim not in (1, 2, 3):
        raise ValueError(
            "ir: expected shape (taps,), (channels, taps) or (inputs, outputs, taps), "
            f"got {ir.shape}"
        )
    ir2 = ir.reshape(1, -1) if ir.ndim == 1 else ir
    if ir2.size == 0:
        raise ValueError(f"ir: empty (shape {ir.shape}); give at least one tap")
    if ir.ndim == 3 and (ir.shape[0] != ir.shape[1] or (channels and ir.shape[0] != channels)):
        want = channels or "channels"
        raise ValueError(
            f"ir: a matrix IR is (inputs, outputs, taps) with inputs = outputs = the "
            f"convolver's channels; give ({want}, {want}, taps), got {ir.shape}"
        )
    if ir.ndim < 3 and channels and ir2.shape[0] not in (1, channels):
        raise ValueError(
            f"ir: {ir2.shape[0]} channels, but the convolver has {channels}; "
            f"give (taps,), ({channels}, taps) or ({channels}, {channels}, taps)"
        )
    taps = ir2.shape[-1]
    if taps > max_taps:
        raise ValueError(
            f"ir: {taps} taps ({taps / sample_rate_hz:.2f} s) is longer than "
            f"max_ir_s = {max_ir_s:g} s ({max_taps} taps)"
        )
    if not np.isfinite(ir2).all():
        raise ValueError("ir: contains NaN or Inf")
    return ir2.astype(np.float64)


def _sum_rows(rows: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = rows.sum(axis=0)`` without allocating (at least two rows)."""
    if rows[0].size < _REDUCE_BELOW:  # many short rows: one reduction
        np.add.reduce(rows, axis=0, out=out)
    else:  # few long rows: numpy reduces those slowly, add them one by one
        np.add(rows[0], rows[1], out=out)
        for row in rows[2:]:
            np.add(out, row, out=out)


def check_block(block: np.ndarray, channels: int, out: np.ndarray | None) -> np.ndarray:
    """Check a (channels, frames) float32 block and ``out``; returns ``out`` or a new array."""
    if not isinstance(block, np.ndarray) or block.dtype != np.float32:
        raise ValueError(f"block: expected float32 samples, got {getattr(block, 'dtype', block)}")
    if block.ndim != 2 or block.shape[0] != channels:
        raise ValueError(f"block: expected shape ({channels}, frames), got {block.shape}")
    if out is None:
        return np.empty(block.shape, np.float32)
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != block.shape:
        raise ValueError(f"out: expected float32 of shape {block.shape}, got {out!r:.60}")
    return out


class _StageState:
    """Preallocated buffers of one stage: its FDL, scratch, and per-slot sums and outputs."""

    __slots__ = ("stage", "fdl", "pos", "depth", "tmp", "acc", "acc_tmp", "obuf", "lag")

    def __init__(self, stage: Stage, channels: int) -> None:
        bins, size = stage.partition_frames + 1, stage.partition_frames
        self.stage = stage
        self.depth = stage.partitions
        self.fdl = np.zeros((2 * self.depth, channels, bins), np.complex64)  # mirrored
        self.pos = 0
        self.tmp = np.zeros((chunk_cap(stage), channels, bins), np.complex64)
        self.acc = [np.zeros((channels, bins), np.complex64) for _ in range(2)]
        self.acc_tmp = np.zeros((channels, bins), np.complex64)
        self.obuf = [[np.zeros((channels, 2 * size), np.float32) for _ in range(2)] for _ in "ab"]
        self.lag = 0 if stage.start_tap == 0 else 1  # the head uses its result at once

    def buffers(self) -> tuple[np.ndarray, ...]:
        """Every buffer of the stage (what a reset zeroes)."""
        return (self.fdl, self.tmp, *self.acc, self.acc_tmp, *self.obuf[0], *self.obuf[1])

    def take_spectrum(self, hist: np.ndarray, end: int, piece: int) -> None:
        """FFT of the 2L input frames ending at ``end`` into the FDL (newest first).

        With ``fft_pieces`` > 1, piece k does channel k (piece 0 opens the new FDL slot).
        """
        size = self.stage.partition_frames
        if piece == 0:
            self.pos = (self.pos - 1) % self.depth
        rows = slice(None) if self.stage.fft_pieces == 1 else slice(piece, piece + 1)
        spectrum = self.fdl[self.pos, rows]
        frames = hist[rows, end - 2 * size : end]
        # norm="forward" scales by a float32 1/n (the default's int 1 casts via float64 buffers);
        # numpy's stubs only know float64 outputs
        np.fft.rfft(frames, axis=-1, norm="forward", out=spectrum)  # type: ignore[arg-type]
        self.fdl[self.pos + self.depth, rows] = spectrum

    def compute(self, tick: int, phase: int, slot: int, kernel: Kernel, s: int) -> None:
        """This block's share of kernel's MAC and inverse FFT for stage ``s``."""
        chunk = kernel.mac[s][phase]
        if chunk is not None:
            p0, p1, first = chunk
            base = self.pos if phase >= self.stage.fft_phase else (self.pos - 1) % self.depth
            x, acc = self.fdl[base + p0 : base + p1], self.acc[slot]
            dst = acc if first else self.acc_tmp
            if kernel.matrix:
                self._matrix_mac(x, kernel.spectra[s], p0, p1, dst)
            elif p1 - p0 == 1:
                np.multiply(x[0], kernel.spectra[s][p0], out=dst)
            else:
                prod = np.multiply(x, kernel.spectra[s][p0:p1], out=self.tmp[: p1 - p0])
                _sum_rows(prod, dst)
            if not first:
                np.add(acc, dst, out=acc)
        piece = phase - kernel.ifft_phase[s]
        if 0 <= piece < self.stage.fft_pieces:
            rows = slice(None) if self.stage.fft_pieces == 1 else slice(piece, piece + 1)
            out = self.obuf[slot][(tick // self.stage.period_blocks + self.lag) % 2]
            spectrum, n = self.acc[slot][rows], 2 * self.stage.partition_frames
            np.fft.irfft(spectrum, n, out=out[rows])  # type: ignore[arg-type]

    def _matrix_mac(
        self, x: np.ndarray, spectra: np.ndarray, p0: int, p1: int, dst: np.ndarray
    ) -> None:
        """dst[o] = sum over partitions p0..p1 and inputs i of x[p, i] spectra[o, p, i]."""
        prod = self.tmp[: p1 - p0]
        rows = prod.reshape(-1, prod.shape[-1])  # (partitions x inputs, bins): a view
        for o in range(spectra.shape[0]):
            np.multiply(x, spectra[o, p0:p1], out=prod)
            _sum_rows(rows, dst[o])

    def output(self, tick: int, phase: int, slot: int, block: int) -> np.ndarray:
        """This block's frames of the stage's current result for ``slot``."""
        start = self.stage.partition_frames + phase * block
        return self.obuf[slot][(tick // self.stage.period_blocks) % 2][:, start : start + block]


class Convolver:
    """Streaming FFT convolution of (channels, frames) float32 audio with an IR.

    ``ir`` is (taps,) for one IR on every channel, (channels, taps) for one per channel, or
    a true-stereo matrix (inputs, outputs, taps) with inputs = outputs = ``channels``: output
    o is the sum over inputs i of input i convolved with ``ir[i, o]`` (input spectra taken
    once, one multiply-add per path, one inverse FFT per output). float32 or float64, finite,
    at most ``max_ir_s`` long. ``channels`` defaults to the IR's (first) channel count; `set_ir`
    may change between the three shapes.

    Latency: ``latency_samples == block_size``. Output frame n is the convolution's frame
    n - block_size, whatever the sizes of the `process` calls (1, 65, 8193 or 0 frames).

    Real-time contract of `process` (the audio thread), in every configuration (a mono IR on
    any channel count, every stage active, during crossfades and resets):

    - with ``out`` given, no array is allocated: every buffer is made in the constructor for
      ``max_ir_s``, the IR's spectra are prepared at the shape the multiply uses, and the
      FFTs write into the state through numpy's public ``out=`` (numpy >= 2; pocketfft keeps
      a small scratch of its own). numpy still makes and frees small Python objects (views,
      ufunc iterators: a few kB at once); tests/test_live.py measures both;
    - no locks, no waiting, no I/O; the cost of each block is bounded: a stage's work is
      spread over its period, during an IR crossfade it is at most twice the usual, and a
      `reset` zeroes `RESET_BYTES_PER_BLOCK` per block. The audio thread never frees a kernel
      (`set_ir` does, on its thread);
    - IR changes arrive through `set_ir` from any other thread; `process` and `reset` are
      called from one thread at a time (the audio thread). Python threads share the GIL:
      a busy control thread delays the audio thread by up to `sys.getswitchinterval()`
      (5 ms by default; live use wants ~0.5 ms).
    """

    def __init__(
        self,
        ir: np.ndarray,
        block_size: int,
        sample_rate_hz: float = 48000.0,
        *,
        channels: int | None = None,
        crossfade_ms: float = CROSSFADE_MS,
        max_ir_s: float = 12.0,
    ) -> None:
        if not isinstance(block_size, int | np.integer) or block_size < 1:
            raise ValueError(f"block_size: expected a positive integer, got {block_size!r}")
        for name, value in (("sample_rate_hz", sample_rate_hz), ("max_ir_s", max_ir_s)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive number, got {value!r}")
        if not (math.isfinite(crossfade_ms) and crossfade_ms >= 0):
            raise ValueError(f"crossfade_ms: expected a number >= 0, got {crossfade_ms!r}")
        self.block_size = block = int(block_size)
        self.sample_rate_hz = float(sample_rate_hz)
        self.max_ir_s = float(max_ir_s)
        self.max_taps = max(1, round(max_ir_s * sample_rate_hz))
        self.channels = 0
        ir64 = self._check_ir(ir)
        if channels is None:
            channels = ir64.shape[0]
        if not isinstance(channels, int | np.integer) or channels < 1:
            raise ValueError(f"channels: expected a positive integer, got {channels!r}")
        self.channels = int(channels)
        ir64 = self._check_ir(ir)
        #: Frames between a frame going in and its convolution coming out.
        self.latency_samples = block
        self.stages = plan_stages(block, self.max_taps, self.channels)
        self._states = [_StageState(st, self.channels) for st in self.stages]
        self._keep = 3 * self.stages[-1].partition_frames + 2 * block
        self._hist = np.zeros((self.channels, 2 * self._keep + 16 * block), np.float32)
        self._in = np.zeros((self.channels, block), np.float32)
        self._tick_out = np.zeros((self.channels, block), np.float32)
        self._mix = np.zeros((self.channels, block), np.float32)
        self._zeros = np.zeros((self.channels, block), np.float32)
        self._fade_frames = round(crossfade_ms * sample_rate_hz / 1000.0)
        self._ramp = np.ones(self._fade_frames + block, np.float32)
        self._ramp[: self._fade_frames] = np.arange(1, self._fade_frames + 1) / max(
            1, self._fade_frames
        )
        kernel = self._pending = Kernel.prepare(ir64, self.stages, self.channels)
        self._held = [kernel]  # every kernel the audio thread may still use (see `set_ir`)
        n = len(self.stages)
        # Per stage: the kernel it plays (in its result slot ``_slot[s]``), the one fading in
        # (or None) and the ticks at which that one starts computing, fading and is done.
        self._cur: list[Kernel] = [kernel] * n
        self._nxt: list[Kernel | None] = [None] * n
        self._slot = [0] * n
        self._start, self._fade, self._done = [0] * n, [0] * n, [0] * n
        self._fade_ticks = -(-self._fade_frames // block)
        self._t, self._w, self._fill = 0, self._keep, 0
        #: Crossfades begun by the audio thread, and `time.perf_counter()` when the last began.
        self.swaps_started = 0
        self.last_swap_started_s = 0.0
        # The state as flat byte views, and the next one a reset in progress zeroes (None: no
        # reset under way) and where in it.
        buffers = [b for st in self._states for b in st.buffers()]
        buffers += [self._hist, self._in, self._tick_out]
        self._state = [b.reshape(-1).view(np.uint8) for b in buffers]
        self._clear_index: int | None = 0
        self._clear_offset = 0
        self._clear_step(math.inf)  # every page written now: no first-touch faults later

    # ---- control side (any thread) -----------------------------------------------------

    def _check_ir(self, ir: np.ndarray) -> np.ndarray:
        return check_ir(ir, self.channels, self.max_taps, self.sample_rate_hz, self.max_ir_s)

    def set_ir(self, ir: np.ndarray) -> None:
        """Prepare ``ir`` on this thread and publish it; the audio thread crossfades to it.

        Each stage of partitions takes it on its own, at the audio thread's next block or
        when that stage's crossfade under way ends (the latest IR wins), and crossfades
        linearly over ``crossfade_ms`` from the first block in which it has a whole result for
        the new IR: the head at once, a stage of L-frame partitions within two of its periods
        (2 x 4096 frames at most, 171 ms at 48 kHz). So the head follows a moving knob within
        one crossfade while the tail catches up. The old IR's tail keeps ringing meanwhile;
        the output then is exactly the new IR's. Invalid IRs raise ValueError and leave the
        convolver on its current IR.
        """
        kernel = Kernel.prepare(self._check_ir(ir), self.stages, self.channels)
        # Kernels the audio thread let go of are freed here, not there (a free of megabytes
        # can cost a system call): it never drops the last reference to one.
        live = {id(k) for k in (*self._cur, *self._nxt, self._pending)}
        self._held = [k for k in self._held if id(k) in live] + [kernel]
        self._pending = kernel

    def publish(self, kernel: Kernel) -> None:
        """Crossfade to ``kernel``, prepared elsewhere (e.g. into shared memory, see
        `rtverb.live.slots`); like `set_ir` otherwise. Its owner keeps it unchanged while
        `mark_in_use` flags it. Any thread, the audio thread included (no allocation)."""
        self._pending = kernel

    def mark_in_use(self, flags: np.ndarray) -> None:
        """Set ``flags[kernel.slot]`` to 1 for every slotted kernel the audio thread may read
        (current, fading in, or waiting); ``flags`` is not cleared first."""
        for cur, nxt in zip(self._cur, self._nxt, strict=True):
            if cur.slot >= 0:
                flags[cur.slot] = 1
            if nxt is not None and nxt.slot >= 0:
                flags[nxt.slot] = 1
        if self._pending.slot >= 0:
            flags[self._pending.slot] = 1

    def describe(self) -> str:
        """The partition scheme, e.g. ``8x256 | 6x1024 over 4 blocks | 34/139x4096 ...``."""
        parts = []
        for s, st in enumerate(self.stages):
            used = self._cur[s].used[s]
            count = f"{used}/{st.partitions}" if used < st.partitions else str(used)
            over = f" over {st.period_blocks} blocks" if st.period_blocks > 1 else ""
            parts.append(f"{count}x{st.partition_frames}{over}")
        return " | ".join(parts) + f" (used/allocated for {self.max_ir_s:g} s)"

    @property
    def swapping(self) -> bool:
        """Whether a new IR is waiting or being crossfaded in (in any stage)."""
        pending = self._pending
        return any(n is not None for n in self._nxt) or any(c is not pending for c in self._cur)

    def head_free_in_s(self) -> float:
        """Seconds until an IR published now would start to sound (the head stage's crossfade
        under way must end first); 0 if the head would take it at the next block."""
        if self._nxt[0] is None:
            return 0.0
        return max(0, self._done[0] - self._t) * self.block_size / self.sample_rate_hz

    # ---- audio side (one thread) -------------------------------------------------------

    @property
    def resetting(self) -> bool:
        """Whether a reset is under way (the output is silent until it ends)."""
        return self._clear_index is not None

    def reset(self) -> None:
        """Start silencing all state (input history, tails, fades); a waiting IR takes over.

        The audio thread zeroes `RESET_BYTES_PER_BLOCK` of state per block, so a reset costs
        no more than a block's usual work; meanwhile the output (and ``dry``) is silence and
        the input is dropped. The convolver then runs as a fresh one fed from there on.
        """
        self._clear_index, self._clear_offset = 0, 0

    def _clear_step(self, budget: float) -> None:
        """Zero up to ``budget`` bytes of the state a reset has not reached yet."""
        index, offset = self._clear_index, self._clear_offset
        assert index is not None
        while budget > 0 and index < len(self._state):
            flat = self._state[index]
            stop = int(min(flat.size, offset + budget))
            flat[offset:stop] = 0
            budget -= stop - offset
            index, offset = (index + 1, 0) if stop == flat.size else (index, stop)
        self._clear_index, self._clear_offset = index, offset
        if index < len(self._state):
            return
        self._clear_index = None
        for st in self._states:
            st.pos = 0
        self._t, self._w, self._fill = 0, self._keep, 0
        pending = self._pending
        if pending is not self._cur[0] or self._nxt[0] is not None:
            self.swaps_started += 1
            self.last_swap_started_s = time.perf_counter()
        for s in range(len(self.stages)):  # in place: no new list on the audio thread
            self._cur[s], self._nxt[s] = pending, None

    def process(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Convolve ``block`` (channels, frames) float32; returns ``out`` (written in place).

        Without ``out`` a new array is returned; the live callback passes ``out``.
        """
        out = check_block(block, self.channels, out)
        self.stream(block, out)
        return out

    def stream(self, block: np.ndarray, out: np.ndarray, dry: np.ndarray | None = None) -> None:
        """`process` without the checks; ``dry`` (optional) gets ``block`` delayed as ``out``.

        For callers that have checked ``block`` and ``out`` (the `Engine`).
        """
        size, fill, i, frames = self.block_size, self._fill, 0, block.shape[1]
        while i < frames:
            m = min(frames - i, size - fill)
            if self._clear_index is not None:  # a reset under way: silence, input dropped
                out[:, i : i + m] = 0
                if dry is not None:
                    dry[:, i : i + m] = 0
                fill, i = fill + m, i + m
                if fill == size:
                    self._clear_step(RESET_BYTES_PER_BLOCK)
                    fill = 0
                continue
            self._in[:, fill : fill + m] = block[:, i : i + m]
            out[:, i : i + m] = self._tick_out[:, fill : fill + m]
            if dry is not None:  # the last block's input: the history's newest frames
                start = self._w - size + fill
                dry[:, i : i + m] = self._hist[:, start : start + m]
            fill, i = fill + m, i + m
            if fill == size:
                self._tick()
                fill = 0
        self._fill = fill

    def _tick(self) -> None:
        """Convolve the block in ``_in`` into ``_tick_out``."""
        t, size, pending = self._t, self.block_size, self._pending
        hist, w = self._hist, self._w
        if w + size > hist.shape[1]:
            for row in hist:  # row by row: numpy would copy 2-D views it cannot prove apart
                row[: self._keep] = row[w - self._keep : w]
            w = self._keep
        hist[:, w : w + size] = self._in
        self._w = w = w + size
        out, first = self._tick_out, True
        for s, st in enumerate(self._states):
            phase = t % st.stage.period_blocks
            piece = phase - st.stage.fft_phase
            if 0 <= piece < st.stage.fft_pieces:
                st.take_spectrum(hist, w - (st.lag + phase) * size, piece)
            cur, nxt = self._cur[s], self._nxt[s]
            if nxt is not None and t >= self._done[s]:  # this stage's crossfade is over
                cur, nxt = nxt, None  # locals first: `_held` still holds the old kernel
                self._cur[s], self._nxt[s] = cur, None
                self._slot[s] = 1 - self._slot[s]
            if nxt is None and pending is not cur:
                nxt = self._attach(s, t, pending)
            if nxt is None:
                st.compute(t, phase, self._slot[s], cur, s)
                seg = st.output(t, phase, self._slot[s], size) if cur.used[s] else None
            else:
                seg = self._crossfade(st, s, t, phase, cur, nxt)
            if seg is not None:
                if first:
                    np.copyto(out, seg)
                else:
                    np.add(out, seg, out=out)
                first = False
        if first:
            out.fill(0)
        self._t = t + 1

    def _crossfade(
        self, st: _StageState, s: int, t: int, phase: int, cur: Kernel, nxt: Kernel
    ) -> np.ndarray:
        """Stage ``s``'s output while ``nxt`` takes over from ``cur``."""
        size, old_slot = self.block_size, self._slot[s]
        new_slot = 1 - old_slot
        st.compute(t, phase, old_slot, cur, s)
        if t >= self._start[s]:
            st.compute(t, phase, new_slot, nxt, s)
        old = st.output(t, phase, old_slot, size) if cur.used[s] else self._zeros
        if t < self._fade[s]:
            return old
        new = st.output(t, phase, new_slot, size) if nxt.used[s] else self._zeros
        k = (t - self._fade[s]) * size
        mix = self._mix
        np.subtract(new, old, out=mix)
        np.multiply(mix, self._ramp[k : k + size], out=mix)
        return np.add(mix, old, out=mix)

    def _attach(self, s: int, t: int, kernel: Kernel) -> Kernel:
        """Start stage ``s``'s crossfade to ``kernel`` once the stage has a whole result."""
        period, lag = self.stages[s].period_blocks, self._states[s].lag
        used = kernel.used[s]
        start = -(-t // period) * period if used else t
        fade = start + (period * lag if used else 0)
        self._nxt[s] = kernel
        self._start[s], self._fade[s], self._done[s] = start, fade, fade + self._fade_ticks
        if s == 0:  # the new room starts to sound: what knob-to-ear latency measures
            self.swaps_started += 1
            self.last_swap_started_s = time.perf_counter()
        return kernel
