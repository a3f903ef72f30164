"""OSC control: golden datagrams through `OscController` (no sockets), one loopback server test,
and a hypothesis fuzz test of random and malformed packets."""

from __future__ import annotations

import math
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg

from rtverb.osc.controller import (
    GROUPS,
    MAX_SUBSCRIBERS,
    POSITION_MARGIN_M,
    OscController,
    Reply,
    address_table,
)
from rtverb.osc.server import OscServer
from rtverb.room.params import AXES, PARAMS, PARAMS_BY_NAME
from rtverb.room.presets import load_preset
from rtverb.room.room import Room, material_absorption

SENDER = ("127.0.0.1", 50000)
#: OSC 'f' arguments are float32; values come back rounded to 7 significant digits.
FLOAT32_REL = 1e-6


def msg(address: str, *args) -> bytes:
    return bytes(build_msg(address, list(args)).dgram)


def bundle(*messages: bytes) -> bytes:
    b = OscBundleBuilder(IMMEDIATELY)
    for m in messages:
        b.add_content(OscMessage(m))
    return bytes(b.build().dgram)


class Recorder:
    """A controller with recorded callbacks."""

    def __init__(self, room: Room | None = None, status=None) -> None:
        self.rooms: list[tuple[Room, float]] = []
        self.mixes: list[Room] = []
        self.c = OscController(
            room or load_preset("studio_live_room"),
            on_room=lambda r, t: self.rooms.append((r, t)),
            on_mix=self.mixes.append,
            status=status,
        )

    def send(self, data: bytes, sender=SENDER) -> list[Reply]:
        return self.c.handle_packet(data, sender, received_s=123.0)


def by_address(replies: list[Reply], address: str) -> list[Reply]:
    return [r for r in replies if r.address == address]


def errors(replies: list[Reply]) -> list[str]:
    return [r.args[0] for r in replies if r.address == "/rtverb/error"]


# ---- golden datagrams -----------------------------------------------------------------------


def test_golden_float_message_sets_size_and_echoes():
    # "/rtverb/room/size/x" padded to 4 bytes, type tag ",f", big-endian float32 8.5
    golden = b"/rtverb/room/size/x\x00" + b",f\x00\x00" + struct.pack(">f", 8.5)
    assert golden == msg("/rtverb/room/size/x", 8.5)
    rec = Recorder()
    replies = rec.send(golden)
    assert rec.c.room.size_m[0] == 8.5
    assert len(rec.rooms) == 1 and rec.rooms[0][1] == 123.0  # received time passed through
    assert rec.mixes == []
    echo = by_address(replies, "/rtverb/room/size/x")
    assert echo == [Reply(SENDER, "/rtverb/room/size/x", (8.5,))]
    spec = PARAMS_BY_NAME["room/size/x"]
    (norm,) = by_address(replies, "/rtverb/norm/room/size/x")
    assert norm.args[0] == pytest.approx((8.5 - spec.min) / (spec.max - spec.min))


@pytest.mark.parametrize(
    "data",
    [
        b"/rtverb/room/size/x\x00" + b",i\x00\x00" + struct.pack(">i", 8),
        b"/rtverb/room/size/x\x00" + b",f\x00\x00" + struct.pack(">f", 8.0),
        b"/rtverb/room/size/x\x00" + b",d\x00\x00" + struct.pack(">d", 8.0),
    ],
    ids=["int", "float", "double"],
)
def test_int_float_double_are_interchangeable(data):
    rec = Recorder()
    assert errors(rec.send(data)) == []
    assert rec.c.room.size_m[0] == 8.0


def test_bool_is_a_number():
    rec = Recorder()
    # ",T" carries no payload: True is 1.0 (a 1 dB wet level)
    golden = b"/rtverb/mix/wet_db\x00\x00" + b",T\x00\x00"
    assert errors(rec.send(golden)) == []
    assert rec.c.room.wet_db == 1.0
    assert len(rec.mixes) == 1 and rec.rooms == []  # mix goes to the engine, no resynthesis


