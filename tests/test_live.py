"""rtverb live: the ring buffers, the audio callback, command-line errors, and an integration run
against a real (JACK dummy) audio server with OSC room changes over UDP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import decaying_noise
from pedalboard.io import AudioFile
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg

from rtverb import cli
from rtverb.bench.live_storm import MALFORMED
from rtverb.dsp.engine import Engine
from rtverb.live.audio import CELLS, AudioProcess, _Callback
from rtverb.live.callback import XRUN_LOG, LiveSession
from rtverb.live.io import Ring
from rtverb.live.slots import IrSlots, SlotReader, SlotWriter
from rtverb.room.presets import load_preset
from rtverb.room.room import Room

SR = 48000
BLOCK = 256
TONE_HZ = 220.0
TONE_AMPLITUDE = 0.25
#: No click: the largest sample-to-sample step of the output may be at most this many times the
#: steepest step of a pure tone with the output's peak amplitude (peak * 2 pi f / fs). A steady
#: room, a crossfade between two rooms (20 ms) and a gain ramp (20 ms) stay under 2x; switching
#: IRs without a crossfade jumps by up to the peak itself, about 17x at 220 Hz.
MAX_JUMP_RATIO = 2.0


def status(**flags: bool) -> SimpleNamespace:
    return SimpleNamespace(**{"output_underflow": False, "input_overflow": False, **flags})


def tone(frames: int, channels: int = 1) -> np.ndarray:
    t = np.arange(frames) / SR
    x = (TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
    return np.repeat(x[None], channels, axis=0)


def jump_ratio(y: np.ndarray) -> float:
    """Largest sample-to-sample step over the steepest step of a tone at the output's peak."""
    peak = float(np.max(np.abs(y)))
    return float(np.max(np.abs(np.diff(y, axis=-1)))) / (peak * 2 * np.pi * TONE_HZ / SR)


def noise_ir(seconds: float, seed: int = 0) -> np.ndarray:
    """Decaying 60 dB over 69 % of its length."""
    rt60_s = 0.3 * np.log(10) * seconds
    return decaying_noise(int(seconds * SR), rt60_s=rt60_s, seed=seed, gain=0.3)


# ---- ring buffer -----------------------------------------------------------------------------


def test_ring_wraps_and_never_overwrites_unread_audio():
    ring = Ring(2, 10)
    data = np.arange(2 * 25, dtype=np.float32).reshape(2, 25)
    out = np.zeros((2, 7), np.float32)
    got: list[np.ndarray] = []
    written = 0
    for _ in range(20):
        written += ring.write(data[:, written : written + 6])
        n = ring.read_into(out)
        got.append(out[:, :n].copy())
        assert 0 <= ring.available() <= ring.capacity
    np.testing.assert_array_equal(np.concatenate(got, axis=1), data[:, :written])
    assert written == 25
    assert ring.write(np.ones((2, 20), np.float32)) == 10  # only what fits


def test_ring_between_two_threads_delivers_every_frame_in_order():
    ring = Ring(1, 1000)
    total = 200_000
    received = np.zeros(total, np.float32)

    def produce() -> None:
        sent = 0
        while sent < total:
            chunk = np.arange(sent, min(sent + 300, total), dtype=np.float32)[None]
            sent += ring.write(chunk)

    thread = threading.Thread(target=produce)
    thread.start()
    have, buf = 0, np.zeros((1, 256), np.float32)
    while have < total:
        n = ring.read_into(buf)
        received[have : have + n] = buf[0, :n]
        have += n
    thread.join()
    np.testing.assert_array_equal(received, np.arange(total, dtype=np.float32))


# ---- the callback ------------------------------------------------------------------------------


def make_session(ir: np.ndarray, **kwargs) -> LiveSession:
    engine = Engine(ir, channels=2, block_size=BLOCK, sample_rate_hz=SR, wet_db=0.0, dry_db=-70.0)
    return LiveSession(engine, channels=2, block_size=BLOCK, sample_rate_hz=SR, **kwargs)


