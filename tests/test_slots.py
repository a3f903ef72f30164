"""The IR hand-over to the audio process: shared-memory slots and a generation word."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rtverb.dsp.convolver import Convolver
from rtverb.live.slots import SLOTS, IrSlots, SlotReader, SlotWriter, checksum

SR = 48000
BLOCK = 256
MAX_IR_S = 1.0
#: How long the writer publishes as fast as it can, seconds.
STORM_S = 3.0


def _convolver() -> Convolver:
    return Convolver(np.ones(10, np.float32), BLOCK, SR, channels=2, max_ir_s=MAX_IR_S)


def _ir(gen: int) -> np.ndarray:
    """IR number ``gen``: its length and content differ from its neighbours'; every third one
    is a true-stereo matrix (2 inputs, 2 outputs)."""
    taps = 1000 + (gen * 7919) % (int(MAX_IR_S * SR) - 1000)
    shape = (2, 2, taps) if gen % 3 == 2 else (1, taps)
    rng = np.random.default_rng(gen)
    return rng.standard_normal(shape) * np.exp(-np.arange(taps) / 3000.0)


def _reader(name: str) -> None:
    """The callback's code in another process: poll, play, release; and between blocks, check
    every slot it still reads against the checksum the writer stored with it. Told the last
    generation on stdin, it stops once it has taken it and prints its figures."""
    conv = _convolver()
    slots = IrSlots(conv.stages, 2, conv.max_taps, name=name)
    reader = SlotReader(slots, conv)
    x, out = np.zeros((2, BLOCK), np.float32), np.zeros((2, BLOCK), np.float32)
    taken_gen, flags = [-1] * SLOTS, np.zeros(SLOTS, np.int64)
    taken = checks = bad = 0
    last = None
    os.set_blocking(sys.stdin.fileno(), False)
    while last is None or reader.seen // SLOTS != last:
        seen = reader.seen
        reader.poll()
        if reader.seen != seen:
            taken_gen[reader.seen % SLOTS], taken = reader.seen // SLOTS, taken + 1
        conv.process(x, out)  # every stage crossfades from slot kernel to slot kernel
        flags.fill(0)
        conv.mark_in_use(flags)
        for slot in np.flatnonzero(flags):
            matrix, checks = slots.header[slot, 2], checks + 1
            kernel = (reader.matrix_kernels if matrix else reader.kernels)[slot]
            same = slots.header[slot, 0] == taken_gen[slot]
            if not same or checksum(kernel) != slots.checksum[slot]:
                bad += 1
        reader.release()
        if last is None and (line := sys.stdin.readline()):
            last = int(line)
    figures = {"taken": taken, "checks": checks, "bad": bad, "torn": reader.torn, "final": last}
    print(json.dumps(figures))


def test_a_reader_never_sees_a_half_written_slot_and_ends_on_the_last():
    conv = _convolver()
    slots = IrSlots(conv.stages, 2, conv.max_taps)
    writer = SlotWriter(slots)
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
    code += f"import test_slots; test_slots._reader({slots.name!r})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + STORM_S
        while time.monotonic() < deadline:  # as fast as slots come free
            writer.publish(_ir(writer.generation + 1))
        last = writer.generation
        out, _ = proc.communicate(f"{last}\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        slots.close()
    figures = json.loads(out)
    print(f"{last + 1} IRs published: {figures}")
    assert figures["bad"] == 0 and figures["torn"] == 0
    assert figures["final"] == last  # it took the last one
    assert figures["taken"] > 10  # it kept up with some of them (latest wins: not all)
