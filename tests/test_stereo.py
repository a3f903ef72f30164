"""Stereo rooms: the pair's geometry, per-capsule early parts, late coherence, width, spread."""

import dataclasses
import math

import numpy as np
import pytest
from scipy import signal

from rtverb.room.mics import PAIRS, PATTERNS, Capsule, capsules, sources
from rtverb.room.params import BANDS_HZ, PARAMS_BY_NAME, SURFACES
from rtverb.room.room import MIC_CLEARANCE_M, SPEED_OF_SOUND_M_S, Room, RoomError
from rtverb.synth import synthesize
from rtverb.synth.early import band_filters, early_ir
from rtverb.synth.features import N_FRAMES
from rtverb.synth.ir import per_source
from rtverb.synth.late import add_late_pairs
from rtverb.synth.physics import RoomPhysics
from rtverb.synth.stereo import band_coherence, diffuse_coherence

FS = 48000
#: Late coherence per octave band may differ from the target by this much (the issue's bound;
#: a 4 s flat tail measures it to ~0.05: adjacent bands' filters overlap and the noise is finite).
COHERENCE_ATOL = 0.1
#: Cardioid late energy within this many dB of a third of an omni's (the issue's bound).
DIFFUSE_POWER_DB = 1.0
#: The closed-form coherence against a numerical sphere integral (20 000 directions).
SPHERE_ATOL = 2e-3
#: As in tests/test_ism.py: the simulator's 81-tap sinc vs rtverb's exact fractional delay.
EARLY_ENERGY_RTOL = 0.05
#: Dual mono through a spread source against the point source, late energy: the two points'
#: own envelopes and noise draws differ from the centre's by a few tenths of a dB.
SHARED_POWER_TOL_DB = 1.0
EARLY_SAMPLE_ATOL = 0.06
#: float32 rounding of IR samples (|sample| < 1) after the mid/side sums.
FLOAT32_ATOL = 1e-6
#: A pair's two rendered channels correlate less than this (one channel copied twice: 1.0).
DISTINCT_CHANNELS_CORR = 0.9

HALL = Room(
    size_m=(12.0, 9.0, 5.0),
    source_position_m=(4.0, 4.5, 1.6),
    listener_position_m=(9.0, 4.0, 1.5),
    name="test hall",
)


def _pair(pair: str, **kwargs) -> Room:
    """The hall heard by ``pair``, facing the source unless told otherwise."""
    return dataclasses.replace(HALL, pair=pair, **{"azimuth_deg": 174.0, **kwargs})


# ---- geometry ---------------------------------------------------------------------------


def test_capsules_sit_and_point_as_documented():
    left, right = capsules((5.0, 3.0, 1.2), "ortf", 0.2, 90.0, 55.0)  # facing +y (north)
    np.testing.assert_allclose(left.position_m, (4.9, 3.0, 1.2))  # facing north, left is west
    np.testing.assert_allclose(right.position_m, (5.1, 3.0, 1.2))
    np.testing.assert_allclose(
        left.axis, (-math.sin(math.radians(55)), math.cos(math.radians(55)), 0), atol=1e-12
    )
    np.testing.assert_allclose(
        right.axis, (math.sin(math.radians(55)), math.cos(math.radians(55)), 0), atol=1e-12
    )
    assert left.omni_weight == PATTERNS["cardioid"]
    (mono,) = capsules((5.0, 3.0, 1.2), "mono", 0.0, 0.0, 0.0)
    assert mono.position_m == (5.0, 3.0, 1.2) and mono.omni_weight == 1.0


def test_spread_sources_are_across_the_line_left_first():
    # listener at the origin side, source 4 m north of it: facing north, left is west (-x)
    left, right = sources((5.0, 7.0, 1.5), (5.0, 3.0, 1.5), 2.0)
    assert left == pytest.approx((4.0, 7.0, 1.5)) and right == pytest.approx((6.0, 7.0, 1.5))
    assert sources((5.0, 7.0, 1.5), (5.0, 3.0, 1.5), 0.0) == ((5.0, 7.0, 1.5),)


def test_pair_defaults_and_overrides():
    room = _pair("ortf")
    assert room.pair_spacing_m() == PAIRS["ortf"].spacing_m and room.pair_angle_deg() == 55.0
    assert room.get("listener/spacing_m") == 0.17
    wider = room.with_values({"listener/spacing_m": 0.3, "listener/angle_deg": 40.0})
    left, right = wider.capsules()
    assert math.dist(left.position_m, right.position_m) == pytest.approx(0.3)
    assert room.channels == 2 and Room().channels == 1
    assert not room.true_stereo and dataclasses.replace(room, spread_m=2.0).true_stereo


