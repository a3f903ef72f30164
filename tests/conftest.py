"""Fixtures shared by test modules: a clocked JACK dummy audio server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

#: The JACK dummy server's rate and period, frames.
JACK_SR = 48000
JACK_BLOCK = 256


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
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
