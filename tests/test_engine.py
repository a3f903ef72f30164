"""`rtverb.Engine`: wet/dry mix aligned, smoothed gains, pre-delay, output guard, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import convolve_reference, process_in_calls

from rtverb.dsp.engine import GAIN_RAMP_MS, Engine, db_to_gain

SR = 48000
BLOCK = 128
#: Max abs error relative to the peak (float32 FFT convolution; see test_convolver).
TOL = 1e-5


def noise(seed: int, shape: tuple[int, ...], decay_taps: float | None = None) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape)
    if decay_taps:
        x *= np.exp(-np.arange(shape[-1]) / decay_taps)
    return x.astype(np.float32)


def expected(x: np.ndarray, ir: np.ndarray, wet_db: float, dry_db: float, latency: int):
    wet, dry = db_to_gain(wet_db), db_to_gain(dry_db)
    return convolve_reference(x, ir, wet_gain=wet, dry_gain=dry, latency=latency)


def close(y: np.ndarray, ref: np.ndarray) -> bool:
    return bool(np.max(np.abs(y - ref)) <= TOL * np.max(np.abs(ref)))


@pytest.mark.parametrize("calls", [[BLOCK], [1, 77, 300], [0, 4000]])
def test_mix_is_aligned_wet_plus_dry(calls: list[int]) -> None:
    ir, x = noise(1, (2, 3000), 600), noise(2, (2, 9000))
    engine = Engine(ir, block_size=BLOCK, wet_db=-6.0, dry_db=-3.0, max_ir_s=0.1)
    assert engine.latency_samples == BLOCK
    assert close(process_in_calls(engine, x, calls), expected(x, ir, -6.0, -3.0, BLOCK))


def test_silent_db_is_silence() -> None:
    ir, x = noise(3, (2000,), 400), noise(4, (2, 5000))
    engine = Engine(ir, block_size=BLOCK, wet_db=-70.0, dry_db=0.0, max_ir_s=0.1)
    y = engine.process(x)
    np.testing.assert_array_equal(y[:, BLOCK:], x[:, :-BLOCK])
    assert db_to_gain(-70.0) == 0.0 and db_to_gain(-80.0) == 0.0


def test_gain_changes_ramp_without_steps() -> None:
    ir = np.array([1.0], np.float32)  # wet = x delayed: the output is the gain itself
    engine = Engine(ir, channels=1, block_size=BLOCK, wet_db=0.0, dry_db=-70.0, max_ir_s=0.1)
    x = np.ones((1, 4 * SR // 10), np.float32)
    y = np.empty_like(x)
    engine.process(x[:, :1000], y[:, :1000])
    engine.set_mix(wet_db=-70.0)
    feed_out = process_in_calls(engine, x[:, 1000:], [BLOCK, 1, 33])
    y[:, 1000:] = feed_out
    ramp = round(GAIN_RAMP_MS * SR / 1000)
    steps = np.diff(y[0, 1000:])
    assert np.max(np.abs(steps)) <= 1.0 / ramp + 1e-6  # linear: the smallest possible steps
    assert np.all(steps <= 1e-7)  # monotonic, no overshoot
    assert y[0, 999] == 1.0 and np.all(y[0, 1000 + ramp :] == 0.0)
    assert 0.4 < y[0, 1000 + ramp // 2] < 0.6


def test_predelay_delays_the_wet_only() -> None:
    ir, x = noise(5, (1500,), 300), noise(6, (2, 8000))
    engine = Engine(ir, block_size=BLOCK, wet_db=0.0, dry_db=0.0, predelay_ms=10.0, max_ir_s=0.1)
    delayed = np.concatenate([np.zeros(480, np.float32), ir])
    assert close(engine.process(x), expected(x, delayed, 0.0, 0.0, BLOCK))


def test_predelay_change_crossfades_to_the_delayed_ir() -> None:
    ir, x = noise(7, (1500,), 300), noise(8, (2, 40000))
    engine = Engine(ir, block_size=BLOCK, wet_db=0.0, dry_db=0.0, max_ir_s=0.1)
    y = np.empty_like(x)
    engine.process(x[:, :10000], y[:, :10000])
    engine.set_mix(predelay_ms=20.0)
    assert engine.predelay_ms == 20.0
    engine.process(x[:, 10000:], y[:, 10000:])
    assert engine.swaps_started == 1 and engine.last_swap_started_s > 0
    delayed = np.concatenate([np.zeros(960, np.float32), ir])
    assert close(y[:, :10000], expected(x, ir, 0.0, 0.0, BLOCK)[:, :10000])
    assert close(y[:, 20000:], expected(x, delayed, 0.0, 0.0, BLOCK)[:, 20000:])
    engine.set_mix(predelay_ms=20.0)  # unchanged: no new crossfade
    engine.process(x[:, :1000])
    assert engine.swaps_started == 1


def test_set_ir_keeps_the_predelay() -> None:
    ir, other, x = noise(9, (1000,), 200), noise(10, (2, 800), 200), noise(11, (2, 30000))
    engine = Engine(ir, block_size=BLOCK, wet_db=0.0, dry_db=-70.0, predelay_ms=5.0, max_ir_s=0.1)
    engine.set_ir(other)
    y = engine.process(x)
    delayed = np.concatenate([np.zeros((2, 240), np.float32), other], axis=1)
    assert close(y[:, 15000:], expected(x, delayed, 0.0, -70.0, BLOCK)[:, 15000:])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_input_enters_as_silence(bad: float) -> None:
    ir, x = noise(12, (2, 2000), 500), noise(13, (2, 20 * BLOCK))
    x[1, 5 * BLOCK + 7] = bad
    engine = Engine(ir, block_size=BLOCK, max_ir_s=0.1)
    y = process_in_calls(engine, x, [BLOCK])
    assert engine.nonfinite_blocks == 1 and not engine.convolver.resetting
    # No reset: the block's input is dropped and the tail of what came before rings on.
    clean = x.copy()
    clean[:, 5 * BLOCK : 6 * BLOCK] = 0
    np.testing.assert_array_equal(y, Engine(ir, block_size=BLOCK, max_ir_s=0.1).process(clean))


def test_in_place_processing() -> None:
    ir, x = noise(14, (2, 1000), 300), noise(15, (2, 3000))
    a, b = Engine(ir, block_size=BLOCK, max_ir_s=0.1), Engine(ir, block_size=BLOCK, max_ir_s=0.1)
    ref = a.process(x)
    inplace = x.copy()
    for i in range(0, 3000, 100):
        b.process(inplace[:, i : i + 100], inplace[:, i : i + 100])
    np.testing.assert_array_equal(inplace, ref)


def test_bad_input_is_refused_and_the_engine_keeps_going() -> None:
    ir, x = noise(16, (2, 1000), 300), noise(17, (2, 6000))
    engine = Engine(ir, block_size=BLOCK, wet_db=0.0, dry_db=0.0, max_ir_s=0.1)
    y = np.empty_like(x)
    engine.process(x[:, :3000], y[:, :3000])
    for bad, match in [
        (np.ones(SR // 10 + 1, np.float32), "max_ir_s"),
        (np.ones(10, np.int32), "float32 or float64"),
        (np.array([0.0, np.nan]), "NaN"),
        (np.ones((3, 10), np.float32), "3 channels"),
        (np.ones(0, np.float32), "empty"),
    ]:
        with pytest.raises(ValueError, match=match):
            engine.set_ir(bad)
    for kwargs, match in [
        ({"wet_db": float("nan")}, "wet_db"),
        ({"dry_db": 13.0}, "dry_db"),
        ({"predelay_ms": 250.0}, "predelay_ms"),
        ({"predelay_ms": -1.0}, "predelay_ms"),
    ]:
        with pytest.raises(ValueError, match=match):
            engine.set_mix(**kwargs)
    for block, match in [
        (np.zeros((1, 64), np.float32), r"shape \(2, frames\)"),
        (np.zeros((2, 64)), "float32"),
    ]:
        with pytest.raises(ValueError, match=match):
            engine.process(block)
    engine.process(x[:, 3000:], y[:, 3000:])
    assert engine.swaps_started == 0
    assert close(y, expected(x, ir, 0.0, 0.0, BLOCK))


def test_longest_ir_fits_with_the_longest_predelay() -> None:
    engine = Engine(np.ones(SR // 10, np.float32), block_size=BLOCK, max_ir_s=0.1)
    engine.set_mix(predelay_ms=200.0)
    engine.process(np.zeros((2, 4 * BLOCK), np.float32))
    assert engine.swaps_started == 1


def test_overflow_inside_is_caught_at_the_output() -> None:
    ir = np.array([1e10, 0.5], np.float32)  # finite in, infinite out: float32 overflows
    engine = Engine(ir, channels=1, block_size=BLOCK, wet_db=0.0, max_ir_s=0.1)
    x = np.zeros((1, 4 * BLOCK), np.float32)
    x[0, 10] = 1e30
    with np.errstate(all="ignore"):
        y = process_in_calls(engine, x, [BLOCK])
    assert np.all(np.isfinite(y)) and engine.nonfinite_blocks == 1
    # The state is reset over the next blocks (silence meanwhile), then runs clean again.
    z = noise(18, (1, 6 * BLOCK))
    while engine.convolver.resetting:
        assert not np.any(engine.process(z[:, :BLOCK]))
    fresh = Engine(ir, channels=1, block_size=BLOCK, wet_db=0.0, max_ir_s=0.1)
    np.testing.assert_array_equal(engine.process(z), fresh.process(z))


def test_left_only_input_through_a_true_stereo_engine_gives_h_ll_and_h_lr() -> None:
    ir = noise(21, (2, 2, 3000), decay_taps=600)  # (inputs, outputs, taps)
    x = np.zeros((2, 3000 + BLOCK), np.float32)
    x[0, 0] = 1.0  # the left input only, an impulse
    engine = Engine(ir, channels=2, block_size=BLOCK, sample_rate_hz=SR, wet_db=0.0, dry_db=-70.0)
    y = engine.process(x)[:, BLOCK:]
    for out in range(2):  # left out: h_LL, right out: h_LR; nothing of the right input's paths
        assert np.max(np.abs(y[out] - ir[0, out])) <= TOL * np.max(np.abs(ir[0, out]))