def test_room_files_keep_the_pair(tmp_path):
    room = _pair("ab", spacing_m=0.5, spread_m=2.0, width=0.7)
    path = tmp_path / "stereo.toml"
    room.to_toml(path)
    text = path.read_text()
    assert 'pair = "ab"' in text and "spacing_m = 0.5" in text and "width = 0.7" in text
    assert Room.from_toml(path) == room
    data = Room().to_dict()
    for key in ("pair", "azimuth_deg"):
        del data["listener"][key]
    del data["source"]["spread_m"], data["mix"]["width"]
    old = Room.from_dict(data)  # a file without them: mono, no spread, full width
    assert (old.pair, old.spread_m, old.width) == ("mono", 0.0, 1.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pair": "spaced"}, r"listener\.pair: unknown pair 'spaced'; choose one of mono, ab"),
        ({"width": 1.5}, r"mix\.width: 1\.5 is outside 0\.0\.\.1\.0"),
        (
            {
                "pair": "ab",
                "spacing_m": 3.99,
                "azimuth_deg": 90.0,
                "listener_position_m": (10.5, 4, 1.5),
            },
            r"listener\.spacing_m: the right capsule at \[12\.495, .* outside the room",
        ),
        ({"pair": "ortf", "spread_m": 19.0}, r"source\.spread_m: the left source .* reduce spread"),
    ],
)
def test_bad_stereo_settings_name_the_field_and_the_fix(change, message):
    with pytest.raises(RoomError, match=message):
        dataclasses.replace(HALL, **change)


def test_a_capsule_within_a_centimetre_of_a_wall_is_refused():
    # an AB pair facing north, 0.4 m wide, its left capsule 5 mm from the west wall
    near = dataclasses.replace(HALL, listener_position_m=(0.205, 4.0, 1.5))
    with pytest.raises(RoomError, match=r"0\.5 cm from the west.* 1 cm inside every surface"):
        dataclasses.replace(near, pair="ab", azimuth_deg=90.0)
    dataclasses.replace(near, pair="ab", azimuth_deg=0.0)  # facing east: along the wall, fine


def test_a_coincident_pair_exactly_a_centimetre_from_a_wall_is_inside():
    # where OSC puts a listener sent onto the east wall: 12 - 0.01 leaves 0.00999...98 m in float
    x = HALL.size_m[0] - MIC_CLEARANCE_M
    for pair in ("xy", "blumlein"):
        assert dataclasses.replace(HALL, pair=pair, listener_position_m=(x, 4.0, 1.5)).pair == pair


# ---- the early part per capsule ---------------------------------------------------------


def test_capsule_early_parts_match_the_simulators_directivities():
    pra = pytest.importorskip("pyroomacoustics")
    from pyroomacoustics.directivities import Cardioid, DirectionVector

    room = dataclasses.replace(
        HALL,
        size_m=(7.3, 5.1, 3.2),
        surfaces=dataclasses.replace(HALL.surfaces, ceiling=0.3, west="brickwork"),
        source_position_m=(2.0, 3.0, 1.5),
        listener_position_m=(5.0, 2.5, 1.2),
        scattering=0.0,  # the simulator's image sources ignore scattering without ray tracing
        pair="ortf",
        azimuth_deg=160.0,
    )
    alpha = room.absorption()
    materials = {
        s: pra.Material({"coeffs": list(alpha[i]), "center_freqs": list(BANDS_HZ)}, 0.0)
        for i, s in enumerate(SURFACES)
    }
    sim = pra.ShoeBox(
        list(room.size_m), fs=FS, materials=materials, max_order=3, air_absorption=True
    )
    sim.add_source(list(room.source_position_m))
    caps = room.capsules()
    sim.add_microphone_array(
        np.array([c.position_m for c in caps]).T,
        directivity=[
            Cardioid(DirectionVector(math.degrees(math.atan2(c.axis[1], c.axis[0])), 90.0))
            for c in caps
        ],
    )
    sim.compute_rir()
    physics = RoomPhysics.of(room)
    for m, capsule in enumerate(caps):
        ref, ours = sim.rir[m][0], early_ir(physics, FS, None, capsule)
        n, peak = min(len(ref), len(ours)), np.abs(ref).max()
        assert np.argmax(np.abs(ours)) == np.argmax(np.abs(ref))
        assert np.abs(ours[:n] - ref[:n]).max() <= EARLY_SAMPLE_ATOL * peak
        assert np.sum(ours**2) == pytest.approx(np.sum(ref**2), rel=EARLY_ENERGY_RTOL)


