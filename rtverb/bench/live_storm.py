"""Live audio under OSC load: ``python -m rtverb.bench.live_storm``.

Runs ``rtverb live`` (a looped tone, 48 kHz, block 256) on a JACK dummy server of its own name,
with a trivial JACK client on the same server in the same run (its xruns are the server's own
stalls), in three scenarios of equal length:

- quiet: no OSC traffic;
- valid: 60 room changes per second (size, source, scattering, surfaces, wet, listener);
- storm: the same plus 600 malformed datagrams per second.

Each prints xruns and late callbacks (rtverb's and the trivial client's), rtverb's worst
callback against the block, ``/rtverb/get`` round trips (p50/p99, 20 per second, in every
scenario) and knob-to-ear latency (p50) from rtverb's summary. ``--soak`` instead runs one long
run with a room change every 50 ms and reports callback exceptions and resident memory growth
(rtverb's processes, from the first to the last sample). ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from pedalboard.io import AudioFile
from pythonosc.osc_message_builder import build_msg

from rtverb.files import OutputError
from rtverb.live.report import clean_json, write_json_atomic

SR = 48000
BLOCK = 256
#: Valid room changes per second, malformed datagrams per second in the storm.
CHANGES_PER_S = 60
MALFORMED_PER_S = 600
#: /rtverb/get round trips per second, and how long one may take before it counts as lost, s.
GETS_PER_S = 20
GET_TIMEOUT_S = 1.0
#: Resident memory is compared from this many seconds (samples) into the run to its end.
RSS_SETTLE_S = 20
#: Room changes in the soak: one every this many seconds.
SOAK_PERIOD_S = 0.05
MALFORMED = [
    b"/rtverb/room/size/x\x00,f\x00\x00",  # a float declared, none given
    b"\xff" * 37,  # not OSC at all
    b"#bundle\x00" + b"\x00" * 8 + b"\x00\x00\x40\x00",  # an element longer than the bundle
    build_msg("/rtverb/nowhere", [1.0]).dgram,  # an unknown address
    build_msg("/rtverb/room/size/x", ["seven"]).dgram,  # a string for a number
]
_TRIVIAL = """
import sys, time, sounddevice as sd
n, worst = [0, 0], [0.0]
def cb(outdata, frames, t, status):
    t0 = time.perf_counter()
    n[0] += 1
    n[1] += bool(status.output_underflow)
    outdata.fill(0)
    worst[0] = max(worst[0], time.perf_counter() - t0)
with sd.OutputStream(device="system", samplerate=48000, blocksize=256, channels=2, callback=cb):
    time.sleep(float(sys.argv[1]))
