"""rtverb.synth.early against the reference simulator (pyroomacoustics is the oracle)."""

import numpy as np
import pytest

pra = pytest.importorskip("pyroomacoustics")

from rtverb.room.params import BANDS_HZ, SURFACES  # noqa: E402
from rtverb.room.room import Room, Surfaces  # noqa: E402
from rtverb.synth.early import (  # noqa: E402
    band_count,
    band_filters,
    band_split,
    early_ir,
    image_sources,
)
from rtverb.synth.physics import AIR_ABSORPTION_PER_M, MODEL_BANDS_HZ, RoomPhysics  # noqa: E402

#: Early-part energy may differ by this fraction: the simulator delays each arrival with an
#: 81-tap windowed sinc, rtverb with an exact band-limited phase shift (measured ~2-3 %).
EARLY_ENERGY_RTOL = 0.05
#: The simulator keeps image positions and dampings in float32.
FLOAT32_RTOL = 1e-5
#: Largest sample difference of the early parts, relative to the peak (measured ~1-4 %).
EARLY_SAMPLE_ATOL = 0.06

ROOM = Room(
    size_m=(7.3, 5.1, 3.2),
    surfaces=Surfaces(
        floor="carpet_cotton",
        ceiling=0.3,
        east=(0.1, 0.12, 0.15, 0.2, 0.25, 0.3),
        west="brickwork",
        north="hard_surface",
        south="curtains_densely_woven",
    ),
    source_position_m=(2.0, 3.0, 1.5),
    listener_position_m=(5.0, 2.5, 1.2),
    scattering=0.3,
)


def _reference(room: Room, fs: int, ray_tracing: bool):
    alpha = room.absorption()
    materials = {
        s: pra.Material({"coeffs": list(alpha[i]), "center_freqs": list(BANDS_HZ)}, room.scattering)
        for i, s in enumerate(SURFACES)
    }
    sim = pra.ShoeBox(
        list(room.size_m),
        fs=fs,
        materials=materials,
        max_order=3,
        ray_tracing=ray_tracing,
        air_absorption=True,
    )
    sim.add_source(list(room.source_position_m))
    sim.add_microphone(list(room.listener_position_m))
    return sim


@pytest.mark.parametrize("fs", [16000, 44100, 48000])
def test_filter_bank_is_the_simulators(fs):
    # the bank a room renders with (Antoni's in pyroomacoustics 0.10), not its cosine one
    bank = _reference(ROOM, fs, ray_tracing=True).octave_bands
    assert band_count(fs) == bank.n_bands
    # image sources: its synthesis filters, centred one tap later than rtverb's
    np.testing.assert_allclose(
        band_filters(fs)[:, :-1], bank.synthesis(np.eye(bank.n_bands))[:, 1:], atol=1e-12
    )
    # ray tracing: its analysis of the noise
    x = np.random.default_rng(0).standard_normal(3000)
    np.testing.assert_allclose(band_split(x, fs), bank.analysis(x).T, atol=1e-9)


def test_air_absorption_is_the_simulators():
    sim = _reference(ROOM, 48000, ray_tracing=False)
    np.testing.assert_allclose(AIR_ABSORPTION_PER_M, sim.air_absorption, rtol=1e-9)
    assert len(MODEL_BANDS_HZ) == len(sim.octave_bands.centers)


@pytest.mark.parametrize("scattering", [0.0, 0.3])
def test_image_sources_match_the_simulator(scattering):
    room = Room(**{**ROOM.__dict__, "scattering": scattering})
    sim = _reference(room, 48000, ray_tracing=True)
    sim.image_source_model()
    src = sim.sources[0]
    ref_dist = np.linalg.norm(src.images - np.array(room.listener_position_m)[:, None], axis=0)
    dist, damping = image_sources(RoomPhysics.of(room))
    a, b = np.argsort(ref_dist, kind="stable"), np.argsort(dist, kind="stable")
    np.testing.assert_allclose(dist[b], ref_dist[a], rtol=FLOAT32_RTOL)
    # images at equal distances may come in another order: compare sorted damping per band
    np.testing.assert_allclose(
        np.sort(damping, axis=1), np.sort(src.damping, axis=1), rtol=FLOAT32_RTOL
    )


@pytest.mark.parametrize("fs", [16000, 48000])
def test_early_part_matches_the_simulator(fs):
    # Without ray tracing the simulator renders image sources only, and ignores scattering.
    room = Room(**{**ROOM.__dict__, "scattering": 0.0})
    sim = _reference(room, fs, ray_tracing=False)
    sim.compute_rir()
    ref = sim.rir[0][0]
    ours = early_ir(RoomPhysics.of(room), fs)
    n = min(len(ref), len(ours))
    peak = np.abs(ref).max()
    assert np.argmax(np.abs(ours)) == np.argmax(np.abs(ref))
    assert np.abs(ours[:n] - ref[:n]).max() <= EARLY_SAMPLE_ATOL * peak
    assert np.sum(ours**2) == pytest.approx(np.sum(ref**2), rel=EARLY_ENERGY_RTOL)
