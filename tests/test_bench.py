"""`rtverb bench`: options, the JSON object, the report, the plot. Timing values are not judged."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest

from rtverb import cli
from rtverb.bench import engine
from rtverb.cli import bench

#: A short IR and little audio: these tests check the command, not the machine.
FAST = ["--ir-seconds", "0.2", "--seconds", "0.1"]
RTVERB_KEYS = {"mean_us", "p50_us", "p99_us", "p999_us", "max_us", "over_budget_blocks",
               "swap_block_max_us", "rtf", "headroom"}  # fmt: skip
PEDALBOARD_KEYS = {"mean_us", "p50_us", "p99_us", "p999_us", "max_us", "over_budget_blocks"}


def run_bench(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return bench.run(parser.parse_args(argv))


def test_registered_in_the_cli() -> None:
    assert cli.COMMANDS["bench"][0] == "rtverb.cli.bench"


def test_json_is_one_object_with_the_documented_keys(capsys) -> None:
    assert run_bench([*FAST, "--block", "128", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"config", "rtverb", "pedalboard", "machine_floor"}
    assert RTVERB_KEYS <= set(data["rtverb"]) and PEDALBOARD_KEYS <= set(data["pedalboard"])
    assert PEDALBOARD_KEYS <= set(data["machine_floor"])  # fixed work timed beside them
    config, ours = data["config"], data["rtverb"]
    assert config["block_size"] == 128 and config["channels"] == 2
    assert config["ir_taps"] == 9600 and config["sample_rate_hz"] == 48000
    assert config["budget_us"] == pytest.approx(128 / 48000 * 1e6)
    assert ours["headroom"] == pytest.approx(config["budget_us"] / ours["p999_us"])
    assert ours["p50_us"] <= ours["p99_us"] <= ours["p999_us"] <= ours["max_us"]
    assert ours["max_error_vs_fftconvolve"] <= 1e-5
    assert ours["max_error_vs_pedalboard"] <= 1e-4
    assert 0 < ours["rtf"] < 1 and ours["swap_blocks"] > 0


def test_report_names_setup_and_figures(capsys) -> None:
    assert run_bench([*FAST, "--block", "64", "--channels", "1"]) == 0
    text = capsys.readouterr().out
    needles = ("machine:", "versions:", "numpy", "pedalboard", "partitions:", "p99.9",
               "rtverb / pedalboard", "headroom:", "IR swaps:", "real-time factor",
               "fixed work (machine)", "tails:")  # fmt: skip
    for needle in needles:
        assert needle in text, needle


def test_sweep_table_and_plot(capsys, tmp_path) -> None:
    png = tmp_path / "bench.png"
    assert run_bench([*FAST, "--sweep", "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    rows = [line.split() for line in text.splitlines()]
    assert [int(r[0]) for r in rows if r and r[0].isdigit()] == list(bench.SWEEP_BLOCKS)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_json(capsys) -> None:
    assert run_bench([*FAST, "--sweep", "--json", "--channels", "3"]) == 0
    data = json.loads(capsys.readouterr().out)
    blocks = [r["config"]["block_size"] for r in data["sweep"]]
    assert blocks == list(bench.SWEEP_BLOCKS)
    assert all(r["pedalboard"] is None for r in data["sweep"])  # pedalboard: 1 or 2 channels


def test_plot_without_matplotlib_says_so(capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert run_bench([*FAST, "--sweep", "--plot", "x.png"]) == 2
    assert "matplotlib" in capsys.readouterr().err


def test_ir_from_files(tmp_path, capsys) -> None:
    from pedalboard.io import AudioFile

    ir = (np.random.default_rng(0).standard_normal((2, 4800)) * 0.1).astype(np.float32)
    np.save(tmp_path / "ir.npy", ir)
    with AudioFile(str(tmp_path / "ir.wav"), "w", 48000, 2, bit_depth=32) as f:
        f.write(ir)
    for name in ("ir.npy", "ir.wav"):
        assert run_bench(["--ir", str(tmp_path / name), "--seconds", "0.1", "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["config"]["ir_taps"] == 4800 and data["config"]["ir"].endswith(name)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--ir-seconds", "0"], "--ir-seconds"),
        (["--block", "0"], "positive"),
        (["--ir", "/nonexistent/ir.wav"], "ir.wav"),
        (["--sample-rate", "44100", "--ir", "IR.wav"], "44100"),
        (["--ir-channels", "3"], "--ir-channels 3: give 1 or --channels (2)"),
        (["--true-stereo", "--channels", "1"], "--true-stereo needs --channels 2"),
        (["--true-stereo", "--ir", "IR.wav"], "--true-stereo takes 4 (LL LR RL RR)"),
    ],
)
def test_bad_options_exit_2_with_a_message(argv, match, capsys, tmp_path, monkeypatch) -> None:
    from pedalboard.io import AudioFile

    monkeypatch.chdir(tmp_path)
    with AudioFile("IR.wav", "w", 48000, 1) as f:
        f.write(np.zeros((1, 100), np.float32))
    assert run_bench(argv) == 2
    assert match in capsys.readouterr().err


def test_realtime_mode_is_undone_and_paced() -> None:
    import os
    import time

    before = os.sched_getscheduler(0)
    how, restore = bench._enter_realtime()
    try:
        assert "SCHED_FIFO" in how
    finally:
        if restore is not None:
            restore()
    assert os.sched_getscheduler(0) == before
    pacer, t0 = engine._Pacer(0.002, on=True), time.perf_counter()
    for _ in range(5):
        pacer.wait()
    assert time.perf_counter() - t0 >= 0.009  # an audio clock: one block per period


@pytest.mark.parametrize(
    ("argv", "shape", "kind"),
    [
        (["--ir-channels", "1"], [1, 9600], "one IR on every channel"),
        (["--ir-channels", "2"], [2, 9600], "2-channel IR"),
        (["--true-stereo"], [2, 2, 9600], "true stereo: 2 inputs x 2 outputs"),
    ],
)
def test_ir_shapes_are_timed_against_pedalboard_doing_the_same(argv, shape, kind, capsys) -> None:
    assert run_bench([*FAST, *argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["config"]["ir_shape"] == shape
    assert data["rtverb"]["max_error_vs_fftconvolve"] <= 1e-5  # the matrix's paths summed too
    assert PEDALBOARD_KEYS <= set(data["pedalboard"])  # pedalboard timed on the same IR
    assert run_bench([*FAST, *argv]) == 0
    assert kind in capsys.readouterr().out


def test_pedalboard_builds_true_stereo_from_two_stereo_convolutions() -> None:
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(5)
    ir = rng.standard_normal((2, 2, 300)).astype(np.float32)
    x = rng.standard_normal((2, 4000)).astype(np.float32)
    paths = engine._PedalboardPaths(ir, 48000.0)
    # each Convolution normalizes its own IR: undo it to check the routing
    direct = np.linalg.norm(np.stack([ir[0, 0], ir[1, 1]]), axis=1).max()
    cross = np.linalg.norm(np.stack([ir[1, 0], ir[0, 1]]), axis=1).max()
    a = paths.direct.process(x, 48000.0) * direct / 0.125
    b = paths.cross.process(x[::-1].copy(), 48000.0) * cross / 0.125
    for out in range(2):
        ref = sum(fftconvolve(x[i], ir[i, out])[:4000] for i in range(2))
        np.testing.assert_allclose((a + b)[out], ref, atol=1e-3 * np.abs(ref).max())