def test_callback_output_is_the_engine_output_for_device_and_file_input():
    ir = np.zeros(100, np.float32)
    ir[10] = 0.5  # a delay of 10 taps at half gain
    x = tone(BLOCK * 8, 2)
    # duplex stream: indata is (frames, channels)
    session = make_session(ir)
    out = np.zeros((BLOCK * 8, 2), np.float32)
    for b in range(8):
        sl = slice(b * BLOCK, (b + 1) * BLOCK)
        session.callback(x[:, sl].T.copy(), out[sl], BLOCK, None, status())
    expected = np.zeros_like(x)
    expected[:, BLOCK + 10 :] = 0.5 * x[:, : -BLOCK - 10]  # engine latency: one block
    np.testing.assert_allclose(out.T, expected, atol=1e-5)
    # output-only stream fed from a ring; the output also goes to the recording ring
    src, rec = Ring(2, SR), Ring(2, SR)
    src.write(x)
    session = make_session(ir, source_ring=src, record_ring=rec)
    out2 = np.zeros_like(out)
    for b in range(8):
        session.callback(out2[b * BLOCK : (b + 1) * BLOCK], BLOCK, None, status())
    np.testing.assert_allclose(out2, out, atol=1e-6)
    recorded = np.zeros((2, BLOCK * 8), np.float32)
    assert rec.read_into(recorded) == BLOCK * 8
    np.testing.assert_array_equal(recorded, out2.T)
    assert session.stats.callbacks == 8 and session.stats.input_underruns == 0


def test_callback_counts_xruns_underruns_and_survives_exceptions():
    session = make_session(noise_ir(0.1), source_ring=Ring(2, SR))
    out = np.ones((BLOCK, 2), np.float32)
    session.callback(out, BLOCK, None, status(output_underflow=True))
    assert session.stats.xruns == 1
    assert session.stats.input_underruns == 1  # the ring was empty before the file ended
    session.source_finished = True
    session.callback(out, BLOCK, None, status())
    assert session.stats.input_underruns == 1  # silence after the end is not an underrun

    class Broken:
        def process(self, x, out=None):
            raise RuntimeError("boom")

    session.engine = Broken()
    out.fill(1)
    session.callback(out, BLOCK, None, status())
    assert session.stats.callback_exceptions == 1
    assert "boom" in session.stats.first_exception
    assert not out.any()  # the failed block is silence, not garbage


#: What one callback may have allocated at once, in bytes: numpy makes and frees small Python
#: objects in every call (a view is 96 B, a reduction's iterator ~900 B; ~4.5 kB of them are
#: alive at once at most here) and tracemalloc counts them. Array data would come on top: the
#: smallest array this configuration works with, one (2, 256) float32 block, is 2 kB; the
#: broadcast of a mono IR over two channels made 43 kB.
PYTHON_OBJECTS_BYTES = 6 * 1024
#: What 1,200 callbacks may keep in all: the counters and positions they store are new int and
#: float objects (28-32 B) that replace the old ones, a few of a different size. One object
#: kept per callback would be over 30 kB.
KEPT_BYTES = 1024


