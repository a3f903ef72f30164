"""rtverb capture: the sweep/inverse pair, chain, sound-card and dry/wet captures, the command."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pedalboard
import pytest
from conftest import decaying_noise, stop_process
from pedalboard.io import AudioFile
from scipy import signal as sps

from rtverb import cli
from rtverb.analysis.acoustics import measure
from rtverb.capture import CaptureError, capture_chain, capture_device, capture_dry_wet
from rtverb.capture.device import PRE_ROLL_S
from rtverb.capture.sweep import Sweep, deconvolve, sweep_duration_s
from rtverb.room.presets import load_preset

SR = 48000
#: A linear chain comes back exact up to float32 processing: error below this, re peak.
EXACT_TOLERANCE = 1e-6
#: pedalboard.Convolution's IR recovered within -60 dB of peak (the issue's figure).
CONVOLUTION_TOLERANCE_DB = -60.0


def noise_ir(seconds: float, t60_s: float, seed: int = 0) -> np.ndarray:
    return decaying_noise(int(seconds * SR), rt60_s=t60_s, sample_rate_hz=SR, seed=seed)


def error_db(got: np.ndarray, want: np.ndarray) -> float:
    n = max(len(got), len(want))
    diff = np.pad(got, (0, n - len(got))) - np.pad(want, (0, n - len(want)))
    return float(20 * np.log10(np.max(np.abs(diff)) / np.max(np.abs(want))))


# ---- the sweep and its inverse ------------------------------------------------------------------


def test_sweep_inverse_gives_a_delta_on_identity():
    sweep = Sweep(SR, 2.0).signal()
    response = deconvolve(sweep, sweep)[0]
    delta = np.zeros_like(response)
    delta[0] = 1.0
    assert np.max(np.abs(response - delta)) < EXACT_TOLERANCE


def test_sweep_inverse_gives_the_delay_and_gain():
    sweep = Sweep(SR, 2.0).signal()
    delay, gain = 1234, -0.3
    recording = np.concatenate([np.zeros(delay), gain * sweep])
    response = deconvolve(recording, sweep)[0]
    want = np.zeros_like(response)
    want[delay] = gain
    assert np.max(np.abs(response - want)) < EXACT_TOLERANCE


def test_sweep_is_slow_enough_to_keep_harmonics_out():
    duration = sweep_duration_s(0.5, SR)
    assert Sweep(SR, duration).harmonic_lead_s(2) > 0.5


# ---- chains -------------------------------------------------------------------------------------


def test_chain_delay_and_gain_exact():
    capture = capture_chain(
        "Delay(delay_seconds=0.01, feedback=0, mix=1) | Gain(gain_db=-6)", SR, max_ir_s=0.05
    )
    ir = capture.first_channel()
    peak = int(np.argmax(np.abs(ir)))
    assert peak in (479, 480)  # 10 ms; pedalboard's delay line comes out one sample short
    want = np.zeros_like(ir)
    want[peak] = 10 ** (-6 / 20)
    assert capture.ir.shape[0] == 1  # a mono chain gives a mono IR
    assert np.max(np.abs(ir - want)) < EXACT_TOLERANCE


def test_chain_convolution_recovers_the_known_ir():
    h = noise_ir(0.2, 0.1)
    board = pedalboard.Pedalboard([pedalboard.Convolution(h, sample_rate=SR)])
    capture = capture_chain(board, SR, max_ir_s=0.25)
    want = h * 0.125 / np.linalg.norm(h)  # pedalboard normalizes every IR to this gain
    assert error_db(capture.first_channel(), want) < CONVOLUTION_TOLERANCE_DB


def test_stereo_and_true_stereo_shapes():
    assert capture_chain("Reverb(room_size=0.3)", SR, max_ir_s=0.2).ir.shape[0] == 2
    ir = capture_chain("Reverb(room_size=0.3)", SR, max_ir_s=0.2, true_stereo=True).ir
    assert ir.shape[:2] == (2, 2) and np.any(ir[0, 1] != ir[1, 0])


class _Stretch:
    """A chain that changes the length (as a resampling plugin would)."""

    def reset(self) -> None:
        pass

    def process(self, x: np.ndarray, sample_rate: float, reset: bool = True) -> np.ndarray:
        return np.repeat(x, 2, axis=-1)


def test_chain_that_changes_length_is_refused():
    with pytest.raises(CaptureError, match="changes the length"):
        capture_chain(_Stretch(), SR, max_ir_s=0.05)  # type: ignore[arg-type]


def test_sweep_too_short_for_the_ir_is_refused():
    with pytest.raises(CaptureError, match="lengthen the sweep"):
        capture_chain("Gain(gain_db=0)", SR, max_ir_s=2.0, sweep_s=2.0)


# ---- sound card (a simulated one) ---------------------------------------------------------------


#: A dropped block of a JACK client (256 frames), and how close the takes then average to the
#: capture without it (re peak; unaligned, 3 takes a block late out of 5 blur it to ~-20 dB).
XRUN_BLOCK = 256
ALIGNED_ERROR_DB = -60.0


def fake_card(h: np.ndarray, latency: int, noise: float, gain: float = 1.0, seed: int = 0):
    def recorder(signal, sample_rate_hz, devices, progress):
        rng = np.random.default_rng(seed)
        y = sps.fftconvolve(signal, h)[: len(signal)] * gain
        y = np.concatenate([np.zeros(latency), y])[: len(signal)]
        return (y + noise * rng.standard_normal(len(y)))[None]

    return recorder


def test_device_finds_latency_and_averages_repeats():
    h = noise_ir(0.15, 0.08)
    h[0] = 8.0  # the direct sound: the onset
    h *= 0.5 / np.linalg.norm(h)
    latency = 300
    results = {}
    for repeats in (1, 4):
        capture = capture_device(
            ("in", "out"), SR, max_ir_s=0.2, repeats=repeats, recorder=fake_card(h, latency, 1e-3)
        )
        results[repeats] = capture
        assert capture.latency_s * SR == pytest.approx(latency - 0.002 * SR, abs=1)
    # averaging 4 sweeps lowers the noise floor by ~6 dB
    assert results[4].peak_to_noise_db > results[1].peak_to_noise_db + 4


def test_device_refuses_clipping_and_noise():
    h = np.zeros(100, np.float32)
    h[0] = 1.0
    with pytest.raises(CaptureError, match="clips"):
        capture_device(("a", "b"), SR, max_ir_s=0.1, level_db=0, recorder=fake_card(h, 10, 0.0, 2))
    with pytest.raises(CaptureError, match="above the noise"):
        capture_device(("a", "b"), SR, max_ir_s=0.1, recorder=fake_card(h, 10, 0.05, 0.01))
    with pytest.raises(CaptureError, match="silent"):
        capture_device(("a", "b"), SR, max_ir_s=0.1, recorder=fake_card(h, 10, 0.0, 0.0))
    assert PRE_ROLL_S > 0  # the noise is measured in the silence before the sweep


# ---- dry / wet ----------------------------------------------------------------------------------


def _pair(delay: int = 0, noise_db: float = -60.0):
    rng = np.random.default_rng(1)
    dry = np.concatenate([rng.standard_normal(3 * SR) * 0.1, np.zeros(SR)])
    h = noise_ir(0.5, 0.3, seed=2)
    h[0] = 4.0
    wet = sps.fftconvolve(dry, h)[: len(dry)]
    wet = np.roll(wet, delay)
    wet += rng.standard_normal(len(wet)) * np.sqrt(np.mean(wet**2)) * 10 ** (noise_db / 20)
    return dry, wet, h


def test_dry_wet_recovers_the_ir():
    dry, wet, h = _pair()
    capture = capture_dry_wet(dry, wet, SR, max_ir_s=0.6)
    assert error_db(capture.first_channel()[: len(h)], h) < -30


def test_dry_wet_refuses_bad_pairs():
    dry, wet, _ = _pair()
    with pytest.raises(CaptureError, match="differ in length"):
        capture_dry_wet(dry, wet[:-10], SR)
    with pytest.raises(CaptureError, match="misaligned"):
        capture_dry_wet(dry, np.roll(wet, -2000), SR)
    with pytest.raises(CaptureError, match="explains only"):
        capture_dry_wet(dry, np.random.default_rng(5).standard_normal(len(dry)), SR)


# ---- the command --------------------------------------------------------------------------------


def test_cli_chain_writes_a_float_ir(tmp_path, capsys):
    out = tmp_path / "ir.wav"
    assert (
        cli.main(
            [
                "capture",
                "--chain",
                "Reverb(room_size=0.3)",
                "--max-ir-s",
                "0.5",
                "-o",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "T30 (s)" in text and "wrote" in text
    with AudioFile(str(out)) as f:
        assert f.num_channels == 2 and f.file_dtype == "float32"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--chain", "NoSuchPlugin()"], "unknown plugin"),
        (["--chain", "Gain(gain_db=0)", "--max-ir-s", "2", "--sweep-s", "2"], "lengthen"),
        (["--dry", "missing.wav"], "--dry and --wet together"),
        (["--chain", "Gain(gain_db=0)", "--true-stereo", "--repeats", "2"], "--repeats"),
    ],
)
def test_cli_errors_are_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "ir.wav"
    assert cli.main(["capture", *argv, "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_cli_dry_wet_of_different_rates(tmp_path, capsys):
    dry, wet, _ = _pair()
    for name, x, fs in (("dry.wav", dry, SR), ("wet.wav", wet, 44100)):
        with AudioFile(str(tmp_path / name), "w", fs, 1, bit_depth=32) as f:
            f.write(x[None].astype(np.float32))
    out = tmp_path / "ir.wav"
    argv = ["capture", "--dry", str(tmp_path / "dry.wav"), "--wet", str(tmp_path / "wet.wav")]
    assert cli.main([*argv, "-o", str(out)]) == 2
    assert "same rate" in capsys.readouterr().err and not out.exists()


# ---- a real audio server: rtverb live on a JACK dummy server, captured through its ports --------

#: T30 per band of `rtverb live` captured through JACK vs `rtverb rir` of the same room (the
#: issue's figure): both are the same synthesized IR, so only the capture's error is left. An
#: xrun during a sweep corrupts the band the sweep was in (25-35 % seen with a loaded machine).
#: The capture leaves out takes far from the median one, which holds while fewer than half the
#: takes are hit. With three takes, a fresh-clone run on an idle machine had two bands 7 % and
#: 37 % off (two takes hit in different bands, by the pattern); five takes tolerate two. A
#: fresh-clone run with five still had 125 Hz 8 % and 500 Hz 4 % off once (exact in the next
#: two runs): a capture that misses is taken again once, on the same running rtverb.
LIVE_T30_TOLERANCE = 0.05
LIVE_ATTEMPTS = 2
#: Sweeps per capture (see above).
LIVE_REPEATS = 5
_CAPTURE_SCRIPT = """
import sys
import numpy as np
from rtverb.capture import capture_device
capture = capture_device(
    ("system", "system"), 48000, max_ir_s=0.8, level_db=-20, repeats=int(sys.argv[2]),
    pre_roll_s=8.0,
)
np.save(sys.argv[1], capture.ir)
"""


def _jack_ports(env: dict) -> list[str]:
    out = subprocess.run(["jack_lsp"], env=env, capture_output=True, text=True, timeout=10)
    return out.stdout.split()


def _wait_for_client(env: dict, exclude: set[str], timeout_s: float) -> str:
    """The name of a JACK client with an ``in_0`` port, other than ``exclude``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for port in _jack_ports(env):
            client, _, name = port.partition(":")
            if name == "in_0" and client not in exclude:
                return client
        time.sleep(0.05)
    pytest.fail(f"no new JACK client came up in {timeout_s} s")


