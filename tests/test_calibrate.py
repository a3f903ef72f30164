"""The T30 calibration of late envelopes (`rtverb.synth.calibrate`)."""

import numpy as np
import pytest

from rtverb.analysis.acoustics import measure
from rtverb.room.params import BANDS_HZ
from rtverb.room.room import Room
from rtverb.synth import default_synthesizer, features, render_ir
from rtverb.synth.calibrate import (
    HINGE_DB,
    apply_tilt,
    band_leakage,
    calibrate_t30,
    decay_times_s,
    edc_db,
    tilt_db_s,
)
from rtverb.synth.early import DELAY_SAMPLES
from rtverb.synth.ir import per_source
from rtverb.synth.physics import RoomPhysics

#: The calibration's Newton iterations stop within this of the target (relative T30): it
#: keeps its best of 7 tries on a predicted curve.
PREDICTED_RTOL = 0.02
#: The T30 measured on the rendered IR against the target: the prediction on the 8 ms frame
#: grid misses the filters' own smearing (held-out rooms: median 1.6 %, p90 9 %); 1 kHz and
#: up, where a clean single slope leaves little of that.
RENDERED_RTOL = 0.05
_FS = 48000
_T30 = (-5.0, -35.0)


def _room() -> tuple[RoomPhysics, np.ndarray, np.ndarray]:
    physics = RoomPhysics.of(Room())
    return physics, features.analytic_envelope_db(physics), features.early_energy(physics)


def test_leakage_rows_are_shares_of_the_band_and_its_neighbours():
    leak = band_leakage()
    assert leak.shape == (len(BANDS_HZ), features.N_BANDS)
    assert np.allclose(leak.sum(axis=1), 1.0)
    for b, row in enumerate(leak):
        assert row[b] > 0.8, f"band {b} reads mostly its own noise"
        far = [k for k in range(len(row)) if abs(k - b) >= 2]
        assert row[far].sum() < 0.02, f"band {b} hears only its neighbours"
    # Antoni's crossfade spans half the band above each edge: a reading hears the band above
    # it (wider in hertz) more than the band below (2.5 % from 250 Hz, 5 % from 1 kHz at 500 Hz)
    assert leak[2, 3] > leak[2, 1] > 0.01


@pytest.mark.parametrize("factors", [[1.3] * 7, [0.7] * 7, [1.3, 1.25, 1.2, 1.15, 1.1, 1.05, 1.0]])
def test_calibration_reaches_the_target_on_the_predicted_curve_and_keeps_the_onset(factors):
    # (neighbouring bands' targets far apart are out of reach: a band's analysis filter hears
    # its neighbours' noise, and a slower neighbour sets the reading's tail)
    physics, envelope, early = _room()
    before = decay_times_s(edc_db(envelope, early), *_T30)
    target = np.append(before * np.array(factors), np.nan)
    out = calibrate_t30(envelope, early, target)
    after = decay_times_s(edc_db(out, early), *_T30)
    assert np.allclose(after, target[:7], rtol=PREDICTED_RTOL)
    assert np.array_equal(out[7], envelope[7])  # 16 kHz: no analysis band, left alone
    edc = edc_db(envelope, early)
    for b in range(7):
        hinge = np.argmax(edc[b] <= HINGE_DB)
        assert np.array_equal(out[b, : hinge + 1], envelope[b, : hinge + 1])


def test_a_band_without_a_target_is_left_alone():
    _, envelope, early = _room()
    target = np.full(features.N_BANDS, np.nan)
    target[3] = 1.5
    out = calibrate_t30(envelope, early, target)
    others = [b for b in range(features.N_BANDS) if b != 3]
    assert np.array_equal(out[others], envelope[others])
    assert not np.array_equal(out[3], envelope[3])


@pytest.mark.parametrize("factor", [0.75, 1.35])
def test_the_rendered_ir_measures_the_target_t30(factor):
    physics, envelope, early = _room()
    plain = measure(render_ir(physics, envelope, _FS), _FS, physics.distance_m, DELAY_SAMPLES)
    target = np.append(np.array(plain.T30_s) * factor, np.nan)
    ir = render_ir(physics, calibrate_t30(envelope, early, target), _FS)
    got = np.array(measure(ir, _FS, physics.distance_m, DELAY_SAMPLES).T30_s)
    for b, center in enumerate(BANDS_HZ):
        if 1000 <= center <= 4000:
            assert got[b] == pytest.approx(target[b], rel=RENDERED_RTOL), f"{center} Hz"


def test_a_slower_decay_never_lifts_the_envelope_above_where_the_tilt_starts():
    physics, envelope, early = _room()
    flat = envelope.copy()
    flat[:, 150:] = np.maximum(flat[:, 150:].min(axis=1, keepdims=True), -120.0)  # a flat tail
    edc = edc_db(flat, early)
    target = np.append(3 * decay_times_s(edc, *_T30), np.nan)
    out = calibrate_t30(flat, early, target)
    for b in range(7):
        hinge = np.argmax(edc[b] <= HINGE_DB)
        assert out[b, hinge:].max() <= flat[b, hinge] + 1e-9


def test_the_points_of_a_spread_source_share_one_calibration():
    synth = default_synthesizer()
    room = Room(pair="ortf", spread_m=2.0)
    points = per_source(RoomPhysics.of(room))
    got = synth.envelopes_db(points)
    synth.calibrate = False
    try:
        plain = synth.envelopes_db(points)
    finally:
        synth.calibrate = True
    early = [features.early_energy(p) for p in points]
    heads = synth.heads(points[0])[0]
    tilt = tilt_db_s(plain[0], early[0], heads)
    assert np.abs(tilt).max() > 0  # the shipped model's decays do get moved
    for envelope, plain_envelope, energy in zip(got, plain, early, strict=True):
        np.testing.assert_array_equal(envelope, apply_tilt(plain_envelope, energy, tilt))
    np.testing.assert_array_equal(got[0], calibrate_t30(plain[0], early[0], heads))
