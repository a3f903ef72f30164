"""The low bands' equalization (`rtverb.synth.equalize`): the late part's energy in each window
after the direct sound is the envelope's, whatever the noise draw."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import signal

from rtverb.analysis.acoustics import measure, octave_band
from rtverb.room.params import BANDS_HZ
from rtverb.room.presets import load_named_preset
from rtverb.room.room import Room
from rtverb.synth import equalize, features, late
from rtverb.synth.early import DELAY_SAMPLES, early_ir, octave_band_sos, onset_sample
from rtverb.synth.ir import render_ir
from rtverb.synth.physics import MODEL_BANDS_HZ, RoomPhysics
from rtverb.synth.stereo import band_coherence

FS = 48000
ROOMS = ("classroom", "living_room", "small_club", "concert_hall")
EQUALIZED = [i for i, c in enumerate(BANDS_HZ) if equalize.MIN_BAND_HZ <= c <= equalize.MAX_BAND_HZ]
#: Two noise draws' C50 in the equalized bands differ on average by at most this share of
#: what they differ unequalized: one round of measuring and scaling leaves about a quarter
#: (0.17-0.31 on these rooms; the filters spread each window's change into its neighbours).
DRAW_SHARE = 0.5
#: Each capsule of a pair equalized on its mid keeps at most this share of its draw's effect
#: (measured 0.76 and 0.87 on an ORTF pair, whose capsules are far from coherent above 250 Hz;
#: the mid keeps 0.23).
PAIR_SHARE = 0.95
#: After equalization each window's energy is its target within this (dB; measured up to 0.47
#: on the living room's windows, 2.2 dB unequalized).
WINDOW_TOL_DB = 0.6
#: The blend moves the first 50 ms by `C50_BLEND` of the gap between the C50 the equalizer
#: expects and the head's; the measured C50 moves by this share of that or more (measured
#: 0.77-0.98: a quarter of a band's filter reading is its neighbours' noise, which the band's
#: gain does not move) and by no more than the whole.
BLEND_SHARE = 0.6


@pytest.fixture
def noise_seed(monkeypatch):
    """Set the late part's noise seed: every cache built from the tables starts again."""
    caches = (late._noise_table, late._table_energy, late._mixed_table)

    def use(seed: int) -> None:
        monkeypatch.setattr(late, "_NOISE_SEED", seed)
        for cached in caches:
            cached.cache_clear()

    yield use
    for cached in caches:
        cached.cache_clear()


def _parts(room: Room) -> tuple[RoomPhysics, np.ndarray, int]:
    physics = RoomPhysics.of(room)
    onset = onset_sample(room.source_position_m, room.listener_position_m, FS)
    return physics, features.analytic_envelope_db(physics), onset


def _c50(ir: np.ndarray, distance_m: float) -> np.ndarray:
    return np.array(measure(ir, FS, distance_m, DELAY_SAMPLES).C50_db)[EQUALIZED]


@pytest.mark.parametrize("name", ROOMS)
def test_equalized_bands_read_nearly_the_same_c50_from_any_noise_draw(name, noise_seed):
    room = load_named_preset(name)
    physics, envelope, onset = _parts(room)
    spread = {}
    for equalized in (False, True):
        c50 = []
        for seed in (1, 2):
            noise_seed(seed)
            at = onset if equalized else None
            c50.append(
                _c50(late.add_late(early_ir(physics, FS), envelope, FS, at), room.distance_m)
            )
        spread[equalized] = np.abs(c50[0] - c50[1]).mean()
    assert spread[True] <= DRAW_SHARE * spread[False], spread


def test_each_window_reaches_its_target(monkeypatch):
    made, original = [], equalize.Equalizer
    monkeypatch.setattr(equalize, "Equalizer", lambda *a: made.append(original(*a)) or made[-1])
    room = load_named_preset("living_room")
    physics, envelope, onset = _parts(room)
    early = early_ir(physics, FS)
    late.add_late(early, envelope, FS, onset)  # its equalizer holds the windows' targets
    eq = made[0]
    deviation = {}
    for equalized in (False, True):
        ir = late.add_late(early, envelope, FS, onset if equalized else None)
        got = []
        for band in eq.bands:
            energy = octave_band(ir, FS, MODEL_BANDS_HZ[band]) ** 2
            edges = eq.edges[0]
            got.append([energy[a:b].sum() for a, b in zip(edges[:-1], edges[1:], strict=True)])
        deviation[equalized] = np.abs(10 * np.log10(np.array(got) / eq.want[0])).max()
    assert deviation[True] < WINDOW_TOL_DB < deviation[False], deviation


def test_a_pair_is_equalized_on_its_mid(noise_seed):
    """The mid (the capsules' mean) as a mono path is; each capsule partly (where the capsules
    are incoherent each keeps half its draw's variance)."""
    room = dataclasses.replace(load_named_preset("classroom"), pair="ortf")
    physics, envelope, _ = _parts(room)
    capsules = room.capsules()
    distance = room.distance_m
    onsets = [[onset_sample(room.source_position_m, c.position_m, FS) for c in capsules]]
    early = [[early_ir(physics, FS, room.source_position_m, c) for c in capsules]]
    coherence = band_coherence(*capsules, float(FS))
    spread = {}
    for equalized in (False, True):
        c50 = []
        for seed in (1, 2):
            noise_seed(seed)
            ir = late.add_late_pairs(
                early, [envelope], FS, (1.0, 1.0), coherence, onsets if equalized else None
            )[0]
            c50.append([_c50(x, distance) for x in (ir[0], ir[1], ir.mean(axis=0))])
        spread[equalized] = np.abs(np.subtract(*c50)).mean(axis=-1)  # left, right, mid
    assert spread[True][2] <= DRAW_SHARE * spread[False][2], spread
    assert np.all(spread[True][:2] <= PAIR_SHARE * spread[False][:2]), spread


def test_the_c50_blend_moves_the_first_50_ms_towards_the_head():
    room = Room()
    physics, envelope, _ = _parts(room)

    def c50(ir: np.ndarray) -> np.ndarray:
        return np.array(measure(ir, FS, room.distance_m, DELAY_SAMPLES).C50_db)

    before = c50(render_ir(physics, envelope, FS))
    target = np.append(before, np.nan) + 3.0  # 16 kHz: no analysis band
    after = c50(render_ir(physics, envelope, FS, target))
    moved = (after - before)[EQUALIZED] / (equalize.C50_BLEND * 3.0)
    assert np.all((BLEND_SHARE <= moved) & (moved <= 1.0)), moved
    others = [i for i in range(len(BANDS_HZ)) if i not in EQUALIZED and BANDS_HZ[i] > 1000]
    np.testing.assert_allclose((after - before)[others], 0.0, atol=0.05)  # leakage only


def test_noise_energy_is_what_the_filters_pass_of_the_table():
    """The FFT computation against the analysis filter run forward and backward in time."""
    fs = float(FS)
    bands = late.noise_bands(fs).astype(np.float64)
    got = equalize.noise_energy(bands, bands, fs, late._bin_samples(fs))
    pad = np.zeros((len(bands), FS // 2))
    for i, band in enumerate(equalize._plan(fs).model_bands):
        sos = octave_band_sos(fs, MODEL_BANDS_HZ[band])
        filtered = signal.sosfiltfilt(sos, np.hstack([pad, bands, pad]), axis=1, padtype=None)
        want = filtered @ filtered.T / (bands.shape[1] / late._bin_samples(fs))
        # the FFT's circular ends: a 4 s table's first and last filter reach wrap around
        np.testing.assert_allclose(got[i], want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