def test_an_omni_capsule_at_the_listener_is_the_mono_early_part():
    physics = RoomPhysics.of(HALL)
    omni = Capsule(HALL.listener_position_m, (0.0, 1.0, 0.0), 1.0)
    np.testing.assert_array_equal(early_ir(physics, FS, None, omni), early_ir(physics, FS))


# ---- the late part ----------------------------------------------------------------------


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (1 + 5**0.5) * i
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


@pytest.mark.parametrize("pair", ["ab", "ortf", "xy", "blumlein"])
def test_diffuse_coherence_is_the_sphere_integral(pair):
    left, right = _pair(pair).capsules()
    n = _fibonacci_sphere(20000)
    freqs = np.array([50.0, 250.0, 1000.0, 3000.0])
    k = 2 * np.pi * freqs / SPEED_OF_SOUND_M_S
    gain = [c.omni_weight + (1 - c.omni_weight) * n @ np.array(c.axis) for c in (left, right)]
    phase = np.exp(1j * np.outer(k, n @ np.subtract(left.position_m, right.position_m)))
    cross = (gain[0] * gain[1] * phase).mean(axis=1)
    power = np.sqrt(np.mean(gain[0] ** 2) * np.mean(gain[1] ** 2))
    np.testing.assert_allclose(
        diffuse_coherence(left, right, freqs), cross.real / power, atol=SPHERE_ATOL
    )


def test_known_coherences():
    ab = _pair("ab").capsules()
    kd = 2 * np.pi * 500.0 / SPEED_OF_SOUND_M_S * 0.4
    assert diffuse_coherence(*ab, np.array([500.0]))[0] == pytest.approx(np.sin(kd) / kd)
    xy = _pair("xy").capsules()  # cardioids 90 deg apart: (1/4 + 1/4 cos 90 / 3) / (1/3)
    assert diffuse_coherence(*xy, np.array([1000.0]))[0] == pytest.approx(0.75)
    blumlein = _pair("blumlein").capsules()  # orthogonal figure-eights: uncorrelated
    assert diffuse_coherence(*blumlein, np.array([1000.0]))[0] == pytest.approx(0.0, abs=1e-12)