def test_callback_allocates_no_arrays_in_the_live_configuration():
    """`rtverb live`'s configuration, as its audio process runs it: a mono 3 s IR on 2 channels
    (every partition stage active), block 256, 12 s of IR capacity; new IRs taken from the
    shared-memory slots and crossfaded throughout, gain changes through the shared cells, a NaN
    block and an overflowing block (which starts a reset) in the middle. The run is played
    twice: the first warms numpy's and Python's caches on every path, the second's 1,200
    callbacks are measured."""
    rng = np.random.default_rng(0)
    irs = [noise_ir(3.0, seed) for seed in range(3)]
    engine = Engine(irs[0], channels=2, block_size=BLOCK, sample_rate_hz=SR)
    assert engine.convolver.describe().count("|") == 2  # three stages, all used by the IR
    src = Ring(2, SR)
    session = LiveSession(engine, channels=2, block_size=BLOCK, sample_rate_hz=SR, source_ring=src)
    conv = engine.convolver
    slots = IrSlots(conv.stages, 2, conv.max_taps)
    writer, cells = SlotWriter(slots), np.zeros(len(CELLS) + XRUN_LOG)
    _Callback(session, SlotReader(slots, conv), cells)
    x = (0.1 * rng.standard_normal((2, BLOCK))).astype(np.float32)
    nan, loud = x.copy(), np.full_like(x, 3e38)
    nan[1, 100] = np.nan
    out, ok = np.zeros((BLOCK, 2), np.float32), status()
    figures = {}
    tracemalloc.start()  # before the warm-up: every object the measured run frees is traced
    try:
        for run in ("warm-up", "measured"):
            worst, kept, fading, reset_blocks = 0, 0, 0, 0
            for i in range(1200):
                if i % 40 == 0:  # control side, between callbacks: not measured
                    writer.publish(irs[i // 40 % 3][None].astype(np.float64))
                if i % 100 == 0:
                    cells[CELLS.index("wet_db")] = -6.0 - i % 200 / 100
                    cells[CELLS.index("mix_gen")] += 1
                src.write(nan if i == 500 else loud if i == 700 else x)
                tracemalloc.reset_peak()
                before = tracemalloc.get_traced_memory()[0]
                session.callback(out, BLOCK, None, ok)
                after, peak = tracemalloc.get_traced_memory()
                worst, kept = max(worst, peak - before), kept + after - before
                fading += engine.convolver.swapping
                reset_blocks += engine.convolver.resetting
            figures[run] = (worst, kept)
    finally:
        tracemalloc.stop()
        slots.close()
    print(f"bytes allocated at once (worst callback), kept: {figures}")
    assert session.stats.callback_exceptions == 0, session.stats.first_exception
    assert engine.nonfinite_blocks == 4 and reset_blocks > 0 and fading > 600
    assert cells[CELLS.index("slots_taken")] == 60 and cells[CELLS.index("slots_torn")] == 0
    assert kept <= KEPT_BYTES, f"the callbacks kept {kept} bytes"
    assert worst <= PYTHON_OBJECTS_BYTES, f"a callback allocated {worst} bytes at once"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"wet_db": float("nan")}, "wet_db"),
        ({"wet_db": -6.0, "dry_db": 13.0}, "dry_db"),
        ({"wet_db": -6.0, "predelay_ms": 250.0}, "predelay_ms"),
    ],
)
def test_the_audio_process_refuses_a_bad_mix_and_changes_nothing(kwargs, match):
    # the checks come before any cell is written (no process is started for this)
    proc = object.__new__(AudioProcess)
    proc.cells = np.zeros(len(CELLS), np.float64)
    proc._predelay_ms = 0.0
    with pytest.raises(ValueError, match=match):
        proc.set_mix(**kwargs)
    assert not proc.cells.any()


