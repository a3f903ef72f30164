"""Shared by the test modules: a clocked JACK dummy audio server (a fixture), and the signals
and oracles tests import (``from conftest import decaying_noise``): `decaying_noise`, the
stand-in room IR of the convolver, engine, render, live and capture tests, and
`convolve_reference`, their float64 `scipy.signal.fftconvolve` oracle.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from typing import Any

import numpy as np
import pytest
from scipy.signal import fftconvolve

#: The JACK dummy server's rate and period, frames.
JACK_SR = 48000
JACK_BLOCK = 256


def stop_process(proc: subprocess.Popen, sig: int, timeout_s: float) -> None:
    """Send ``sig`` to a process we started; kill it if it is still there after ``timeout_s``."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def jack_server():
    """A clocked JACK dummy server (48 kHz, 256 frames) of its own name; stopped by PID.

    Yields the environment a client needs to reach it."""
    if shutil.which("jackd") is None:
        pytest.skip("jackd is not installed (Debian: apt-get install jackd2 libportaudio2)")
    name = f"rtverb_test_{os.getpid()}_{time.monotonic_ns()}"
    proc = subprocess.Popen(
        ["jackd", "-n", name, "-d", "dummy", "-r", str(JACK_SR), "-p", str(JACK_BLOCK)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1"}
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # ready when a client can connect
            probe = subprocess.run(["jack_lsp"], env=env, capture_output=True, timeout=10)
            if probe.returncode == 0 and b"system:playback_1" in probe.stdout:
                break
            assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
            time.sleep(0.2)
        else:
            pytest.fail("the JACK dummy server did not come up in 15 s")
        yield env
    finally:
        stop_process(proc, signal.SIGTERM, 10)


#: The rate the shared signals assume unless told otherwise, Hz.
SAMPLE_RATE_HZ = 48000


def decaying_noise(
    taps: int,
    *,
    channels: int | None = None,
    rt60_s: float = 1.0,
    sample_rate_hz: float = SAMPLE_RATE_HZ,
    seed: int | np.random.Generator = 0,
    gain: float = 1.0,
    direct: bool = False,
) -> np.ndarray:
    """Gaussian noise decaying 60 dB in ``rt60_s``, float32: (taps,), or (channels, taps).

    ``seed``: a seed or a generator to draw from; ``direct``: the first tap is 1 (a unit direct
    sound before the tail).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    shape = (taps,) if channels is None else (channels, taps)
    t = np.arange(taps) / sample_rate_hz
    ir = gain * rng.standard_normal(shape) * 10.0 ** (-3.0 * t / rt60_s)
    if direct:
        ir[..., 0] = 1.0
    return ir.astype(np.float32)


def convolve_reference(
    x: np.ndarray,
    ir: np.ndarray,
    *,
    wet_gain: float = 1.0,
    dry_gain: float = 0.0,
    latency: int = 0,
    full: bool = False,
) -> np.ndarray:
    """The float64 oracle: ``wet_gain * (x * ir) + dry_gain * x``, delayed by ``latency``.

    ``x``: (channels, frames); ``ir``: (taps,) for every channel or (channels, taps). The result
    is as long as ``x``, or with ``full`` as long as the whole convolution (plus ``latency``).
    """
    x = np.atleast_2d(x)
    irs = np.broadcast_to(np.atleast_2d(ir), (x.shape[0], ir.shape[-1]))
    y = wet_gain * np.stack(
        [
            fftconvolve(c.astype(np.float64), h.astype(np.float64))
            for c, h in zip(x, irs, strict=True)
        ]
    )
    y[:, : x.shape[1]] += dry_gain * x
    y = np.concatenate([np.zeros((x.shape[0], latency)), y], axis=1)
    return y if full else y[:, : x.shape[1]]


def process_in_calls(processor: Any, x: np.ndarray, calls: list[int]) -> np.ndarray:
    """Feed ``x`` (channels, frames) through ``processor.process(block, out)`` in calls of the
    given sizes (cycled; 0 allowed); the output, NaN where nothing was written."""
    out = np.full_like(x, np.nan)
    i = k = 0
    while i < x.shape[1]:
        n = min(calls[k % len(calls)], x.shape[1] - i)
        processor.process(x[:, i : i + n], out[:, i : i + n])
        i, k = i + n, k + 1
    return out
