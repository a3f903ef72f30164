"""rtverb.room.room and rtverb.room.params: the room schema, room files, and the parameter table."""

from __future__ import annotations

import copy
import dataclasses
import errno
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from rtverb.room.params import (
    AXES,
    BANDS_HZ,
    DOMAIN_CLEARANCE_M,
    MIX_PARAMS,
    PARAMS,
    PARAMS_BY_NAME,
    SURFACES,
    table_hash,
)
from rtverb.room.room import (
    MIN_SOURCE_DISTANCE_M,
    Room,
    RoomError,
    Surfaces,
    material_absorption,
    materials_db,
)

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"

#: A valid room file; the bad-input cases below replace one of its lines (numbers at the right).
ROOM_FILE = """\
name = "Test room"
description = "for the tests"

[room]
size_m = [7.5, 5.8, 3.2]
scattering = 0.1

[room.surfaces]
floor = "carpet_cotton"
ceiling = 0.3
east = [0.10, 0.12, 0.15, 0.20, 0.25, 0.30]
west = "brickwork"
north = "hard_surface"
south = [0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4]

[source]
position_m = [2.0, 3.0, 1.5]

[listener]
position_m = [5.0, 2.5, 1.2]

[mix]
wet_db = -6.0
dry_db = 0.0
predelay_ms = 5.0
"""
LINE: dict[str, int] = {}  # key or [table] -> its first line
for _number, _line in enumerate(ROOM_FILE.splitlines(), start=1):
    LINE.setdefault(_line.split("=")[0].strip() if "=" in _line else _line, _number)
LISTENER_LINE = 20  # the second position_m
assert ROOM_FILE.splitlines()[LISTENER_LINE - 1].startswith("position_m")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "room.toml"
    path.write_text(text, encoding="utf-8")
    return path


def replace_line(number: int, new: str) -> str:
    lines = ROOM_FILE.splitlines()
    lines[number - 1] = new
    return "\n".join(lines) + "\n"


# ---- room files ---------------------------------------------------------------------------


def test_room_file_loads(tmp_path: Path) -> None:
    room = Room.from_toml(write(tmp_path, ROOM_FILE))
    assert room.size_m == (7.5, 5.8, 3.2)
    assert room.surfaces.ceiling == 0.3
    assert room.surfaces.east == (0.10, 0.12, 0.15, 0.20, 0.25, 0.30)
    assert room.listener_position_m == (5.0, 2.5, 1.2)
    assert room.predelay_ms == 5.0