def test_group_addresses_set_three_axes():
    rec = Recorder()
    rec.send(msg("/rtverb/room/size", 9.0, 6.0, 4.0))
    rec.send(msg("/rtverb/source/position", 1.0, 2.0, 1.5))
    rec.send(msg("/rtverb/listener/position", 7.0, 4.0, 1.2))
    room = rec.c.room
    assert room.size_m == (9.0, 6.0, 4.0)
    assert room.source_position_m == (1.0, 2.0, 1.5)
    assert room.listener_position_m == (7.0, 4.0, 1.2)
    assert len(rec.rooms) == 3


def test_norm_twins_map_onto_the_table_range():
    rec = Recorder()
    rec.send(msg("/rtverb/norm/mix/predelay_ms", 0.25))
    spec = PARAMS_BY_NAME["mix/predelay_ms"]
    assert rec.c.room.predelay_ms == pytest.approx(spec.min + 0.25 * (spec.max - spec.min))
    # positions map onto the room's size on that axis
    rec.send(msg("/rtverb/norm/source/position/x", 0.5))
    assert rec.c.room.source_position_m[0] == pytest.approx(0.5 * rec.c.room.size_m[0])


def test_surfaces_accept_name_one_or_band_coefficients():
    rec = Recorder()
    rec.send(msg("/rtverb/room/surface/floor", "carpet_cotton"))
    assert rec.c.room.surfaces.floor == "carpet_cotton"
    rec.send(msg("/rtverb/room/surface/floor", 0.3))
    assert rec.c.room.surfaces.floor == 0.3
    six = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    replies = rec.send(msg("/rtverb/room/surface/west", *six))
    assert rec.c.room.surfaces.west == pytest.approx(tuple(six))
    assert by_address(replies, "/rtverb/room/surface/west")[0].args == pytest.approx(tuple(six))
    seven = [*six, 0.7]
    rec.send(msg("/rtverb/room/surface/east", *seven))
    assert rec.c.room.surfaces.east == pytest.approx(tuple(seven))
    rec.send(msg("/rtverb/norm/room/surface/north", 1.0))
    assert rec.c.room.surfaces.north == 1.0
    assert len(rec.rooms) == 5


# ---- ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, fragment",
    [
        (msg("/rtverb/room/size/x", 80.0), "80 m is outside 1..50"),
        (msg("/rtverb/room/size", 5.0, 0.5, 3.0), "0.5 m is outside 1..50"),
        (msg("/rtverb/norm/mix/wet_db", -3.0), "outside 0..1"),
        (msg("/rtverb/room/surface/floor", 1.5), "1.5 is outside 0.01..1"),
        (msg("/rtverb/source/position/x", 100.0), "outside the room"),
        (msg("/rtverb/norm/listener/position/y", 1.2), "outside 0..1"),
    ],
)
def test_out_of_range_values_are_errors_and_change_nothing(data, fragment):
    rec = Recorder()
    before = rec.c.room
    replies = rec.send(data)
    assert any(fragment in e for e in errors(replies)), errors(replies)
    assert rec.c.room is before and not by_address(replies, "/rtverb/room/size/x")


def test_positions_stay_inside_and_follow_a_shrinking_room():
    rec = Recorder()
    rec.send(msg("/rtverb/source/position/x", rec.c.room.size_m[0]))  # on the wall
    assert rec.c.room.source_position_m[0] == pytest.approx(
        rec.c.room.size_m[0] - POSITION_MARGIN_M
    )
    rec.send(msg("/rtverb/norm/listener/position/x", 0.0))  # a fader at its end
    assert rec.c.room.listener_position_m[0] == POSITION_MARGIN_M
    replies = rec.send(msg("/rtverb/room/size", 3.0, 3.0, 2.5))
    room = rec.c.room
    for who in ("source", "listener"):
        pos = getattr(room, f"{who}_position_m")
        assert all(0 < p < s for p, s in zip(pos, room.size_m, strict=True))
    # the moved position is echoed so a controller's fader follows
    assert by_address(replies, "/rtverb/source/position/x")


