"""The room-change path's fast forms equal their straightforward forms (oracles in this file).

Each fast path in `synth.early`, `synth.features` and `synth.late` replaced a plainer
computation (issue 4: room change -> ready IR). These pin them to it: scipy's ``sosfiltfilt``
for the high-pass, ``np.interp`` and a float64 band sum for the late part, the public feature
functions for the model input, exp/log10 for the analytic envelope.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from rtverb import synth
from rtverb.analysis.acoustics import octave_band
from rtverb.room.presets import PRESETS_DIR
from rtverb.room.room import SPEED_OF_SOUND_M_S, Room
from rtverb.synth import features
from rtverb.synth import late as late_part
from rtverb.synth import physics as physics_module
from rtverb.synth.early import DELAY_SAMPLES, early_ir, highpass, highpass_sos
from rtverb.synth.physics import RoomPhysics

ROOMS = [Room.from_toml(p) for p in sorted(PRESETS_DIR.glob("*.toml"))] + [
    Room.from_dict(e["room"])
    for e in json.loads((Path(__file__).parent / "data" / "regression_rooms.json").read_text())[
        "rooms"
    ]
]
PHYSICS = [RoomPhysics.of(room) for room in ROOMS]
RATES_HZ = [8000, 12345, 22050, 44100, 48000, 96000]  # 12345 Hz: an odd bin (49 samples)
#: The rendered IR may differ from the float64 reference by float32 rounding of a band sum.
LATE_RTOL_OF_PEAK = 1e-6


@pytest.mark.parametrize("fs", RATES_HZ)
@pytest.mark.parametrize("n", [10, 11, 100, 9000])
def test_highpass_is_scipys_sosfiltfilt(fs: int, n: int) -> None:
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * np.exp(-np.arange(n) / 2000)).astype(np.float32)
    x[: n // 3] = 0.0  # an early part starts silent
    x += 0.01  # and carries DC, which the high-pass removes
    want = signal.sosfiltfilt(highpass_sos(fs), x)
    np.testing.assert_allclose(highpass(x, fs), want, rtol=0, atol=1e-12 * np.abs(x).max())


def test_highpass_refuses_what_sosfiltfilt_refuses() -> None:
    x = np.ones(9, dtype=np.float32)
    with pytest.raises(ValueError):
        signal.sosfiltfilt(highpass_sos(48000), x)
    with pytest.raises(ValueError, match="longer than 9"):
        highpass(x, 48000)


def _envelopes(physics: RoomPhysics) -> list[np.ndarray]:
    """The room's analytic envelope, and one reshaped by a seeded random walk."""
    analytic = features.analytic_envelope_db(physics)
    walk = np.cumsum(np.random.default_rng(7).normal(0, 0.5, analytic.shape), axis=-1)
    return [analytic, np.maximum(analytic + walk, features.FLOOR_DB)]