print(n[0], n[1], worst[0])
"""


def _change(i: int) -> Any:
    phase = i / CHANGES_PER_S
    kind = i % 6
    if kind == 0:
        return build_msg("/rtverb/room/size/x", [7.0 + 2.0 * np.sin(phase)])
    if kind == 1:
        return build_msg("/rtverb/norm/source/position", [0.3 + 0.1 * np.sin(phase), 0.5, 0.4])
    if kind == 2:
        return build_msg("/rtverb/room/scattering", [0.2 + 0.1 * np.sin(phase)])
    if kind == 3:
        return build_msg("/rtverb/room/surface/ceiling", [0.3 + 0.2 * np.sin(phase)])
    if kind == 4:
        return build_msg("/rtverb/mix/wet_db", [-8.0 + 3.0 * np.sin(phase)])
    return build_msg("/rtverb/listener/position/y", [2.5 + np.sin(phase)])


class Traffic:
    """Sends changes (and malformed datagrams) at a fixed rate, and times /rtverb/get."""

    def __init__(self, port: int, changes_per_s: float, malformed_per_change: int) -> None:
        self.dest = ("127.0.0.1", port)
        self.changes_per_s, self.malformed = changes_per_s, malformed_per_change
        self.stop = threading.Event()
        self.sent = self.bad_sent = 0
        self.rtt_ms: list[float] = []
        self.lost = 0
        self._threads = [threading.Thread(target=self._gets, daemon=True)]
        if changes_per_s:
            self._threads.append(threading.Thread(target=self._changes, daemon=True))

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join()

    def _changes(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t0, i = time.perf_counter(), 0
        while not self.stop.is_set():
            sock.sendto(_change(i).dgram, self.dest)
            for k in range(self.malformed):
                sock.sendto(MALFORMED[(i + k) % len(MALFORMED)], self.dest)
            self.sent, self.bad_sent, i = self.sent + 1, self.bad_sent + self.malformed, i + 1
            time.sleep(max(0.0, t0 + i / self.changes_per_s - time.perf_counter()))
        sock.close()

    def _gets(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(GET_TIMEOUT_S)
        get = build_msg("/rtverb/get", ["room/size/x"]).dgram
        while not self.stop.wait(1 / GETS_PER_S):
            t0 = time.perf_counter()
            sock.sendto(get, self.dest)
            try:
                while not sock.recv(65536).startswith(b"/rtverb/room/size/x"):
                    pass
                self.rtt_ms.append((time.perf_counter() - t0) * 1e3)
            except (TimeoutError, ConnectionRefusedError):
                self.lost += 1
        sock.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (the audio and synthesis processes), MB."""
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        return float("nan")
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def run_scenario(
    env: dict[str, str], wav: Path, seconds: float, changes_per_s: float, malformed: int
) -> dict[str, Any]:
    """One ``rtverb live`` run under traffic, with a trivial client beside it."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        summary_path = Path(tmp) / "summary.json"
        cmd = [
            sys.executable, "-m", "rtverb", "live", "--input", str(wav), "--loop",
            "--device", "system", "--block", str(BLOCK), "--sample-rate", str(SR),
            "--osc-port", str(port), "--seconds", str(seconds), "--quiet",
            "--summary-json", str(summary_path),
        ]  # fmt: skip
        log_path = Path(tmp) / "live.log"  # a file: a pipe nobody reads would fill and block
        log_file = log_path.open("wb")
        live = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        traffic = Traffic(port, changes_per_s, malformed)
        time.sleep(3.0)  # rtverb starts (synthesis process, audio process)
        trivial = subprocess.Popen(
            [sys.executable, "-c", _TRIVIAL, str(seconds - 4.0)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        traffic.start()
        rss: list[float] = []
        while live.poll() is None:
            rss.append(_rss_mb(live.pid))
            time.sleep(1.0)
        traffic.join()
        out, _ = trivial.communicate(timeout=60)
        log_file.close()
        live_out = log_path.read_text(errors="replace")
        if not summary_path.exists():
            raise RuntimeError(f"rtverb live failed:\n{live_out[-2000:]}")
        summary = json.loads(summary_path.read_text())
    callbacks, xruns, worst_s = out.split()
    rtt = np.array(traffic.rtt_ms) if traffic.rtt_ms else np.array([np.nan])
    valid_rss = [r for r in rss if r == r]
    return {
        "seconds": seconds,
        "changes_sent": traffic.sent,
        "malformed_sent": traffic.bad_sent,
        "xruns": summary["xruns"],
        "late_callbacks": summary["late_callbacks"],
        "callback_exceptions": summary["callback_exceptions"],
        "worst_callback_ms": summary["worst_callback_ms"],
        "block_ms": summary["block_ms"],
        "trivial_xruns": int(xruns),
        "trivial_callbacks": int(callbacks),
        "trivial_worst_callback_ms": round(float(worst_s) * 1e3, 3),
        "get_p50_ms": round(float(np.percentile(rtt, 50)), 2),
        "get_p99_ms": round(float(np.percentile(rtt, 99)), 2),
        "gets_lost": traffic.lost,
        "knob_to_ear_p50_ms": summary["knob_to_ear_ms"]["p50_ms"],
        "room_changes": summary["room_changes"],
        "osc_errors": summary["osc"]["errors"],
        # from the first sample after start-up (the synthesis process loads the model and
        # frees its buffers in the first seconds) to the last
        "rss_first_mb": round(valid_rss[RSS_SETTLE_S], 1)
        if len(valid_rss) > RSS_SETTLE_S
        else None,
        "rss_last_mb": round(valid_rss[-1], 1) if valid_rss else None,
    }


def _jack(name: str) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    proc = subprocess.Popen(
        ["jackd", "-n", name, "-d", "dummy", "-r", str(SR), "-p", str(BLOCK)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1"}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        probe = subprocess.run(["jack_lsp"], env=env, capture_output=True, timeout=10)
        if probe.returncode == 0 and b"system:playback_1" in probe.stdout:
            return proc, env
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the JACK dummy server did not come up in 15 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtverb.bench.live_storm", description=__doc__)
    parser.add_argument("--seconds", type=float, default=90.0, help="per scenario (default 90)")
    parser.add_argument(
        "--soak", action="store_true", help="one long run, a room change every 50 ms"
    )
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="default 600")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = parser.parse_args(argv)
    if args.json and not Path(args.json).parent.is_dir():
        parser.error(f"--json {args.json}: the folder does not exist; create it first")
    name = f"rtverb_storm_{os.getpid()}"
    jack, env = _jack(name)
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        "server": f"JACK dummy {name}, {SR} Hz, block {BLOCK}",
    }
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "tone.wav"
            t = np.arange(SR) / SR
            with AudioFile(str(wav), "w", SR, 1, bit_depth=32) as f:
                f.write((0.25 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)[None])
            if args.soak:
                scenarios = {"soak": (args.soak_seconds, 1 / SOAK_PERIOD_S, 0)}
            else:
                per_change = MALFORMED_PER_S // CHANGES_PER_S
                scenarios = {
                    "quiet": (args.seconds, 0, 0),
                    "valid": (args.seconds, CHANGES_PER_S, 0),
                    "storm": (args.seconds, CHANGES_PER_S, per_change),
                }
            for label, (seconds, rate, malformed) in scenarios.items():
                print(f"{label}: {seconds:g} s ...", flush=True)
                results[label] = run_scenario(env, wav, seconds, rate, malformed)
                print(f"  {json.dumps(results[label])}", flush=True)
    finally:
        jack.send_signal(signal.SIGTERM)
        try:
            jack.wait(10)
        except subprocess.TimeoutExpired:
            jack.kill()
    _print(results)
    if args.json:
        try:
            write_json_atomic(args.json, clean_json(results))  # NaN (no replies) -> null
        except OutputError as e:
            print(f"live_storm: --json: {e}", file=sys.stderr)
            return 2
    return 0


def _print(results: dict[str, Any]) -> None:
    print(f"\n{results['server']}; {results['machine']}")
    head = "scenario  xruns late (trivial: xruns)  worst ms / block  get p50/p99 ms  knob p50 ms"
    print(head)
    for label in ("quiet", "valid", "storm", "soak"):
        r = results.get(label)
        if r is None:
            continue
        print(
            f"{label:8s}  {r['xruns']:5d} {r['late_callbacks']:4d} ({r['trivial_xruns']:5d})"
            f"        {r['worst_callback_ms']:5.2f} / {r['block_ms']:.2f}"
            f"     {r['get_p50_ms']:6.2f} / {r['get_p99_ms']:6.2f}"
            f"   {r['knob_to_ear_p50_ms']}"
        )
        if label == "soak":
            print(
                f"soak: {r['callback_exceptions']} callback exceptions, resident memory "
                f"{r['rss_first_mb']} -> {r['rss_last_mb']} MB, {r['changes_sent']} changes"
            )


if __name__ == "__main__":
    raise SystemExit(main())