def test_jump_metric_catches_a_hard_ir_switch():
    """The click bound of the integration test can fail: switching IRs without a crossfade."""
    x = tone(SR)[0]
    y1 = np.convolve(x, noise_ir(0.2, seed=1))[: len(x)]
    y2 = np.convolve(x, noise_ir(0.2, seed=2))[: len(x)]
    switched = np.concatenate([y1[: SR // 2], y2[SR // 2 :]])
    assert jump_ratio(y1[SR // 4 :]) < MAX_JUMP_RATIO
    assert jump_ratio(switched[SR // 4 :]) > MAX_JUMP_RATIO


# ---- command-line errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--preset", "studio_live_rom"], "studio_live_room"),
        (["--input", "/nonexistent/x.wav"], "no such file"),
        (["--loop"], "--loop needs --input"),
        (["--block", "3"], "16 to 8192"),
        (["--seconds", "0"], "positive"),
        (["--pre", "Reverbb(room_size=0.5)"], "Reverb"),
    ],
)
def test_setup_errors_name_the_problem(argv, fragment, capsys):
    assert cli.main(["live", "--no-osc", "--synth", "analytic", *argv]) == 2
    assert fragment in capsys.readouterr().err


def test_record_never_replaces_a_file_unasked(tmp_path, capsys):
    existing = tmp_path / "take.wav"
    existing.write_bytes(b"precious")
    wav = tmp_path / "in.wav"
    with AudioFile(str(wav), "w", SR, 1) as f:
        f.write(tone(SR // 10))
    argv = ["live", "--no-osc", "--synth", "analytic", "--input", str(wav)]
    assert cli.main([*argv, "--record", str(existing)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main([*argv, "--record", str(wav), "--overwrite"]) == 2
    assert "input" in capsys.readouterr().err
    assert existing.read_bytes() == b"precious" and wav.stat().st_size > 0


def test_a_device_that_cannot_open_lists_the_devices(tmp_path, capsys):
    wav = tmp_path / "in.wav"
    with AudioFile(str(wav), "w", SR, 1) as f:
        f.write(tone(SR // 10))
    argv = ["live", "--no-osc", "--synth", "analytic", "--input", str(wav)]
    assert cli.main([*argv, "--device", "no-such-device-xyz"]) == 2
    err = capsys.readouterr().err
    assert "cannot open device 'no-such-device-xyz'" in err and "--device" in err


# ---- integration: a real audio server, OSC over UDP -------------------------------------------

#: Xruns caused by rtverb are those beyond the audio server's own on this machine: the test first
#: runs a trivial Python callback (a copy) on the same JACK server for as long, and rtverb may
#: exceed its count by this fraction of callbacks (about 38 of 1880). On the 2-core VM this was
#: built on, idle, the trivial callback got 2-12 xruns in 1880 callbacks and `rtverb live` with
#: 60 room changes/s 5-19, within 0-7 of it (before the synthesis child ran niced: 9-36). The
#: margin absorbs a machine whose load changes between the two runs (other processes competing
#: for the 2 cores put both at 30-200) and still catches a gross regression (an allocating or
#: blocking callback, or synthesis in the audio process, overruns on most changes: 60/s).
XRUN_MARGIN_FRACTION = 0.02
RUN_S = 10.0  # the issue asks for at least 10 s
#: Longest start-up of `rtverb live` (imports, model, synthesis process) on a loaded machine.
STARTUP_TIMEOUT_S = 60.0
CHANGES_PER_S = 60  # and at least 50 room changes per second
#: The last message: a bundle setting every room parameter to a float32-exact value.
FINAL = {
    "room/size": (8.5, 6.25, 3.5),
    "room/scattering": (0.25,),
    "source/position": (2.5, 3.0, 1.5),
    "listener/position": (6.0, 2.5, 1.25),
    "room/surface/floor": ("carpet_cotton",),
    "room/surface/ceiling": (0.5,),
    "room/surface/east": (0.125, 0.25, 0.25, 0.375, 0.5, 0.5),
    "room/surface/west": ("plasterboard",),
    "room/surface/north": ("hard_surface",),
    "room/surface/south": ("wooden_lining",),
    "mix/wet_db": (-8.0,),
    "mix/dry_db": (0.0,),
    "mix/predelay_ms": (10.0,),
}


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _synth_kind() -> str:
    """The shipped model when it loads; else the analytic baseline (same real-time path)."""
    from rtverb import synth

    try:
        synth.default_synthesizer()
        return "model"
    except synth.ModelError as e:
        print(f"the model does not load ({e}); running with --synth analytic")
        return "analytic"


#: Malformed datagrams sent with each room change: a burst like a misbehaving device on the
#: network (10 per change at 60 changes per second: 600 per second).
MALFORMED_PER_CHANGE = 10


def _sender(port: int, stop: threading.Event, log: dict) -> None:
    """Room changes at CHANGES_PER_S over UDP: sweeps of every kind of address, each with a
    burst of malformed datagrams, then FINAL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    dest = ("127.0.0.1", port)
    for _ in range(150):  # wait until rtverb answers
        sock.sendto(build_msg("/rtverb/get", ["room/size/x"]).dgram, dest)
        try:
            sock.recv(65536)
            break
        except TimeoutError:
            continue
    else:
        log["error"] = "rtverb never answered /rtverb/get"
        return
    sock.setblocking(False)
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < RUN_S - 1.5 and not stop.is_set():
        phase = i / CHANGES_PER_S
        kind = i % 6
        if kind == 0:
            m = build_msg("/rtverb/room/size/x", [7.0 + 2.0 * np.sin(phase)])
        elif kind == 1:
            m = build_msg("/rtverb/norm/source/position", [0.3 + 0.1 * np.sin(phase), 0.5, 0.4])
        elif kind == 2:
            m = build_msg("/rtverb/room/scattering", [0.2 + 0.1 * np.sin(phase)])
        elif kind == 3:
            m = build_msg("/rtverb/room/surface/ceiling", [0.3 + 0.2 * np.sin(phase)])
        elif kind == 4:
            m = build_msg("/rtverb/mix/wet_db", [-8.0 + 3.0 * np.sin(phase)])
        else:
            m = build_msg("/rtverb/listener/position/y", [2.5 + np.sin(phase)])
        sock.sendto(m.dgram, dest)
        for k in range(MALFORMED_PER_CHANGE):
            sock.sendto(MALFORMED[(i + k) % len(MALFORMED)], dest)
        i += 1
        time.sleep(max(0.0, t0 + i / CHANGES_PER_S - time.perf_counter()))
    log["rate_per_s"] = i / (time.perf_counter() - t0)
    bundle = OscBundleBuilder(IMMEDIATELY)
    for address, args in FINAL.items():
        bundle.add_content(build_msg("/rtverb/" + address, list(args)))
    sock.sendto(bundle.build().dgram, dest)
    log["sent"] = i + 1
    echoes = 0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            echoes += OscMessage(sock.recv(65536)).address.startswith("/rtverb/")
        except (BlockingIOError, TimeoutError):
            time.sleep(0.01)
    log["echoes"] = echoes
    sock.close()


_TRIVIAL_CALLBACK = """
import sys, time, sounddevice as sd
n = [0, 0]
def cb(indata, outdata, frames, t, status):
    n[0] += 1
    n[1] += bool(status.output_underflow or status.input_overflow)
    outdata[:] = indata
with sd.Stream(device="system", samplerate=%d, blocksize=%d, channels=2, dtype="float32",
               callback=cb):
    time.sleep(%f)
print(n[1])
"""


def _trivial_callback_xruns(env: dict, seconds: float) -> int:
    """Xruns the audio server reports to a callback that only copies input to output."""
    code = _TRIVIAL_CALLBACK % (SR, BLOCK, seconds)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def _expected_final_room(start: Room) -> dict:
    values = {}
    for address, args in FINAL.items():
        if address in ("room/size", "source/position", "listener/position"):
            values.update({f"{address}/{a}": v for a, v in zip("xyz", args, strict=True)})
        else:
            values[address] = args[0] if len(args) == 1 else tuple(args)
    return start.with_values(values).to_dict()


@pytest.mark.slow
def test_live_with_room_changes_over_udp(jack_server, tmp_path):
    wav, out, summary_path = tmp_path / "tone.wav", tmp_path / "out.wav", tmp_path / "sum.json"
    with AudioFile(str(wav), "w", SR, 1, bit_depth=32) as f:
        f.write(tone(int(RUN_S * SR)))  # a whole number of periods: the loop is seamless
    port = _free_udp_port()
    synth_kind = _synth_kind()
    baseline = _trivial_callback_xruns(jack_server, RUN_S)
    cmd = [
        sys.executable, "-m", "rtverb", "live", "--input", str(wav), "--loop",
        "--device", "system", "--block", str(BLOCK), "--sample-rate", str(SR),
        "--preset", "studio_live_room", "--synth", synth_kind, "--osc-port", str(port),
        "--record", str(out), "--seconds", str(RUN_S), "--summary-json", str(summary_path),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=jack_server, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    stop, log = threading.Event(), {}
    sender = threading.Thread(target=_sender, args=(port, stop, log))
    sender.start()
    try:
        output, _ = proc.communicate(timeout=RUN_S + 60)
    finally:
        stop.set()
        sender.join()
        if proc.poll() is None:
            proc.kill()
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "error" not in log, log
    summary = json.loads(summary_path.read_text())
    print(f"\nsynth={synth_kind} sender={log} summary={json.dumps(summary, indent=1)}")

    assert log["rate_per_s"] >= 50
    assert summary["callback_exceptions"] == 0, summary["first_exception"]
    # xruns caused by rtverb: callbacks that overran their block, and server-reported xruns
    allowed = baseline + int(XRUN_MARGIN_FRACTION * summary["callbacks"])
    print(f"trivial callback: {baseline} xruns; rtverb: {allowed} tolerated")
    assert summary["late_callbacks"] <= allowed
    assert summary["xruns"] <= allowed
    assert summary["callbacks"] >= (RUN_S - 1) * SR / BLOCK
    assert summary["input_underruns"] == 0 and summary["nonfinite_blocks"] == 0
    assert summary["osc"]["packets"] >= log["sent"]  # nothing dropped by the socket
    assert 0 < summary["osc"]["errors"] <= (log["sent"] - 1) * MALFORMED_PER_CHANGE
    assert summary["room_changes"] >= 0.9 * log["sent"]
    assert summary["room"] == _expected_final_room(load_preset("studio_live_room"))
    assert summary["ir_matches_room"]
    assert log["echoes"] > 0
    with AudioFile(str(out)) as f:
        y = f.read(f.frames)
    assert y.shape == (2, summary["record"]["frames"]) and summary["record"]["dropped_frames"] == 0
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y)) > 0.1 * TONE_AMPLITUDE  # the tone came through
    # from 1 s on: the tone's onset through the starting room is not a room change
    assert jump_ratio(y[:, SR:]) < MAX_JUMP_RATIO


def _recording_run(env: dict, tmp_path: Path, *extra: str) -> subprocess.Popen:
    """``rtverb live`` on a looped tone, recording to take.wav (summary in sum.json), once about
    a second of audio is in the recording (start-up, with the synthesis process, can take
    seconds on a busy machine)."""
    wav = tmp_path / "tone.wav"
    with AudioFile(str(wav), "w", SR, 1) as f:
        f.write(tone(SR))
    cmd = [
        sys.executable, "-m", "rtverb", "live", "--input", str(wav), "--loop", "--device",
        "system", "--synth", "analytic", "--no-osc", "--record", str(tmp_path / "take.wav"),
        "--summary-json", str(tmp_path / "sum.json"), *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        partial = [p for p in tmp_path.iterdir() if "partial" in p.name]
        if partial and partial[0].stat().st_size > SR:
            break
        time.sleep(0.2)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_ctrl_c_stops_cleanly_and_keeps_the_recording(jack_server, tmp_path, sig):
    out, summary_path = tmp_path / "take.wav", tmp_path / "sum.json"
    proc = _recording_run(jack_server, tmp_path)
    time.sleep(1)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output.decode(errors="replace")
    summary = json.loads(summary_path.read_text())
    assert summary["interrupted"] and summary["callbacks"] > 0
    with AudioFile(str(out)) as f:
        assert f.frames == summary["record"]["frames"] > 0
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for a parent to reap it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _descendants(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [d for c in children for d in (int(c), *_descendants(int(c)))]


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["rtverb.live.audio", "rtverb.synth.process"])
def test_a_dead_process_stops_the_run_says_so_and_keeps_the_recording(
    jack_server, tmp_path, victim
):
    out, summary_path = tmp_path / "take.wav", tmp_path / "sum.json"
    proc = _recording_run(jack_server, tmp_path, "--seconds", "60")
    family = _descendants(proc.pid)
    target = [p for p in family if victim in Path(f"/proc/{p}/cmdline").read_text()]
    assert len(target) == 1, family
    os.kill(target[0], signal.SIGKILL)
    output, _ = proc.communicate(timeout=30)
    text = output.decode(errors="replace")
    assert proc.returncode == 1, text
    summary = json.loads(summary_path.read_text())
    what = "audio" if "audio" in victim else "synthesis"
    assert f"the {what} process died" in summary["stop_reason"], text
    assert not summary["interrupted"] and summary["callbacks"] > 0
    with AudioFile(str(out)) as f:
        assert f.frames == summary["record"]["frames"] > 0
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    deadline = time.monotonic() + 10  # the resource tracker exits when it sees its pipe close
    while any(_running(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [p for p in family if _running(p)] == []  # nothing left running
