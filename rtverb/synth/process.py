"""`SynthProcess`: synthesize impulse responses in a child process.

Python threads share one GIL. A room change synthesizes an IR in Python and numpy (features,
image sources, band filtering) for several milliseconds; run in the audio process, that work
holds the GIL the audio callback needs at the start of every block, and on a loaded machine the
callback then starts late (an xrun). In a child process it shares nothing with the audio
thread: the parent sends the `Room` (a few hundred bytes, pickled) and receives the IR as raw
float32 bytes, with the GIL released while it waits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from rtverb.room.room import Room

#: How long the child may take to start and load the model, seconds.
START_TIMEOUT_S = 120.0
#: How long one synthesis may take before the child is presumed stuck, seconds.
CALL_TIMEOUT_S = 30.0
#: The child's niceness: on a busy machine its CPU goes first to the audio process, including
#: the normal-priority threads (OSC, room worker) that may hold the GIL the callback waits for.
CHILD_NICENESS = 10


class SynthProcessError(RuntimeError):
    """The synthesis child failed to start, failed a synthesis, or died."""


class SynthProcess:
    """A callable ``(room, sample_rate_hz) -> ir`` that runs `rtverb.synth` in a child process.

    Args:
        kind: ``"model"`` (`rtverb.synth.synthesize`) or ``"analytic"``
            (`rtverb.synth.synthesize_analytic`).

    Raises:
        SynthProcessError: the child could not start or load the model (the message says why).
    """

    def __init__(self, kind: str = "model") -> None:
        if kind not in ("model", "analytic"):
            raise ValueError(f"kind must be 'model' or 'analytic', got {kind!r}")
        self.kind = kind
        self._lock = threading.Lock()  # one request at a time (the worker thread calls)
        # A fresh interpreter (not fork: this process runs audio threads; not multiprocessing's
        # spawn: it re-imports the parent's main script) talking over two pipes.
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rtverb.synth.process",
                kind,
                str(to_child_r),
                str(from_child_w),
            ],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._recv = Connection(from_child_r, writable=False)
        self._closed = False
        reply = self._receive(START_TIMEOUT_S, "start")
        if reply[0] != "ready":
            self.close()
            raise SynthProcessError(f"the synthesis process could not start: {reply[1]}")

    def __call__(self, room: Room, sample_rate_hz: int) -> np.ndarray:
        """Synthesize ``room``: mono (taps,) float32, exactly as `rtverb.synth` returns it."""
        with self._lock:
            try:
                self._send.send((room, int(sample_rate_hz)))
            except (OSError, ValueError) as e:
                raise SynthProcessError(f"the synthesis process is gone ({e})") from None
            reply = self._receive(CALL_TIMEOUT_S, "synthesis")
            if reply[0] != "ok":
                raise SynthProcessError(reply[1])
            data = self._recv.recv_bytes()
        return np.frombuffer(data, dtype=np.float32).reshape(reply[1])

    def _receive(self, timeout_s: float, what: str) -> tuple[Any, ...]:
        try:
            if not self._recv.poll(timeout_s):
                self.close()  # out of step with the child now: stop it
                raise SynthProcessError(
                    f"the synthesis process did not answer ({what}) in {timeout_s:g} s"
                )
            reply: tuple[Any, ...] = self._recv.recv()
        except (EOFError, OSError) as e:
            raise SynthProcessError(
                f"the synthesis process died (exit code {self._proc.poll()}; {e!r})"
            ) from None
        return reply

    def alive(self) -> bool:
        """Whether the child process runs."""
        return self._proc.poll() is None

    @property
    def exit_code(self) -> int | None:
        return self._proc.poll()

    def close(self) -> None:
        """Stop the child (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._send.send(None)
        except (OSError, ValueError):
            pass
        try:
            self._proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(2.0)
        self._send.close()
        self._recv.close()

    def __enter__(self) -> SynthProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve(requests: Connection, replies: Connection, kind: str) -> None:
    """The child: load the synthesizer once, then answer requests until told to stop."""
    warnings.simplefilter("ignore")  # the parent logs domain warnings itself
    try:
        os.nice(CHILD_NICENESS)
        from rtverb import synth

        if kind == "model":
            synth.default_synthesizer()  # load the model now: errors surface at start
            fn = synth.synthesize
        else:
            fn = synth.synthesize_analytic
        replies.send(("ready",))
    except Exception as e:
        replies.send(("error", f"{type(e).__name__}: {e}"))
        return
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        room, sample_rate_hz = request
        try:
            ir = np.ascontiguousarray(fn(room, sample_rate_hz), dtype=np.float32)
        except Exception as e:
            replies.send(("error", f"{type(e).__name__}: {e}"))
            continue
        replies.send(("ok", ir.shape))
        replies.send_bytes(ir.tobytes())


if __name__ == "__main__":
    _serve(
        Connection(int(sys.argv[2]), writable=False),
        Connection(int(sys.argv[3]), readable=False),
        sys.argv[1],
    )