# ---- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, fragment",
    [
        (msg("/rtverb/room/sise/x", 5.0), "unknown address"),
        (msg("/other/thing", 5.0), "unknown address"),
        (msg("/rtverb/room/size/x"), "expected 1 number"),
        (msg("/rtverb/room/size/x", 5.0, 6.0), "expected 1 number"),
        (msg("/rtverb/room/size", 5.0, 6.0), "expected 3 numbers"),
        (msg("/rtverb/room/size/x", "big"), "expected a number"),
        (msg("/rtverb/room/size/x", float("nan")), "not a finite number"),
        (msg("/rtverb/room/size/x", float("inf")), "not a finite number"),
        (msg("/rtverb/room/surface/floor", "carpet_coton"), "carpet_cotton"),
        (msg("/rtverb/room/surface/floor", 0.1, 0.2), "6-7 band coefficients"),
        (msg("/rtverb/norm/room/surface/floor", "carpet_cotton"), "expected a number"),
        (msg("/rtverb/preset/load", "no_such_room"), "studio_live_room"),
        (msg("/rtverb/preset/load", 3), "expected one string"),
        (msg("/rtverb/get", "room/sise/x"), "unknown parameter"),
        (msg("/rtverb/subscribe", 70000), "1..65535"),
        (msg("/rtverb/subscribe", "x"), "expected a number"),
        (b"garbage!", "malformed OSC packet"),
        (b"", "malformed OSC packet"),
    ],
)
def test_bad_input_gets_an_error_reply_and_changes_nothing(data, fragment):
    rec = Recorder()
    before = rec.c.room
    replies = rec.send(data)
    assert len(errors(replies)) == 1, replies
    assert fragment in errors(replies)[0]
    assert errors(replies)[0].endswith("state unchanged")
    assert rec.c.room is before
    assert rec.rooms == [] and rec.mixes == [] and rec.c.room_changes == 0
    assert all(r.dest == SENDER for r in replies)


def test_bundle_is_one_change():
    rec = Recorder()
    data = bundle(
        msg("/rtverb/room/size/x", 9.0),
        msg("/rtverb/room/size/y", 7.0),
        msg("/rtverb/room/surface/floor", "marble_floor"),
        msg("/rtverb/mix/wet_db", -10.0),
    )
    assert errors(rec.send(data)) == []
    assert rec.c.room.size_m[:2] == (9.0, 7.0)
    assert rec.c.room.surfaces.floor == "marble_floor"
    assert len(rec.rooms) == 1 and len(rec.mixes) == 1 and rec.c.room_changes == 1


def test_bundle_with_one_bad_message_changes_nothing():
    rec = Recorder()
    before = rec.c.room
    data = bundle(msg("/rtverb/room/size/x", 9.0), msg("/rtverb/room/size/y", float("nan")))
    assert len(errors(rec.send(data))) == 1
    assert rec.c.room is before and rec.rooms == []


# ---- queries and feedback ---------------------------------------------------------------------


def test_get_replies_with_the_current_value():
    rec = Recorder()
    room = rec.c.room
    (r,) = rec.send(msg("/rtverb/get", "room/size/y"))
    assert r == Reply(SENDER, "/rtverb/room/size/y", (room.size_m[1],))
    (r,) = rec.send(msg("/rtverb/get", "/rtverb/source/position"))
    assert r.args == room.source_position_m
    (r,) = rec.send(msg("/rtverb/get", "norm/listener/position/x"))
    assert r.args[0] == pytest.approx(room.listener_position_m[0] / room.size_m[0])
    (r,) = rec.send(msg("/rtverb/get", "room/surface/floor"))
    assert r.args == (room.surfaces.floor,)