def _band_correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = []
    for h in band_filters(FS):
        a, b = signal.fftconvolve(x, h, mode="same"), signal.fftconvolve(y, h, mode="same")
        out.append(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return np.array(out)


@pytest.mark.parametrize("pair", ["ab", "ortf", "xy"])
def test_late_coherence_per_band_is_the_pairs(pair):
    left, right = _pair(pair).capsules()
    flat = np.full((8, N_FRAMES), -40.0)  # a flat 4 s tail: every moment weighs the same
    [late] = add_late_pairs(
        [[np.zeros(1, np.float32)] * 2], [flat], FS, (1.0, 1.0), band_coherence(left, right, FS)
    )
    measured = _band_correlation(*late)
    np.testing.assert_allclose(measured, band_coherence(left, right, FS), atol=COHERENCE_ATOL)


def test_cardioid_late_energy_is_a_third_of_an_omnis():
    omni, cardioid = synthesize(_pair("ab", spacing_m=0.0)), synthesize(_pair("xy"))
    late = round(0.15 * FS)  # past the last image source of order 3 in this hall
    ratio = np.sum(cardioid[:, late:] ** 2) / np.sum(omni[:, late:] ** 2)
    assert 10 * np.log10(ratio) == pytest.approx(10 * np.log10(1 / 3), abs=DIFFUSE_POWER_DB)


# ---- whole IRs --------------------------------------------------------------------------


def test_mono_ignores_the_stereo_settings_and_keeps_its_ir():
    plain = synthesize(HALL)
    assert plain.shape[0] > FS // 2 and plain.ndim == 1
    stereo_knobs = dataclasses.replace(HALL, spread_m=3.0, width=0.2, azimuth_deg=30.0)
    np.testing.assert_array_equal(synthesize(stereo_knobs), plain)
    # an AB pair of zero spacing: its left channel is rendered as mono is, sample for sample
    np.testing.assert_array_equal(synthesize(_pair("ab", spacing_m=0.0))[0], plain)


def test_width_zero_gives_two_equal_channels_and_width_scales_the_side():
    full = synthesize(_pair("ortf"))
    mono = synthesize(_pair("ortf", width=0.0))
    assert full.shape == mono.shape == (2, full.shape[1])
    np.testing.assert_array_equal(mono[0], mono[1])
    half = synthesize(_pair("ortf", width=0.5))
    np.testing.assert_allclose(half[0] - half[1], 0.5 * (full[0] - full[1]), atol=FLOAT32_ATOL)


def test_spread_source_gives_a_true_stereo_matrix():
    room = _pair("ab", spread_m=3.0, azimuth_deg=180.0)  # facing the source (west)
    ir = synthesize(room)
    assert ir.shape[:2] == (2, 2) and ir.dtype == np.float32
    first = np.argmax(np.abs(ir) > 0.5 * np.abs(ir).max(axis=-1, keepdims=True), axis=-1)
    # the left source reaches the left capsule before the right one, and vice versa
    assert first[0, 0] < first[0, 1] and first[1, 1] < first[1, 0]
    assert synthesize(room).tobytes() == ir.tobytes()  # deterministic


def test_each_point_of_a_spread_source_has_its_own_physics():
    # the model's features of a point (distance, Barron's C50 ...) are those of its own room
    for physics in per_source(RoomPhysics.of(_pair("ortf", spread_m=3.0))):
        fresh = vars(RoomPhysics.of(physics.room))
        for name, value in vars(physics).items():
            if name != "room":
                assert np.array_equal(value, fresh[name]), name


def test_stereo_parameters_do_not_touch_the_model_hash():
    assert all(PARAMS_BY_NAME[n].stage != "model" for n in (
        "listener/pair", "listener/spacing_m", "listener/azimuth_deg", "listener/angle_deg",
        "source/spread_m", "mix/width",
    ))  # fmt: skip


# ---- where a user meets it: render and rir ----------------------------------------------


def _wav(path, audio: np.ndarray):
    from pedalboard.io import AudioFile

    with AudioFile(str(path), "w", FS, audio.shape[0], bit_depth=32) as f:
        f.write(audio)
    return path


def _read(path) -> np.ndarray:
    from pedalboard.io import AudioFile

    with AudioFile(str(path)) as f:
        return f.read(f.frames)


def _clicks(channels: int) -> np.ndarray:
    x = np.zeros((channels, FS // 4), np.float32)
    x[:, 100] = 0.5
    return x


def test_render_a_mono_file_through_a_pair_gives_two_different_channels(tmp_path):
    from rtverb.offline.render import render_file

    src = _wav(tmp_path / "mono.wav", _clicks(1))
    result = render_file(src, tmp_path / "out.wav", _pair("ortf"), dry_db=-70.0, tail_s=0.5)
    wet = _read(tmp_path / "out.wav")
    assert result.channels == 2 and wet.shape[0] == 2
    assert abs(np.corrcoef(wet)[0, 1]) < DISTINCT_CHANNELS_CORR


def test_render_picks_the_ir_for_the_input(tmp_path, monkeypatch):
    from rtverb.offline import render

    seen = []

    def fake(room, rate):
        seen.append(room.spread_m)
        return synthesize(room, rate)

    monkeypatch.setattr(render, "_synthesize", fake)
    room = _pair("xy", spread_m=2.0)
    stereo, mono = _wav(tmp_path / "s.wav", _clicks(2)), _wav(tmp_path / "m.wav", _clicks(1))
    assert render.render_file(stereo, tmp_path / "a.wav", room, tail_s=0.2).channels == 2
    assert render.render_file(mono, tmp_path / "b.wav", room, tail_s=0.2).channels == 2
    assert seen == [2.0, 0.0]  # true stereo for the stereo input, a point source for mono
    with pytest.raises(render.RenderError, match=r"--channels 1: .* gives 2 channels"):
        render.render_file(mono, tmp_path / "c.wav", room, channels=1)


def test_channel_errors_name_the_pair_or_the_ir_they_were_given():
    from rtverb.offline.render import RenderError, output_channels

    pair_ir = np.zeros((2, 64), np.float32)
    with pytest.raises(RenderError) as room_error:
        output_channels(pair_ir, 3, None, "ortf")
    assert str(room_error.value) == (
        "a 3-channel input: the room's ortf pair takes a mono or 2-channel input; mix the file "
        'down to 1 or 2 channels first, or use a mono room (pair = "mono")'
    )
    with pytest.raises(RenderError) as ir_error:
        output_channels(pair_ir, 1, 1, None)
    assert str(ir_error.value) == (
        "--channels 1: the 2-channel IR gives 2 channels; render 2 channels, or use a mono IR"
    )
    with pytest.raises(RenderError, match="the true-stereo IR takes a mono or 2-channel"):
        output_channels(np.zeros((2, 2, 64), np.float32), 3, None, None)


def test_an_input_a_pair_cannot_take_gets_a_fix_that_works(tmp_path, capsys):
    from rtverb.cli import main

    src = _wav(tmp_path / "three.wav", _clicks(3))
    for extra in ([], ["--channels", "2"]):  # --channels 2 cannot map 3 channels either
        assert main(["render", str(src), str(tmp_path / "o.wav"), "--quiet", *extra]) != 0
        err = capsys.readouterr().err
        assert "a 3-channel input" in err and "mix the file down to 1 or 2 channels" in err, err
    assert not (tmp_path / "o.wav").exists()
    # a parallel folder render synthesizes the room once, yet the error names the room's pair
    from rtverb.cli.render import _render_one, _synthesize_per_rate
    from rtverb.offline.render import RenderError
    from rtverb.room.presets import load_preset

    source = _synthesize_per_rate(load_preset("vocal_booth"), [src])
    with pytest.raises(RenderError, match="the room's xy pair takes a mono or 2-channel input"):
        _render_one(str(src), str(tmp_path / "o.wav"), source, None, None, {})


def test_rir_writes_one_channel_per_path(tmp_path, capsys):
    from rtverb.cli import main

    room = tmp_path / "room.toml"
    _pair("ab", spread_m=2.0).to_toml(room)
    assert main(["rir", str(room), "-o", str(tmp_path / "ir.wav")]) == 0
    assert "4 channels (source to capsule: LL, LR, RL, RR" in capsys.readouterr().out
    written = _read(tmp_path / "ir.wav")
    np.testing.assert_array_equal(written, synthesize(Room.from_toml(room)).reshape(4, -1))


def test_analyze_reports_the_pairs_coherence(tmp_path, capsys):
    import json

    from rtverb.cli import main

    room = tmp_path / "xy.toml"
    _pair("xy").to_toml(room)
    assert main(["rir", str(room), "-o", str(tmp_path / "ir.wav")]) == 0
    capsys.readouterr()
    assert main(["analyze", str(tmp_path / "ir.wav"), "--json"]) == 0
    left, right = json.loads(capsys.readouterr().out)
    assert left["coherence"] == right["coherence"]
    # coincident cardioids 90 deg apart: 0.75 in a diffuse field (1-4 kHz: the tail is long)
    assert left["coherence"][3:6] == pytest.approx([0.75] * 3, abs=COHERENCE_ATOL)


def test_every_capsule_keeps_the_minimum_distance_from_every_source_point():
    from rtverb.room.room import MIN_SOURCE_DISTANCE_M

    # an AB pair facing north, its left capsule 5 cm from the source: the centre is 0.2 m away
    near = dataclasses.replace(HALL, source_position_m=(8.85, 4.0, 1.5), azimuth_deg=90.0)
    assert near.distance_m > MIN_SOURCE_DISTANCE_M
    with pytest.raises(RoomError, match=r"the left capsule is 0\.05 m from a source; keep every"):
        dataclasses.replace(near, pair="ab", spacing_m=0.4)


def test_a_spread_source_shares_the_point_sources_power():
    # the same signal on both inputs of the true-stereo IR is as loud in the late part as the
    # point source through the same pair (within the noise of two rendered late parts)
    point = _pair("ortf", azimuth_deg=180.0)
    spread = dataclasses.replace(point, spread_m=2.0)
    late = int(0.05 * 48000)  # past the direct sound and first reflections
    one = synthesize(point, 48000)[:, late:]
    both = synthesize(spread, 48000).sum(axis=0)[:, late:]  # dual mono: inputs summed
    ratio_db = 10 * np.log10(
        np.sum(both.astype(np.float64) ** 2) / np.sum(one.astype(np.float64) ** 2)
    )
    assert abs(ratio_db) < SHARED_POWER_TOL_DB