def _reference_late(envelope_db: np.ndarray, fs: float) -> np.ndarray:
    """`rtverb.late_part.late_ir` in float64, per band with np.interp and a power of ten."""
    bin_samples = int(np.floor(fs * features.HIST_BIN_S))
    table = late_part._noise_table(fs).astype(np.float64)
    bands = len(table) // 2
    t0, t1 = table[:bands], table[bands:]
    centres = (np.arange(t0.shape[1] - 1) + 0.5) * bin_samples / fs
    db = np.stack([np.interp(centres, features.FRAME_TIMES_S, e) for e in envelope_db[:bands]])
    db += features.air_db(centres)[:bands]
    audible = np.nonzero(db.max(axis=0) > db.max() + late_part.TAIL_FLOOR_DB)[0]
    n_bins = int(audible[-1]) + 1
    amp = np.sqrt(10 ** (db[:, :n_bins] / 10) * (bin_samples / fs / features.HIST_BIN_S))
    ext = np.concatenate([amp[:, :1], amp, amp[:, -1:]], axis=1)
    n = n_bins + 1
    out = np.einsum("bs,bst->st", ext[:, :n], t0[:, :n])
    out += np.einsum("bs,bst->st", ext[:, 1 : n + 1], t1[:, :n])
    return out.ravel()[bin_samples // 2 : bin_samples // 2 + n_bins * bin_samples]


@pytest.mark.parametrize("fs", RATES_HZ)
def test_late_part_matches_a_float64_reference(fs: int) -> None:
    for physics in PHYSICS[::3]:
        for envelope in _envelopes(physics):
            want = _reference_late(envelope, fs)
            got = late_part.late_ir(envelope, fs)
            assert got.dtype == np.float32 and got.shape == want.shape
            atol = LATE_RTOL_OF_PEAK * np.abs(want).max()
            np.testing.assert_allclose(got, want, rtol=0, atol=atol)


@pytest.mark.parametrize("fs", [8000, 48000])
def test_late_envelope_is_np_interp_with_air_absorption(fs: int) -> None:
    envelope = _envelopes(PHYSICS[0])[1]
    envelope[3, 100:140] = -np.inf  # np.interp's own rules apply to infinite values
    grid = late_part._late_grid(float(fs))
    for env in (envelope[:, ::-1].copy(), envelope):
        want = np.stack([np.interp(grid.centres_s, features.FRAME_TIMES_S, e) for e in env])
        want = want[: len(grid.air_db)] + grid.air_db
        np.testing.assert_array_equal(late_part._late_db(env, fs), want)


@pytest.mark.parametrize("fs", [12345, 16000, 44100, 48000])
def test_render_is_the_early_part_plus_the_delayed_late_part(fs: int) -> None:
    for physics in PHYSICS[:4]:
        envelope = _envelopes(physics)[1]
        early, late = early_ir(physics, fs), late_part.late_ir(envelope, fs)
        want = np.zeros(max(len(early), DELAY_SAMPLES + len(late)), dtype=np.float32)
        want[DELAY_SAMPLES : DELAY_SAMPLES + len(late)] = late
        want[: len(early)] += early
        np.testing.assert_array_equal(late_part.add_late(early, envelope, fs), want)
        # rendering equalizes the noise bands up to 1 kHz, and nothing above them
        changed = synth.render_ir(physics, envelope, fs) - want
        above = [octave_band(x, fs, 4000.0) for x in (changed, want)]
        assert np.sum(above[0] ** 2) < 1e-6 * np.sum(above[1] ** 2)
        assert np.sum(octave_band(changed, fs, 500.0) ** 2) > 0


def test_short_late_part_inside_the_early_part() -> None:
    physics = PHYSICS[0]
    silent = np.full((features.N_BANDS, features.N_FRAMES), features.FLOOR_DB)
    silent[:, 0] = -60.0  # a few ms of late energy: the early part outlasts it
    ir, early = synth.render_ir(physics, silent, 48000), early_ir(physics, 48000)
    assert len(ir) == len(early)
    late = late_part.late_ir(silent, 48000)
    np.testing.assert_array_equal(
        ir[DELAY_SAMPLES + len(late) :], early[DELAY_SAMPLES + len(late) :]
    )


def test_model_input_is_its_public_parts() -> None:
    time_s = features.FRAME_TIMES_S / (features.N_FRAMES * features.FRAME_S)
    for physics in PHYSICS:
        x, baseline = features.model_input(physics)
        analytic = features.analytic_envelope_db(physics)
        np.testing.assert_array_equal(baseline, analytic)
        want = np.concatenate(
            [
                time_s[None],
                x[1:2],  # time since the direct sound: computed only here
                analytic / features.BASELINE_SCALE_DB,
                np.repeat(features.room_vector(physics)[:, None], features.N_FRAMES, axis=1),
            ]
        ).astype(np.float32)
        np.testing.assert_array_equal(x, want)


def test_analytic_envelope_is_the_exponential_decay_in_db() -> None:
    for room, physics in zip(ROOMS, PHYSICS, strict=True):
        areas = room.surface_areas_m2()
        alpha = (areas @ physics.absorption) / areas.sum()
        area = areas.sum()
        tau = 0.161 * room.volume_m3 / (-area * np.log1p(-alpha)) / np.log(1e6)
        total = features.DIFFUSE_GAIN * (1 - alpha) / (area * alpha)
        t = features.FRAME_TIMES_S - room.distance_m / SPEED_OF_SOUND_M_S
        level = (
            total[:, None]
            * (features.HIST_BIN_S / tau[:, None])
            * np.exp(-np.maximum(t, 0) / tau[:, None])
        )
        db = np.maximum(10 * np.log10(np.maximum(level, 1e-30)), features.FLOOR_DB)
        want = np.where(t >= 0, db, features.FLOOR_DB)
        np.testing.assert_allclose(features.analytic_envelope_db(physics), want, rtol=0, atol=1e-9)


def test_a_room_change_resolves_the_materials_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    resolve = physics_module.band_absorption

    def counted(room: Room) -> np.ndarray:
        calls.append(room)
        return resolve(room)

    monkeypatch.setattr(physics_module, "band_absorption", counted)
    synth.synthesize(dataclasses.replace(ROOMS[0]), 48000)
    assert len(calls) == 1