def test_describe_lists_every_parameter_from_the_table():
    rec = Recorder()
    replies = rec.send(msg("/rtverb/describe"))
    params = by_address(replies, "/rtverb/describe/param")
    assert [r.args[0] for r in params] == [p.name for p in PARAMS]
    for r, spec in zip(params, PARAMS, strict=True):
        name, unit, lo, hi, default = r.args[:5]
        assert (unit, lo, hi, default) == (spec.unit, spec.min, spec.max, spec.default)
    assert by_address(replies, "/rtverb/describe/end")[0].args == (len(PARAMS),)
    # every reply encodes as OSC
    assert all(OscMessage(r.dgram()).address == r.address for r in replies)


def test_status_reports_the_provider_figures_and_room():
    rec = Recorder(status=lambda: {"load": 0.25, "xruns": 3, "latency_ms": 5.3})
    replies = rec.send(msg("/rtverb/status"))
    assert by_address(replies, "/rtverb/status/load")[0].args == (0.25,)
    assert by_address(replies, "/rtverb/status/xruns")[0].args == (3,)
    (room,) = by_address(replies, "/rtverb/status/room")
    assert '"size_m"' in room.args[0]


def test_subscribers_get_every_change():
    rec = Recorder()
    sub = ("127.0.0.1", 9001)
    replies = rec.send(msg("/rtverb/subscribe", 9001))
    assert Reply(sub, "/rtverb/subscribed", (9001,)) in replies
    assert len([r for r in replies if r.dest == sub]) > 2 * len(PARAMS)  # full state dump
    other = ("10.0.0.2", 7000)
    replies = rec.send(msg("/rtverb/room/scattering", 0.3), sender=other)
    dests = {r.dest for r in by_address(replies, "/rtverb/room/scattering")}
    assert dests == {other, sub}
    rec.send(msg("/rtverb/unsubscribe", 9001))
    replies = rec.send(msg("/rtverb/room/scattering", 0.2), sender=other)
    assert {r.dest for r in by_address(replies, "/rtverb/room/scattering")} == {other}


def test_subscribers_are_bounded():
    rec = Recorder()
    for port in range(MAX_SUBSCRIBERS):
        assert errors(rec.send(msg("/rtverb/subscribe", 10000 + port))) == []
    assert "already subscribed" in errors(rec.send(msg("/rtverb/subscribe", 20000)))[0]


def test_preset_load_replaces_the_room_and_echoes_everything():
    rec = Recorder()
    replies = rec.send(msg("/rtverb/preset/load", "stone_church"))
    assert rec.c.room == load_preset("stone_church")
    assert by_address(replies, "/rtverb/preset/loaded")[0].args[0] == "stone_church"
    assert len(by_address(replies, "/rtverb/mix/wet_db")) == 1
    assert len(rec.rooms) == 1 and len(rec.mixes) == 1


def test_preset_save_writes_a_user_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("RTVERB_PRESETS_DIR", str(tmp_path))
    rec = Recorder()
    rec.send(msg("/rtverb/room/size/x", 8.25))
    replies = rec.send(msg("/rtverb/preset/save", "take_2"))
    assert by_address(replies, "/rtverb/preset/saved")[0].args[0] == "take_2"
    assert load_preset("take_2") == rec.c.room
    replies = rec.send(msg("/rtverb/preset/save", "classroom"))
    assert "read-only" in errors(replies)[0]


def test_address_table_covers_every_parameter_and_group():
    addresses = {row[0] for row in address_table()}
    for spec in PARAMS:
        assert "/rtverb/" + spec.name in addresses
        assert "/rtverb/norm/" + spec.name in addresses
    for group in GROUPS:
        assert "/rtverb/" + group in addresses


# ---- one loopback test of the server thread -------------------------------------------------


