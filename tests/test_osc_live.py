"""End to end on the JACK dummy server, with liblo's own tools (issue 14): ``oscdump``
subscribes through the handshake (``oscsend`` answers the nonce of the challenge it printed),
`rtverb live` refuses a preset path sent with ``oscsend``, and the error reaches ``oscdump``."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg

#: Start-up (imports, the synthesis process) can take many seconds on a busy 2-core machine.
STARTUP_TIMEOUT_S = 60.0
#: How long the subscriber waits for the errors to arrive, s.
DUMP_TIMEOUT_S = 15.0


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_answer(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            sock.sendto(build_msg("/rtverb/get", ["room/size/x"]).dgram, ("127.0.0.1", port))
            try:
                if OscMessage(sock.recv(65536)).address == "/rtverb/room/size/x":
                    return
            except TimeoutError:
                continue
    pytest.fail(f"rtverb live did not answer OSC within {STARTUP_TIMEOUT_S:g} s")


def _oscsend(port: int, *message: str) -> None:
    subprocess.run(["oscsend", "127.0.0.1", str(port), *message], check=True, timeout=10)


def _wait_for_line(lines: list[str], fragment: str) -> str:
    deadline = time.monotonic() + DUMP_TIMEOUT_S
    while time.monotonic() < deadline:
        found = [x for x in lines if fragment in x]
        if found:
            return found[0]
        time.sleep(0.1)
    pytest.fail(f"oscdump printed no {fragment!r} within {DUMP_TIMEOUT_S:g} s: {lines}")


@pytest.mark.slow
def test_preset_paths_are_refused_and_errors_reach_a_subscriber(jack_server, tmp_path: Path):
    if shutil.which("oscsend") is None or shutil.which("oscdump") is None:
        pytest.skip("liblo-tools (oscsend, oscdump) are not installed")
    osc_port, dump_port = _free_udp_port(), _free_udp_port()
    dump = subprocess.Popen(
        ["oscdump", "-L", str(dump_port)], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(dump.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()
    env = {**jack_server, "RTVERB_PRESETS_DIR": str(tmp_path / "presets")}
    cmd = [
        sys.executable, "-m", "rtverb", "live", "--device", "system", "--synth", "analytic",
        "--osc-port", str(osc_port), "--seconds", "120", "--quiet",
    ]  # fmt: skip
    live = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path
    )
    evil = tmp_path / "evil" / "x.toml"
    try:
        _wait_for_answer(osc_port)
        _oscsend(osc_port, "/rtverb/subscribe", "i", str(dump_port))
        # oscdump prints "<time tag> /rtverb/confirm ii <port> <nonce>"
        port, nonce = _wait_for_line(lines, "/rtverb/confirm ii").split()[-2:]
        assert port == str(dump_port)
        _oscsend(osc_port, "/rtverb/subscribe", "ii", port, nonce)
        _wait_for_line(lines, "/rtverb/subscribed")
        _oscsend(osc_port, "/rtverb/preset/save", "s", str(evil))
        _oscsend(osc_port, "/rtverb/preset/load", "s", "/dev/zero")
        _oscsend(osc_port, "/rtverb/preset/load", "s", "../presets/classroom")
        deadline = time.monotonic() + DUMP_TIMEOUT_S
        while time.monotonic() < deadline and sum("bad preset name" in x for x in lines) < 3:
            time.sleep(0.1)
        _oscsend(osc_port, "/rtverb/preset/save", "s", "take_1")  # a name works
        deadline = time.monotonic() + DUMP_TIMEOUT_S
        while time.monotonic() < deadline and not (tmp_path / "presets" / "take_1.toml").exists():
            time.sleep(0.1)
    finally:
        live.send_signal(signal.SIGINT)
        output, _ = live.communicate(timeout=30)
        dump.terminate()
        dump.wait(10)
        reader.join(10)
    text = " ".join(output.decode(errors="replace").split())  # log lines wrap on the console
    assert live.returncode == 0, text
    assert "accepting senders in 127.0.0.0/8, ::1/128 (this machine only)" in text
    assert "--osc-allow" in text  # the startup line says how to let a tablet in
    errors = [x for x in lines if "/rtverb/error" in x]
    assert sum("bad preset name" in x for x in errors) == 3, lines
    assert any("/rtverb/subscribed" in x for x in lines), lines
    assert not evil.exists() and not evil.parent.exists()
    assert (tmp_path / "presets" / "take_1.toml").exists()