@pytest.mark.slow
def test_capture_of_rtverb_live_through_jack_matches_rtverb_rir(jack_server, tmp_path):
    # the IR alone (no dry path), one channel: a mono listener
    room = replace(load_preset("studio_live_room"), dry_db=-70.0, wet_db=0.0, pair="mono")
    room_path, rir_path, ir_path = tmp_path / "room.toml", tmp_path / "rir.wav", tmp_path / "ir.npy"
    room.to_toml(room_path)
    assert cli.main(["rir", str(room_path), "-o", str(rir_path)]) == 0
    live = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rtverb",
            "live",
            "--device",
            "system",
            "--preset",
            str(room_path),
            "--no-osc",
            "--quiet",
            "--seconds",
            "240",  # room for a second capture (stopped when done)
        ],
        env=jack_server,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    with AudioFile(str(rir_path)) as f:
        want = measure(f.read(f.frames)[0], SR)
    capture = None
    try:
        live_client = _wait_for_client(jack_server, {"system"}, 60)
        time.sleep(3)  # the room's IR is synthesized and in place
        for _ in range(LIVE_ATTEMPTS):
            capture = subprocess.Popen(
                [sys.executable, "-c", _CAPTURE_SCRIPT, str(ir_path), str(LIVE_REPEATS)],
                env=jack_server,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            sweeper = _wait_for_client(jack_server, {"system", live_client}, 60)
            for k in range(2):  # the sweeper's outputs into rtverb, rtverb's outputs back
                for src, dst in (
                    (f"{sweeper}:out_{k}", f"{live_client}:in_{k}"),
                    (f"{live_client}:out_{k}", f"{sweeper}:in_{k}"),
                ):
                    subprocess.run(["jack_connect", src, dst], env=jack_server, check=True)
            output, _ = capture.communicate(timeout=120)
            assert capture.returncode == 0, output.decode(errors="replace")
            captured = np.load(ir_path).reshape(-1, np.load(ir_path).shape[-1])[0]
            got = measure(captured, SR)
            print(
                f"\ncaptured T30 {np.round(got.T30_s, 3)}\nrtverb rir T30 {np.round(want.T30_s, 3)}"
            )
            if np.allclose(got.T30_s, want.T30_s, rtol=LIVE_T30_TOLERANCE, atol=0):
                break
    finally:
        for proc in (capture, live):
            if proc is not None:
                stop_process(proc, signal.SIGINT, 20)
    np.testing.assert_allclose(got.T30_s, want.T30_s, rtol=LIVE_T30_TOLERANCE)


def test_takes_a_dropped_block_apart_are_aligned_before_averaging():
    # an xrun in the recording stream: from the third take on, every take comes a block late
    h = noise_ir(0.3, 0.2)
    h[0] = 8.0
    h *= 0.5 / np.linalg.norm(h)
    clean = fake_card(h, 300, 1e-4)

    def late_from_take_3(signal, sample_rate_hz, devices, progress):
        y = clean(signal, sample_rate_hz, devices, progress)
        period = (y.shape[1] - int(round(PRE_ROLL_S * sample_rate_hz))) // 5
        cut = int(round(PRE_ROLL_S * sample_rate_hz)) + 2 * period
        return np.concatenate([y[:, :cut], np.zeros((1, XRUN_BLOCK)), y[:, cut:-XRUN_BLOCK]], 1)

    want = capture_device(("i", "o"), SR, max_ir_s=0.3, repeats=5, recorder=clean)
    got = capture_device(("i", "o"), SR, max_ir_s=0.3, repeats=5, recorder=late_from_take_3)
    n = min(want.ir.shape[-1], got.ir.shape[-1])
    error_db = 20 * np.log10(np.abs(got.ir[0, :n] - want.ir[0, :n]).max() / np.abs(want.ir).max())
    assert error_db < ALIGNED_ERROR_DB
