"""`to_pedalboard`: an rtverb room as pedalboard plugins, level-matched to rtverb's render."""

from __future__ import annotations

import numpy as np
import pedalboard
import pytest

from rtverb.offline import pedalboard_room
from rtverb.offline.pedalboard_room import ir_to_pedalboard, to_pedalboard
from rtverb.offline.render import render_array
from rtverb.room.presets import load_preset

RATE_HZ = 48000
#: The issue's target: pedalboard's float32 convolution vs rtverb's, relative to the peak.
MATCH_TOLERANCE = 1e-4


def room_ir(seconds: float = 1.0, seed: int = 3) -> np.ndarray:
    """Stand-in room IR (pyroomacoustics' scale: direct sound 1/distance, here 1/2.5 m)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE_HZ)) / RATE_HZ
    ir = 0.05 * rng.standard_normal(t.size) * 10.0 ** (-3.0 * t / (0.7 * seconds))
    ir[: round(0.008 * RATE_HZ)] = 0.0  # 8 ms of flight before the direct sound
    ir[round(0.008 * RATE_HZ)] = 1 / 2.5
    return ir.astype(np.float32)


def signal(channels: int = 2, seconds: float = 1.5) -> np.ndarray:
    rng = np.random.default_rng(7)
    x = np.zeros((channels, round(seconds * RATE_HZ)), np.float32)
    x[:, : RATE_HZ // 2] = 0.3 * rng.standard_normal((channels, RATE_HZ // 2))
    return x


@pytest.mark.parametrize(
    ("wet_db", "dry_db", "predelay_ms"),
    [(-6.0, 0.0, 0.0), (-8.0, 0.0, 5.0), (0.0, -70.0, 0.0), (3.0, -12.0, 40.0), (-70.0, -3.0, 0.0)],
)
def test_matches_rtverb_render_within_1e4_of_peak(wet_db, dry_db, predelay_ms) -> None:
    ir, x = room_ir(), signal()
    board = ir_to_pedalboard(ir, RATE_HZ, wet_db=wet_db, dry_db=dry_db, predelay_ms=predelay_ms)
    assert isinstance(board[0], pedalboard.Convolution) and isinstance(board[1], pedalboard.Gain)
    ours = render_array(x, RATE_HZ, ir, wet_db=wet_db, dry_db=dry_db, predelay_ms=predelay_ms,
                        tail_s=0.0)  # fmt: skip
    theirs = board(x, RATE_HZ)
    assert theirs.shape == ours.shape
    np.testing.assert_allclose(theirs, ours, rtol=0, atol=MATCH_TOLERANCE * np.abs(ours).max())


def test_stereo_ir_keeps_its_balance() -> None:
    ir = np.stack([room_ir(seed=1), 0.5 * room_ir(seed=2)])
    x = signal()
    board = ir_to_pedalboard(ir, RATE_HZ, wet_db=0.0, dry_db=-70.0)
    ours = render_array(x, RATE_HZ, ir, wet_db=0.0, dry_db=-70.0, tail_s=0.0)
    np.testing.assert_allclose(board(x, RATE_HZ), ours, atol=MATCH_TOLERANCE * np.abs(ours).max())


def test_nests_inside_a_users_pedalboard() -> None:
    ir, x = room_ir(0.5), signal(1, 1.0)
    chain = pedalboard.Pedalboard([pedalboard.Gain(gain_db=-6), ir_to_pedalboard(ir, RATE_HZ)])
    ours = render_array(x * 10 ** (-6 / 20), RATE_HZ, ir, tail_s=0.0)
    np.testing.assert_allclose(chain(x, RATE_HZ), ours, atol=MATCH_TOLERANCE * np.abs(ours).max())


def test_to_pedalboard_synthesizes_at_the_rate_and_uses_the_rooms_mix(monkeypatch) -> None:
    import rtverb.synth

    room = load_preset("studio_live_room")
    calls = []

    def fake(r, sample_rate_hz=48000):
        calls.append((r, sample_rate_hz))
        return room_ir()

    monkeypatch.setattr(rtverb.synth, "synthesize", fake)
    board = to_pedalboard(room, 44100)
    assert calls == [(room, 44100)]
    x = signal(2, 1.0)
    ours = render_array(x, 44100, room_ir(), wet_db=room.wet_db, dry_db=room.dry_db,
                        predelay_ms=room.predelay_ms, tail_s=0.0)  # fmt: skip
    np.testing.assert_allclose(board(x, 44100), ours, atol=MATCH_TOLERANCE * np.abs(ours).max())


@pytest.mark.parametrize(
    ("ir", "expected"),
    [
        (np.zeros(100, np.float32), "all zeros"),
        (np.zeros((3, 100), np.float32), "shape"),
        (np.array([1.0, np.nan], np.float32), "NaN"),
        (np.zeros(0, np.float32), "shape"),
    ],
)
def test_bad_irs_are_refused(ir, expected) -> None:
    with pytest.raises(ValueError, match=expected):
        ir_to_pedalboard(ir, RATE_HZ)


def test_documented_normalization_constant() -> None:
    """Pins pedalboard's IR normalization: if a pedalboard release changes it, this fails."""
    ir = room_ir(0.3)
    x = signal(1, 0.5)
    y = pedalboard.Convolution(ir, sample_rate=RATE_HZ)(x, RATE_HZ)
    plain = render_array(x, RATE_HZ, ir, wet_db=0.0, dry_db=-70.0, tail_s=0.0)
    gain = pedalboard_room.PEDALBOARD_IR_NORM / np.linalg.norm(ir)
    np.testing.assert_allclose(y, gain * plain, atol=MATCH_TOLERANCE * gain * np.abs(plain).max())


def test_exported_from_the_package() -> None:
    import rtverb

    assert rtverb.to_pedalboard is to_pedalboard
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rtverb.nope  # noqa: B018


def test_a_rooms_pair_becomes_a_stereo_convolution_and_true_stereo_is_refused() -> None:
    import dataclasses

    from rtverb.synth import synthesize

    room = dataclasses.replace(load_preset("concert_hall"), spread_m=0.0)  # an ORTF pair
    board = to_pedalboard(room, RATE_HZ)
    x = signal()
    ours = render_array(x, RATE_HZ, synthesize(room, RATE_HZ), wet_db=room.wet_db,
                        dry_db=room.dry_db, predelay_ms=room.predelay_ms, tail_s=0.0)  # fmt: skip
    np.testing.assert_allclose(board(x, RATE_HZ), ours, atol=MATCH_TOLERANCE * np.abs(ours).max())
    with pytest.raises(ValueError, match="true-stereo IR .* set source spread_m = 0"):
        to_pedalboard(load_preset("concert_hall"), RATE_HZ)  # its stage is spread 6 m wide
    with pytest.raises(ValueError, match="true-stereo IR"):
        ir_to_pedalboard(np.ones((2, 2, 10), np.float32), RATE_HZ)
