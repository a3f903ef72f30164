"""`RoomPhysics` and the room encoder's features against hand computations for simple rooms."""

import dataclasses
import math

import numpy as np
import pytest

from rtverb.room.room import SPEED_OF_SOUND_M_S, Room, Surfaces
from rtverb.synth import features
from rtverb.synth.physics import AIR_ABSORPTION_PER_M, RoomPhysics

#: Closed forms evaluated in another order: equal to float64 rounding.
RTOL = 1e-12
SIDE_M = 10.0


def _cube(alpha: float) -> Room:
    """A 10 m cube with the same absorption on every surface and in every band."""
    return Room(
        size_m=(SIDE_M, SIDE_M, SIDE_M),
        surfaces=Surfaces(*[alpha] * 6),
        source_position_m=(2.0, 3.0, 4.0),
        listener_position_m=(7.0, 6.0, 5.0),
    )


def test_cube_times_by_hand() -> None:
    p = RoomPhysics.of(_cube(0.1))
    volume, surface = SIDE_M**3, 6 * SIDE_M**2
    air = 4 * AIR_ABSORPTION_PER_M * volume
    np.testing.assert_allclose(p.mean_absorption, 0.1, rtol=RTOL)
    np.testing.assert_allclose(p.sabine_s, 0.161 * volume / (surface * 0.1 + air), rtol=RTOL)
    eyring = 0.161 * volume / (-surface * math.log(0.9) + air)
    np.testing.assert_allclose(p.eyring_s, eyring, rtol=RTOL)
    np.testing.assert_allclose(p.eyring_no_air_s, 0.161 * volume / (-surface * math.log(0.9)))
    # uniform absorption: every axis absorbs alike, so Fitzroy and Arau-Puchades are Eyring
    np.testing.assert_allclose(p.fitzroy_s, eyring, rtol=RTOL)
    np.testing.assert_allclose(p.arau_s, eyring, rtol=RTOL)
    assert p.mean_free_path_m == pytest.approx(4 * volume / surface, rel=RTOL)


def test_sabine_is_eyrings_limit_for_little_absorption() -> None:
    ratios = [
        RoomPhysics.of(_cube(a)).eyring_s / RoomPhysics.of(_cube(a)).sabine_s
        for a in (0.2, 0.05, 0.01)
    ]
    # Eyring / Sabine = a / -ln(1 - a) without air: 0.896, 0.975, 0.995, falling towards 1
    np.testing.assert_array_less(ratios[0], ratios[1])
    np.testing.assert_array_less(ratios[1], ratios[2])
    np.testing.assert_allclose(ratios[2], 1.0, atol=0.006)


def test_cube_clarity_and_critical_distance_by_hand() -> None:
    p = RoomPhysics.of(_cube(0.1))
    t, r, v = p.eyring_s, p.distance_m, SIDE_M**3
    reflected = 31200 * t / v * np.exp(-13.82 * r / SPEED_OF_SOUND_M_S / t)
    late = reflected * np.exp(-13.82 * 0.05 / t)
    want = 10 * np.log10((100 / r**2 + reflected - late) / late)
    np.testing.assert_allclose(p.barron_c50_db, want, rtol=RTOL)
    np.testing.assert_allclose(p.critical_distance_m, np.sqrt(0.161 * v / t / (16 * np.pi)))


def test_absorption_on_one_axis_lengthens_fitzroy_beyond_eyring() -> None:
    # absorbent floor and ceiling, hard walls: the known case where Eyring is too short
    room = dataclasses.replace(
        _cube(0.02),
        surfaces=Surfaces(floor=0.8, ceiling=0.8, east=0.02, west=0.02, north=0.02, south=0.02),
    )
    p = RoomPhysics.of(room)
    assert np.all(p.fitzroy_s > p.arau_s) and np.all(p.arau_s > p.eyring_s)
    np.testing.assert_allclose(p.axis_absorption[2], 0.8, rtol=RTOL)
    np.testing.assert_allclose(p.axis_absorption[:2], 0.02, rtol=RTOL)


def test_physics_features_of_a_cube() -> None:
    p = RoomPhysics.of(_cube(0.1))
    f = features.physics_features(p)
    assert f.shape == (features.N_PHYSICS_FEATURES,) and f.dtype == np.float32
    np.testing.assert_allclose(f[features.EYRING_LOG_S], np.log(p.eyring_s), rtol=1e-6)
    np.testing.assert_allclose(
        f[features.EYRING_NO_AIR_LOG_S], np.log(p.eyring_no_air_s), rtol=1e-6
    )
    np.testing.assert_allclose(f[features.BARRON_C50_DB], p.barron_c50_db, rtol=1e-6)
    assert f[-1] == pytest.approx(0.1)  # scattering
    assert f[-3] == f[-2] == 0.0  # a cube's aspect ratios are 1


def test_physics_arrays_are_read_only() -> None:
    p = RoomPhysics.of(_cube(0.1))
    with pytest.raises(ValueError):
        p.absorption[0, 0] = 0.5


def test_physics_features_do_not_change_when_x_and_y_swap() -> None:
    room = Room(
        size_m=(8.0, 5.0, 3.0),
        surfaces=Surfaces(floor=0.3, ceiling=0.1, east=0.05, west=0.6, north=0.2, south=0.02),
        source_position_m=(2.0, 1.5, 1.2),
        listener_position_m=(6.0, 3.0, 1.7),
    )
    swapped = Room(
        size_m=(5.0, 8.0, 3.0),
        surfaces=Surfaces(floor=0.3, ceiling=0.1, east=0.2, west=0.02, north=0.05, south=0.6),
        source_position_m=(1.5, 2.0, 1.2),
        listener_position_m=(3.0, 6.0, 1.7),
    )
    a, b = (features.physics_features(RoomPhysics.of(r)) for r in (room, swapped))
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert not np.allclose(RoomPhysics.of(room).axis_absorption[0], 0.2)  # the case is non-trivial