def test_server_echoes_over_udp():
    rec = Recorder()
    server = OscServer(rec.c, "127.0.0.1", 0).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(2.0)
            client.sendto(msg("/rtverb/room/size/x", 6.5), ("127.0.0.1", server.port))
            reply = OscMessage(client.recv(65536))
            assert (reply.address, reply.params) == ("/rtverb/room/size/x", [6.5])
            client.sendto(b"\x00\x01junk", ("127.0.0.1", server.port))
            while (reply := OscMessage(client.recv(65536))).address != "/rtverb/error":
                pass
            assert "malformed" in reply.params[0]
    finally:
        server.stop()
    assert rec.c.room.size_m[0] == 6.5


def test_busy_port_is_a_clear_error():
    rec = Recorder()
    server = OscServer(rec.c, "127.0.0.1", 0)
    try:
        with pytest.raises(OSError, match="--osc-port"):
            OscServer(rec.c, "127.0.0.1", server.port)
    finally:
        server.stop()


# ---- fuzz ----------------------------------------------------------------------------------

_ADDRESSES = sorted({row[0] for row in address_table()}) + [
    "/rtverb/get",
    "/rtverb/describe",
    "/rtverb/status",
    "/rtverb/subscribe",
    "/rtverb/preset/load",
    "/rtverb/rtverb",
    "/",
]
_ARG = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.booleans(),
    st.sampled_from(["carpet_cotton", "", "nope", "room/size/x", "studio_live_room"]),
    st.binary(min_size=1, max_size=8),
)
_MESSAGE = st.builds(
    lambda a, args: msg(a, *args), st.sampled_from(_ADDRESSES), st.lists(_ARG, max_size=8)
)


def _check_room_invariants(room: Room) -> None:
    Room.from_dict(room.to_dict())  # still a valid room
    for spec in PARAMS:
        value = room.get(spec.name)
        if spec.size > 1:
            assert all(spec.min <= c <= spec.max for c in material_absorption(value))
        elif spec.choices:
            assert value in spec.choices
        elif spec.relative_to_size:
            assert 0 < value < room.size_m[AXES.index(spec.name[-1])]
        else:
            assert spec.min <= value <= spec.max and math.isfinite(value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            _MESSAGE,
            st.binary(max_size=64),
            st.builds(lambda ms: bundle(*ms), st.lists(_MESSAGE, min_size=1, max_size=4)),
            # a valid message with its tail cut or corrupted
            st.builds(lambda m, n: m[: max(n, 0)], _MESSAGE, st.integers(0, 40)),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_fuzz_never_raises_and_never_changes_state_wrongly(packets):
    rec = Recorder()
    for data in packets:
        before = rec.c.room
        replies = rec.send(data)  # never raises
        assert all(isinstance(r.dgram(), bytes) for r in replies)  # replies always encode
        if errors(replies):
            assert rec.c.room is before, "an error reply must leave the room unchanged"
        else:
            _check_room_invariants(rec.c.room)
        if rec.c.room != before:
            assert not errors(replies)


_SCALARS = [p for p in PARAMS if p.size == 1 and not p.relative_to_size and not p.choices]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(_SCALARS), st.floats(0.0, 1.0))
def test_fuzz_in_range_values_land_exactly_and_touch_nothing_else(spec, unit):
    rec = Recorder()
    before = rec.c.room
    value = spec.min + unit * (spec.max - spec.min)
    replies = rec.send(msg("/rtverb/" + spec.name, value))
    assert errors(replies) == []
    assert rec.c.room.get(spec.name) == pytest.approx(value, rel=FLOAT32_REL, abs=1e-6)
    for other in PARAMS:
        if other.relative_to_size and spec.name.startswith("room/size/"):
            # a shrinking room carries the positions inside it, on that axis only
            axis = AXES.index(other.name[-1])
            moved = rec.c.room.get(other.name) != before.get(other.name)
            assert not moved or (
                AXES.index(spec.name[-1]) == axis
                and rec.c.room.get(other.name) == rec.c.room.size_m[axis] - POSITION_MARGIN_M
            )
        elif other.name != spec.name:
            assert rec.c.room.get(other.name) == before.get(other.name)
