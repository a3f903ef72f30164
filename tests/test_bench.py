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
