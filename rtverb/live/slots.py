"""Prepared IRs handed to the audio process through shared memory, without locks or waiting.

`IrSlots` is one shared-memory block: ``SLOTS`` slots, each sized for the longest IR's partition
spectra (`rtverb.dsp.convolver.Kernel`), and a control area. The control process prepares an
IR straight into a free slot (`SlotWriter.publish`) and then publishes it by one 8-byte store of
``generation * SLOTS + slot``. The audio callback reads that word each block
(`SlotReader.poll`): a new value makes the convolver crossfade to a `Kernel` that is a view of
the slot. The latest published slot wins; IRs published in between are skipped.

A slot is never rewritten while the callback may read it. After each block the callback flags
the slots its convolver still reads (current, fading in, or waiting) and then acknowledges the
newest generation it has seen (`SlotReader.release`). The writer takes only a slot that holds a
generation the callback has acknowledged or passed (so it will never pick it up again), that is
not the latest published, and that is not flagged; it reads the acknowledgement before the flags,
the reverse of the order they are written in.
"""

from __future__ import annotations

import time
from multiprocessing import shared_memory

import numpy as np

from rtverb.dsp.convolver import Convolver, Kernel
from rtverb.dsp.partition import Schedule, Stage, schedule

#: Slots: the convolver reads at most two kernels per stage (three stages at block 256), plus
#: the one published and not yet taken.
SLOTS = 8
#: How long `SlotWriter.publish` waits for a free slot (the audio process frees one within a
#: tail crossfade, ~0.2 s) before it reports the audio process as stuck, seconds.
FREE_SLOT_WAIT_S = 2.0
#: Poll period of that wait, seconds.
FREE_SLOT_POLL_S = 0.001

# control words (int64): the latest published word, the callback's acknowledged generation
_LATEST, _ACK = 0, 1
_CONTROL_WORDS = 2
# slot header (int64): generation, taps, matrix IR or not; a float64 checksum of the spectra
_GEN, _TAPS, _MATRIX, _CHECKSUM = 0, 1, 2, 3
_HEADER_WORDS = 4


class IrSlots:
    """The shared memory: control words, in-use flags, slot headers and slot spectra.

    Args:
        stages: the convolver's partition stages (`Convolver.stages`).
        channels: the convolver's channel count.
        max_taps: the longest IR (`Convolver.max_taps`).
        name: attach to an existing block of that name (the audio process) instead of
            creating one (the control process, which unlinks it in `close`).
    """

    def __init__(
        self,
        stages: tuple[Stage, ...],
        channels: int,
        max_taps: int,
        name: str | None = None,
    ) -> None:
        self.stages, self.channels, self.max_taps = stages, channels, max_taps
        plain = Kernel.shapes(stages, channels, max_taps)
        matrix = Kernel.shapes(stages, channels, max_taps, matrix=True)
        slot_bytes = sum(8 * int(np.prod(shape)) for shape in matrix)  # the larger
        head = 8 * (_CONTROL_WORDS + SLOTS + SLOTS * _HEADER_WORDS)
        self._owner = name is None
        size = head + SLOTS * slot_bytes
        self.shm = shared_memory.SharedMemory(name=name, create=name is None, size=size)
        if not self._owner:
            untrack(self.shm)
        buf = self.shm.buf
        self.control = np.ndarray((_CONTROL_WORDS,), np.int64, buf)
        self.in_use = np.ndarray((SLOTS,), np.int64, buf, offset=8 * _CONTROL_WORDS)
        offset = 8 * (_CONTROL_WORDS + SLOTS)
        self.header = np.ndarray((SLOTS, _HEADER_WORDS), np.int64, buf, offset=offset)
        self.checksum = self.header[:, _CHECKSUM].view(np.float64)
        #: Per slot, one array per stage, for (channels, taps) IRs and for matrix IRs: two
        #: views of the same memory.
        self.spectra: list[list[np.ndarray]] = []
        self.matrix_spectra: list[list[np.ndarray]] = []
        for k in range(SLOTS):
            for shapes, views in ((plain, self.spectra), (matrix, self.matrix_spectra)):
                offset, arrays = head + k * slot_bytes, []
                for shape in shapes:
                    arrays.append(np.ndarray(shape, np.complex64, buf, offset=offset))
                    offset += 8 * int(np.prod(shape))
                views.append(arrays)
        if self._owner:
            self.control[_LATEST] = -1  # nothing published: the audio process plays its own IR
            self.control[_ACK] = -1
            self.header[:, _GEN] = -1

    @property
    def name(self) -> str:
        return self.shm.name

    def close(self) -> None:
        """Drop the views and the mapping; the creator also removes the block."""
        self.control = self.in_use = self.header = self.checksum = np.zeros(0, np.int64)
        self.spectra, self.matrix_spectra = [], []
        self.shm.close()
        if self._owner:
            self.shm.unlink()


def untrack(shm: shared_memory.SharedMemory) -> None:
    """Keep this process's resource tracker from removing a block it only attached to (Python
    < 3.13 tracks attached blocks too, and would unlink them when this process exits)."""
    from multiprocessing import resource_tracker

    resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]