@pytest.mark.parametrize("preset", sorted(PRESETS_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_presets_round_trip_through_toml(preset: Path, tmp_path: Path) -> None:
    room = Room.from_toml(preset)
    room.to_toml(tmp_path / "copy.toml")
    assert Room.from_toml(tmp_path / "copy.toml") == room
    assert Room.from_dict(room.to_dict()) == room


# Rooms anywhere in the accepted ranges, with any text in their name and description.
coefficient = st.floats(0.01, 1.0)
material = st.one_of(
    st.sampled_from(sorted(materials_db())),
    coefficient,
    st.tuples(*[coefficient] * 6),
    st.tuples(*[coefficient] * 7),
)


@st.composite
def rooms(draw: st.DrawFn) -> Room:
    size = tuple(draw(st.floats(1.0, 50.0)) for _ in AXES)
    fraction = st.floats(0.001, 0.999)
    source, listener = (tuple(draw(fraction) * s for s in size) for _ in range(2))
    assume(math.dist(source, listener) >= MIN_SOURCE_DISTANCE_M)
    mix = {
        k: draw(st.floats(PARAMS_BY_NAME[f"mix/{k}"].min, PARAMS_BY_NAME[f"mix/{k}"].max))
        for k in ("wet_db", "dry_db", "predelay_ms")
    }
    return Room(
        size_m=size,  # type: ignore[arg-type]
        surfaces=Surfaces(**{s: draw(material) for s in SURFACES}),
        source_position_m=source,  # type: ignore[arg-type]
        listener_position_m=listener,  # type: ignore[arg-type]
        scattering=draw(st.floats(0.0, 1.0)),
        name=draw(st.text()),
        description=draw(st.text()),
        **mix,
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(room=rooms())
@example(room=dataclasses.replace(Room(), name='DEL \x7f, tab \t, "quotes", \\, newline \n'))
def test_any_room_round_trips_through_toml(room: Room, tmp_path: Path) -> None:
    room.to_toml(tmp_path / "room.toml")
    assert Room.from_toml(tmp_path / "room.toml") == room
    assert Room.from_dict(room.to_dict()) == room


def test_to_toml_replaces_the_file_whole_or_not_at_all(tmp_path: Path) -> None:
    path = write(tmp_path, ROOM_FILE)
    unwritable = dataclasses.replace(Room(), name="lone surrogate \ud800")  # not UTF-8
    with pytest.raises(UnicodeEncodeError):
        unwritable.to_toml(path)
    assert path.read_text(encoding="utf-8") == ROOM_FILE  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["room.toml"]  # no temporary left behind


def test_to_toml_failures_are_one_line_room_errors(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(RoomError, match=r"absent does not exist; create it first"):
        Room().to_toml(tmp_path / "absent" / "room.toml")
    monkeypatch.setattr("rtverb.files.os.fsync", _disk_full)
    with pytest.raises(RoomError, match="the disk filled up"):
        Room().to_toml(tmp_path / "room.toml")
    assert list(tmp_path.iterdir()) == []  # no partial file, no temporary


def _disk_full(fd: int) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


# ---- bad input: every error names the field (with the file and line) and the fix ----------

#: (line to replace, new line, field named, words of the fix). Line numbers are ROOM_FILE's.
BAD_LINES = [
    (LINE["size_m"], "size_m = [0.5, 5.8, 3.2]", "room.size_m", "1.0-50.0 m"),
    (LINE["size_m"], "size_m = [7.5, 5.8]", "room.size_m", "three numbers [x, y, z]"),
    (LINE["size_m"], 'size_m = "7x5x3"', "room.size_m", "three numbers [x, y, z]"),
    (LINE["size_m"], "size_m = [7.5, 5.8, -3.2]", "room.size_m", "positive"),
    (LINE["size_m"], "size_m = [7.5, 5.8, nan]", "room.size_m", "finite"),
    (LINE["size_m"], f"size_m = [1{'0' * 400}, 5.8, 3.2]", "room.size_m", "finite"),
    (LINE["size_m"], "sise_m = [7.5, 5.8, 3.2]", "room.sise_m", "Did you mean 'size_m'"),
    (LINE["scattering"], "scattering = 1.5", "room.scattering", "0.0..1.0"),
    (LINE["scattering"], 'scattering = "high"', "room.scattering", "expected a number"),
    (LINE["scattering"], "scattering = true", "room.scattering", "expected a number"),
    (LINE["scattering"], f"scattering = 1{'0' * 400}", "room.scattering", "0.0..1.0"),
    (LINE["floor"], 'floor = "carpet_coton"', "room.surfaces.floor", "carpet_cotton"),
    (LINE["floor"], "floor = 0.0", "room.surfaces.floor", "(0, 1]"),
    (LINE["floor"], "floor = 1.5", "room.surfaces.floor", "(0, 1]"),
    (LINE["floor"], "floor = [0.1, 0.2, 0.3]", "room.surfaces.floor", "give 1, 6 or 7"),
    (LINE["floor"], 'floor = [0.1, "a", 0.3]', "room.surfaces.floor", "must be numbers"),
    (LINE["floor"], "floor = false", "room.surfaces.floor", "material name or absorption"),
    (LINE["floor"], "flor = 0.3", "room.surfaces.flor", "Did you mean 'floor'"),
    (LINE["floor"], "", "room.surfaces", "give all six surfaces"),
    (LINE["position_m"], "position_m = [9.0, 3.0, 1.5]", "source.position_m", "outside the room"),
    (LINE["position_m"], "position_m = [0.0, 3.0, 1.5]", "source.position_m", "0-7.5 m"),
    (LINE["position_m"], "positon_m = [2.0, 3.0, 1.5]", "source.positon_m", "'position_m'"),
    (LISTENER_LINE, "position_m = [5.0, 2.5, 9.9]", "listener.position_m", "(0-3.2 m)"),
    (LINE["wet_db"], "wet_db = 20.0", "mix.wet_db", "-70.0..12.0 dB"),
    (LINE["wet_db"], 'wet_db = "loud"', "mix.wet_db", "expected a number"),
    (LINE["wet_db"], "wet = -6.0", "mix.wet", "Did you mean 'wet_db'"),
    (LINE["name"], "name = 5", "name", "expected a string"),
    (LINE["name"], 'nmae = "x"', "nmae", "Did you mean 'name'"),
    (LINE["[room]"], "[rooom]", "rooom", "Did you mean 'room'"),
]


@pytest.mark.parametrize(("number", "new", "field", "fix"), BAD_LINES)
def test_bad_room_file_errors_name_file_line_field_and_fix(
    tmp_path: Path, number: int, new: str, field: str, fix: str
) -> None:
    path = write(tmp_path, replace_line(number, new))
    with pytest.raises(RoomError) as error:
        Room.from_toml(path)
    message = str(error.value)
    where = f"{path}:{number}: " if new else f"{path}:{LINE['[room.surfaces]']}: "
    assert message.startswith(where + field + ":"), message
    assert fix in message


def test_missing_tables_and_keys_point_at_the_fix(tmp_path: Path) -> None:
    without_source = ROOM_FILE.replace("[source]\nposition_m = [2.0, 3.0, 1.5]\n", "")
    with pytest.raises(RoomError, match=r"\[source\]: missing table; see the room file format"):
        Room.from_toml(write(tmp_path, without_source))
    without_size = replace_line(LINE["size_m"], "")
    with pytest.raises(RoomError, match=r"room\.size_m: missing; give \[x, y, z\] in metres"):
        Room.from_toml(write(tmp_path, without_size))


def test_unreadable_room_files_say_why(tmp_path: Path) -> None:
    with pytest.raises(RoomError, match="no such room file"):
        Room.from_toml(tmp_path / "absent.toml")
    with pytest.raises(RoomError, match="cannot read the room file"):
        Room.from_toml(tmp_path)  # a folder
    (tmp_path / "latin1.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(RoomError, match="cannot read the room file"):
        Room.from_toml(tmp_path / "latin1.toml")
    broken = write(tmp_path, replace_line(LINE["scattering"], "scattering = 0.1.2"))
    with pytest.raises(RoomError) as error:
        Room.from_toml(broken)
    assert str(error.value).startswith(f"{broken}:{LINE['scattering']}: not valid TOML:")


# Any JSON-like value in any field: a valid room or a RoomError, never another exception.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
FIELDS = [
    ("name",),
    ("room",),
    ("room", "size_m"),
    ("room", "scattering"),
    ("room", "surfaces"),
    *[("room", "surfaces", s) for s in SURFACES],
    ("source",),
    ("source", "position_m"),
    ("listener", "position_m"),
    ("mix",),
    ("mix", "wet_db"),
]


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(FIELDS), value=json_values)
def test_any_value_in_any_field_gives_a_room_or_a_room_error(
    field: tuple[str, ...], value: Any
) -> None:
    data = copy.deepcopy(Room().to_dict())
    table = data
    for key in field[:-1]:
        table = table[key]
    table[field[-1]] = value
    try:
        Room.from_dict(data)
    except RoomError as e:
        assert str(e).startswith((".".join(field), "[" + ".".join(field))) or field[-1] in (
            "room",
            "surfaces",
            "source",
            "mix",
        ), str(e)


# ---- materials ----------------------------------------------------------------------------


def test_materials_resolve_to_seven_bands() -> None:
    np.testing.assert_array_equal(material_absorption(0.3), np.full(7, 0.3))
    six = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    np.testing.assert_array_equal(material_absorption(six), [*six, 0.6])  # 8 kHz repeats 4 kHz
    db = materials_db()
    assert len(db) > 50
    for name, entry in db.items():
        coeffs = material_absorption(name)
        assert coeffs.shape == (len(BANDS_HZ),), name
        np.testing.assert_array_equal(coeffs, entry["coeffs"])


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("carpet_coton", "carpet_cotton"),
        ("brickwrok", "brickwork"),
        ("Hard_Surface", "hard_surface"),
    ],
)
def test_unknown_material_suggests_close_names(typo: str, suggestion: str) -> None:
    with pytest.raises(RoomError, match=f"Did you mean .*'{suggestion}'") as error:
        Room(surfaces=Surfaces(west=typo))
    assert "room.surfaces.west" in str(error.value)
    assert "materials_db()" in str(error.value)  # where the names are


def test_unknown_material_without_close_names_still_says_what_to_use() -> None:
    with pytest.raises(RoomError) as error:
        Room(surfaces=Surfaces(west="zzzzzz"))
    assert "Did you mean" not in str(error.value)
    assert "one absorption coefficient, or 6-7 band coefficients" in str(error.value)


# ---- derived acoustics and the model domain -----------------------------------------------


def test_sabine_and_eyring_of_a_uniform_cube() -> None:
    room = Room(
        size_m=(10.0, 10.0, 10.0),
        surfaces=Surfaces(**{s: 0.1 for s in SURFACES}),
        source_position_m=(2.0, 2.0, 2.0),
        listener_position_m=(5.0, 6.0, 2.0),
    )
    np.testing.assert_allclose(room.sabine_rt60_s(), 0.161 * 1000 / (600 * 0.1))
    np.testing.assert_allclose(room.eyring_rt60_s(), 0.161 * 1000 / (-600 * math.log(0.9)))
    assert room.distance_m == pytest.approx(5.0)
    assert room.volume_m3 == pytest.approx(1000.0)


def test_default_room_is_inside_the_model_domain() -> None:
    assert Room().domain_warnings() == []


@pytest.mark.parametrize(
    ("changes", "warning"),
    [
        ({"room/size/x": 30.0}, r"room size x = 30 m is outside the model domain 2-20 m"),
        ({"room/size/z": 2.0}, r"room size z = 2 m is outside the model domain 2.2-8 m"),
        ({"room/scattering": 0.8}, r"scattering 0.8 is above the model domain's 0.5"),
        ({"source/position/x": 0.2}, r"source is 0.20 m from a surface"),
        ({"listener/position/z": 2.9}, r"listener is 0.10 m from a surface"),
        (
            {"listener/position/x": 2.2, "listener/position/y": 2.1, "listener/position/z": 1.5},
            r"source and listener are 0.22 m apart",
        ),
        (
            {
                "room/size/x": 3.0,
                "room/size/y": 3.0,
                "listener/position/x": 1.0,
                "listener/position/y": 1.0,
                **{f"room/surface/{s}": 1.0 for s in SURFACES},
            },
            r"Sabine RT60 at 250 Hz = 0.0\d s is outside the model domain 0.1-3.0 s",
        ),
        ({f"room/surface/{s}": 0.01 for s in SURFACES}, r"Sabine RT60 at 1000 Hz = \d+\.\d\d s"),
    ],
)
def test_domain_warnings_name_the_bound(changes: dict[str, float], warning: str) -> None:
    warnings = Room().with_values(changes).domain_warnings()
    assert any(re.search(warning, w) for w in warnings), warnings


# ---- flat parameter access (OSC) and the parameter table ----------------------------------


def test_get_and_with_values_use_table_names() -> None:
    room = Room()
    changed = room.with_values(
        {
            "room/size/x": 9.0,
            "listener/position/y": 4.0,
            "room/surface/floor": [0.2] * 7,
            "mix/wet_db": -12.0,
        }
    )
    assert changed.get("room/size/x") == 9.0
    assert changed.get("listener/position/y") == 4.0
    assert changed.get("room/surface/floor") == (0.2,) * 7
    assert changed.get("mix/wet_db") == -12.0
    assert changed.get("room/size/y") == room.get("room/size/y")
    with pytest.raises(KeyError, match="unknown parameter"):
        room.get("room/size/w")
    with pytest.raises(KeyError, match="unknown parameter"):
        room.with_values({"room/colour": 1.0})
    with pytest.raises(RoomError, match="source.position_m"):
        room.with_values({"room/size/x": 1.5})  # the source at x = 2 m falls outside


def test_parameter_table_is_consistent() -> None:
    names = [p.name for p in PARAMS]
    assert len(names) == len(set(names))
    room = Room()
    for spec in PARAMS:
        assert spec.min <= spec.domain_min < spec.domain_max, spec.name
        assert spec.domain_max <= spec.max or spec.relative_to_size, spec.name
        assert spec.min <= spec.default <= spec.max, spec.name
        assert spec.domain_fraction(spec.domain_min) == 0.0
        assert spec.domain_fraction(spec.domain_max) == pytest.approx(1.0)
        assert spec.from_fader(-1.0) == spec.min and spec.from_fader(2.0) == spec.max
        for position in (0.0, 0.3, 1.0):
            assert spec.to_fader(spec.from_fader(position)) == pytest.approx(position)
        if spec.choices:  # an enum's default indexes its choices
            assert room.get(spec.name) == spec.choices[int(spec.default)], spec.name
        elif spec.size == 1:
            assert room.get(spec.name) == spec.default, spec.name  # Room() uses the defaults
    assert re.fullmatch(r"[0-9a-f]{16}", table_hash()) and table_hash() == table_hash()
    assert DOMAIN_CLEARANCE_M > 0


def test_every_parameter_reads_and_writes_its_room_field() -> None:
    """`Room.get` / `with_values` follow each spec's ``field`` and ``item`` (none is skipped)."""
    room = Room()
    for spec in PARAMS:
        if spec.size > 1:
            value = 0.5
        elif spec.choices:
            value = spec.choices[-1]
        elif spec.relative_to_size:  # towards the nearer wall, inside the default room
            value = (spec.default + spec.domain_min) / 2
        else:
            value = (spec.default + spec.max) / 2
        changed = room.with_values({spec.name: value})
        assert changed.get(spec.name) == (
            value if isinstance(value, str) else pytest.approx(value)
        ), spec.name
        others = [p.name for p in PARAMS if p.name != spec.name]
        if spec.name == "listener/pair":  # unset spacing and angle are the pair's own
            others = [n for n in others if n not in ("listener/spacing_m", "listener/angle_deg")]
        assert [changed.get(n) for n in others] == [room.get(n) for n in others], spec.name
    mix_table = {p.field for p in PARAMS if p.name.startswith("mix/")}
    assert {p.field for p in MIX_PARAMS} < mix_table == set(Room().to_dict()["mix"])


@pytest.mark.parametrize("gap_m", [0.0, 0.05, MIN_SOURCE_DISTANCE_M * 0.99])
def test_source_and_listener_too_close_are_refused(gap_m: float) -> None:
    src = (2.0, 2.0, 1.5)
    with pytest.raises(RoomError, match=f"at least {MIN_SOURCE_DISTANCE_M} m apart"):
        Room(source_position_m=src, listener_position_m=(2.0 + gap_m, 2.0, 1.5))
    Room(source_position_m=src, listener_position_m=(2.0 + MIN_SOURCE_DISTANCE_M, 2.0, 1.5))


def test_every_capsule_keeps_the_minimum_distance_from_the_source() -> None:
    listener = (5.0, 3.0, 1.2)
    capsule = Room(listener_position_m=listener, pair="ab", spacing_m=0.5).capsules()[0]
    with pytest.raises(RoomError, match="capsule is 0 m from a source"):
        Room(
            listener_position_m=listener,
            source_position_m=capsule.position_m,
            pair="ab",
            spacing_m=0.5,
        )
    Room(listener_position_m=listener, source_position_m=(5.0, 3.4, 1.2), pair="ab",
         spacing_m=0.5)  # fmt: skip