def checksum(kernel: Kernel) -> float:
    """A float64 sum of the float32 parts of the kernel's used spectra."""
    total = 0.0
    for spectra, used in zip(kernel.spectra, kernel.used, strict=True):
        part = spectra[:, :used] if kernel.matrix else spectra[:used]
        total += float(part.view(np.float32).sum(dtype=np.float64))
    return total


class SlotWriter:
    """Prepares and publishes IRs (the control process, one thread)."""

    def __init__(self, slots: IrSlots) -> None:
        self.slots = slots
        self.generation = -1  #: the last generation published
        self._slot_gen = [-1] * SLOTS  # the generation written into each slot

    def publish(self, ir: np.ndarray) -> int:
        """Prepare ``ir`` (float64, as `rtverb.dsp.convolver.check_ir` returns it) into a free
        slot and publish it; returns its generation.

        Raises:
            TimeoutError: no slot came free within `FREE_SLOT_WAIT_S` (the audio process is
                not running its callback).
        """
        slots = self.slots
        slot = self._free_slot()
        gen = self.generation + 1
        into = (slots.matrix_spectra if ir.ndim == 3 else slots.spectra)[slot]
        kernel = Kernel.prepare(ir, slots.stages, slots.channels, into=into)
        slots.header[slot, _TAPS] = kernel.taps
        slots.header[slot, _MATRIX] = kernel.matrix
        slots.checksum[slot] = checksum(kernel)
        slots.header[slot, _GEN] = gen
        slots.control[_LATEST] = gen * SLOTS + slot  # the publishing store
        self._slot_gen[slot] = self.generation = gen
        return gen

    def _free_slot(self) -> int:
        slots = self.slots
        latest = int(slots.control[_LATEST])
        deadline = time.monotonic() + FREE_SLOT_WAIT_S
        while True:
            ack = int(slots.control[_ACK])  # before the flags: see the module docstring
            in_use = slots.in_use.copy()
            for k in range(SLOTS):
                never = self._slot_gen[k] < 0
                passed = self._slot_gen[k] <= ack and not in_use[k]
                if (never or passed) and (latest < 0 or k != latest % SLOTS):
                    return k
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no IR slot came free in {FREE_SLOT_WAIT_S:g} s: the audio callback "
                    f"has not run (acknowledged generation {ack}, published {latest // SLOTS})"
                )
            time.sleep(FREE_SLOT_POLL_S)


class SlotReader:
    """The audio callback's side: `poll` before each block, `release` after it.

    Builds one `Kernel` per slot over the slot's spectra, and the schedule of every IR length
    up front (~0.1 s), so taking a new IR allocates nothing.
    """

    def __init__(self, slots: IrSlots, convolver: Convolver) -> None:
        self.slots, self.convolver = slots, convolver
        stages, channels = slots.stages, slots.channels
        self.kernels = [Kernel(slots.spectra[k], 1, stages, channels, slot=k) for k in range(SLOTS)]
        self.matrix_kernels = [
            Kernel(slots.matrix_spectra[k], 1, stages, channels, matrix=True, slot=k)
            for k in range(SLOTS)
        ]
        # (used, schedule) of every IR length, keyed by the total partition count (each
        # stage's count grows with the taps, so the total tells them apart)
        self._plans: dict[int, tuple[tuple[int, ...], Schedule]] = {}
        for st in stages:
            for n in range(st.partitions + 1):
                edge = st.start_tap + n * st.partition_frames
                for taps in (edge, edge + 1):
                    taps = min(max(taps, 1), slots.max_taps)
                    used = tuple(stage.used_partitions(taps) for stage in stages)
                    if sum(used) not in self._plans:
                        plan = schedule.__wrapped__(stages, used, channels)
                        self._plans[sum(used)] = (used, plan)
        self.seen = -1  #: the latest word taken
        self.taken = 0  #: IRs taken
        self.torn = 0  #: slots whose header did not match the published word (never, if correct)
        self._flags = np.zeros(SLOTS, np.int64)
        self._stages = stages

    def poll(self) -> None:
        """Take the latest published IR, if it is new (audio thread, before the block)."""
        word = int(self.slots.control[_LATEST])
        if word == self.seen:
            return
        self.seen = word
        slot, gen = word % SLOTS, word // SLOTS
        if int(self.slots.header[slot, _GEN]) != gen:
            self.torn += 1
            return
        taps = int(self.slots.header[slot, _TAPS])
        matrix = self.slots.header[slot, _MATRIX]
        kernel = (self.matrix_kernels if matrix else self.kernels)[slot]
        total = 0
        for st in self._stages:
            total += st.used_partitions(taps)
        kernel.used, (kernel.ifft_phase, kernel.mac) = self._plans[total]
        kernel.taps = taps
        self.convolver.publish(kernel)
        self.taken += 1

    def release(self) -> None:
        """Flag the slots still read, then acknowledge (audio thread, after the block)."""
        flags = self._flags
        flags.fill(0)
        self.convolver.mark_in_use(flags)
        self.slots.in_use[:] = flags
        if self.seen >= 0:
            self.slots.control[_ACK] = self.seen // SLOTS
