"""OSC control: golden datagrams through `OscController` (no sockets), one loopback server test,
and a hypothesis fuzz test of random and malformed packets."""

from __future__ import annotations

import logging
import math
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import build_msg

from rtverb.osc.controller import (
    CONFIRM_S,
    GROUPS,
    MAX_PENDING,
    MAX_SUBSCRIBERS,
    POSITION_MARGIN_M,
    REPLY_FACTOR,
    SUBSCRIPTION_S,
    OscController,
    Reply,
    address_table,
)
from rtverb.osc.server import DEFAULT_ALLOW, OscServer, is_allowed, parse_allow
from rtverb.osc.wire import MAX_DATAGRAM_BYTES
from rtverb.room.params import AXES, PARAMS, PARAMS_BY_NAME
from rtverb.room.presets import load_preset
from rtverb.room.room import Room, material_absorption

SENDER = ("127.0.0.1", 50000)
#: OSC 'f' arguments are float32; values come back rounded to 7 significant digits.
FLOAT32_REL = 1e-6
#: A clamped position against the same sum in another order: float rounding only, m.
POSITION_ATOL_M = 1e-9


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
        self.now_s = 1000.0
        self.c = OscController(
            room or load_preset("studio_live_room"),
            on_room=lambda r, t: self.rooms.append((r, t)),
            on_mix=self.mixes.append,
            status=status,
            clock=lambda: self.now_s,
        )

    def send(self, data: bytes, sender=SENDER) -> list[Reply]:
        return self.c.handle_packet(data, sender, received_s=123.0)


def by_address(replies: list[Reply], address: str) -> list[Reply]:
    return [r for r in replies if r.address == address]


def errors(replies: list[Reply]) -> list[str]:
    return [r.args[0] for r in replies if r.address == "/rtverb/error"]


def subscribe(rec: Recorder, port: int, sender=SENDER) -> int:
    """The handshake: ``/rtverb/subscribe i``, then ``ii`` with its challenge's nonce."""
    (challenge,) = rec.send(msg("/rtverb/subscribe", port), sender=sender)
    dest = (sender[0], port)
    assert (challenge.dest, challenge.address) == (dest, "/rtverb/confirm"), challenge
    nonce = challenge.args[1]
    replies = rec.send(msg("/rtverb/subscribe", port, nonce), sender=sender)
    assert replies == [Reply(dest, "/rtverb/subscribed", (port, SUBSCRIPTION_S))], replies
    return int(nonce)


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


def test_golden_pair_name_sets_the_pair_and_echoes_its_spacing():
    # "/rtverb/listener/pair" (21 bytes + 3 NUL), ",s", "ab" padded to 4 bytes
    golden = b"/rtverb/listener/pair\x00\x00\x00" + b",s\x00\x00" + b"ab\x00\x00"
    assert golden == msg("/rtverb/listener/pair", "ab")
    rec = Recorder()
    replies = rec.send(golden)
    assert errors(replies) == [] and rec.c.room.pair == "ab"
    assert len(rec.rooms) == 1 and rec.mixes == []  # a new pair is a new IR
    assert by_address(replies, "/rtverb/listener/pair") == [
        Reply(SENDER, "/rtverb/listener/pair", ("ab",))
    ]
    # the pair's own spacing changed with it (ORTF 0.17 m -> AB 0.4 m): echoed too
    assert by_address(replies, "/rtverb/listener/spacing_m")[0].args == (0.4,)
    (norm,) = by_address(replies, "/rtverb/norm/listener/pair")
    assert norm.args == (1 / 4,)  # ab is the second of five names


def test_a_new_pair_resets_spacing_and_angle_to_its_own_unless_the_bundle_sets_them():
    rec = Recorder()  # studio_live_room: ORTF, spacing and angle the pair's own
    spacing = msg("/rtverb/listener/spacing_m", 0.3)
    rec.send(bundle(spacing, msg("/rtverb/listener/angle_deg", 40.0)))
    assert (rec.c.room.spacing_m, rec.c.room.angle_deg) == (0.3, 40.0)
    replies = rec.send(msg("/rtverb/listener/pair", "ab"))
    assert (rec.c.room.spacing_m, rec.c.room.angle_deg) == (None, None)
    assert by_address(replies, "/rtverb/listener/spacing_m")[0].args == (0.4,)  # AB's own
    assert by_address(replies, "/rtverb/listener/angle_deg")[0].args == (0.0,)
    for messages in [(spacing, msg("/rtverb/listener/pair", "ortf")), (spacing,)]:
        rec.send(bundle(*messages))
        assert (rec.c.room.pair, rec.c.room.spacing_m, rec.c.room.angle_deg) == ("ortf", 0.3, None)
    rec.send(msg("/rtverb/norm/listener/pair", 0.5))  # the same pair (ORTF) again: kept
    assert rec.c.room.spacing_m == 0.3


def test_golden_nil_unsets_spacing_and_angle_and_only_those():
    rec = Recorder()
    rec.send(
        bundle(msg("/rtverb/listener/spacing_m", 0.3), msg("/rtverb/listener/angle_deg", 40.0))
    )
    golden = b"/rtverb/listener/spacing_m\x00\x00" + b",N\x00\x00"
    assert golden == msg("/rtverb/listener/spacing_m", None)
    replies = rec.send(golden)
    assert errors(replies) == [] and rec.c.room.spacing_m is None
    assert by_address(replies, "/rtverb/listener/spacing_m")[0].args == (0.17,)  # ORTF's own
    assert errors(rec.send(msg("/rtverb/norm/listener/angle_deg", None))) == []
    assert rec.c.room.angle_deg is None
    (error,) = errors(rec.send(msg("/rtverb/room/scattering", None)))
    assert "expected a number, got NoneType None" in error


def test_golden_unknown_pair_is_refused_with_the_names_and_nothing_changes():
    golden = b"/rtverb/listener/pair\x00\x00\x00" + b",s\x00\x00" + b"spaced\x00\x00"
    rec = Recorder()
    before = rec.c.room
    (error,) = errors(rec.send(golden))
    assert error == (
        "/rtverb/listener/pair: unknown pair 'spaced'; send one of mono, ab, ortf, xy, "
        "blumlein; state unchanged"
    )
    assert rec.c.room is before and rec.rooms == []
    number = b"/rtverb/listener/pair\x00\x00\x00" + b",f\x00\x00" + struct.pack(">f", 2.0)
    assert "expected one name (mono, ab, ortf, xy, blumlein)" in errors(rec.send(number))[0]


@pytest.mark.parametrize(
    ("golden", "field", "value"),
    [
        (b"/rtverb/norm/listener/pair\x00\x00" + b",f\x00\x00" + struct.pack(">f", 1.0),
         "pair", "blumlein"),
        (b"/rtverb/source/spread_m\x00" + b",f\x00\x00" + struct.pack(">f", 1.5),
         "spread_m", 1.5),
        (b"/rtverb/norm/mix/width\x00\x00" + b",f\x00\x00" + struct.pack(">f", 0.25),
         "width", 0.25),
        (b"/rtverb/listener/azimuth_deg\x00\x00\x00\x00" + b",f\x00\x00"
         + struct.pack(">f", -90.0), "azimuth_deg", -90.0),
    ],
    ids=["norm pair", "spread", "norm width", "azimuth"],
)  # fmt: skip
def test_golden_stereo_addresses(golden, field, value):
    rec = Recorder()
    assert errors(rec.send(golden)) == []
    assert getattr(rec.c.room, field) == value
    assert len(rec.rooms) == 1 and rec.mixes == []  # each one changes the IR


def test_golden_width_outside_0_1_is_refused():
    golden = b"/rtverb/mix/width\x00\x00\x00" + b",f\x00\x00" + struct.pack(">f", 1.5)
    rec = Recorder()
    (error,) = errors(rec.send(golden))
    assert "/rtverb/mix/width: 1.5 is outside 0..1" in error and rec.rooms == []


def test_a_spacing_the_room_cannot_hold_is_refused():
    rec = Recorder(load_preset("vocal_booth"))  # 2.2 x 2.0 m, an XY pair
    (error,) = errors(rec.send(msg("/rtverb/listener/spacing_m", 3.0)))
    assert "listener.spacing_m: the left capsule" in error and "reduce spacing_m" in error
    assert rec.c.room.spacing_m is None and rec.rooms == []


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
    # a mono listener: a pair's capsules could not sit 1 cm from the west wall
    rec = Recorder(Room.from_dict({**load_preset("studio_live_room").to_dict(), "listener": {
        "position_m": [5.0, 2.5, 1.2]}}))  # fmt: skip
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
        (b"garbage!" * 4, "malformed OSC packet"),
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


def test_describe_is_paged_over_every_parameter_of_the_table():
    rec = Recorder()
    assert rec.send(msg("/rtverb/describe")) == [
        Reply(SENDER, "/rtverb/describe/count", (len(PARAMS),))
    ]
    for i, spec in enumerate(PARAMS):
        (r,) = rec.send(msg("/rtverb/describe", i))
        name, unit, lo, hi, default = r.args[:5]
        assert (name, unit, lo, hi, default) == (spec.name, spec.unit, spec.min, spec.max,
                                                 spec.default)  # fmt: skip
        assert OscMessage(r.dgram()).address == "/rtverb/describe/param"
    assert f"0..{len(PARAMS) - 1}" in errors(rec.send(msg("/rtverb/describe", len(PARAMS))))[0]


def test_status_is_paged_over_the_provider_figures():
    rec = Recorder(status=lambda: {"load": 0.25, "xruns": 3, "latency_ms": 5.3})
    (count,) = rec.send(msg("/rtverb/status"))
    assert count.address == "/rtverb/status/count" and count.args == (5,)
    assert rec.send(msg("/rtverb/status", 0)) == [Reply(SENDER, "/rtverb/status/load", (0.25,))]
    assert rec.send(msg("/rtverb/status", 1)) == [Reply(SENDER, "/rtverb/status/xruns", (3,))]
    (r,) = rec.send(msg("/rtverb/status", 4))
    assert r.address == "/rtverb/status/osc_errors"


def test_subscribers_get_every_change():
    rec = Recorder()
    sub = ("127.0.0.1", 9001)
    subscribe(rec, 9001)
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
        subscribe(rec, 10000 + port)
    assert "already subscribed" in errors(rec.send(msg("/rtverb/subscribe", 20000)))[0]


def test_a_bundle_of_confirmations_cannot_pass_the_subscriber_bound():
    rec = Recorder()
    for port in range(MAX_SUBSCRIBERS - 1):
        subscribe(rec, 10000 + port)
    ports = (20000, 20001)
    nonces = [rec.send(msg("/rtverb/subscribe", p))[0].args[1] for p in ports]
    confirmations = [msg("/rtverb/subscribe", p, n) for p, n in zip(ports, nonces, strict=True)]
    replies = rec.send(bundle(*confirmations))
    assert len(rec.c.subscribers) == MAX_SUBSCRIBERS
    assert "already subscribed" in errors(replies)[0]


def test_preset_load_replaces_the_room_and_echoes_everything_to_subscribers():
    rec = Recorder()
    tablet = ("10.0.0.9", 9001)
    subscribe(rec, 9001, sender=tablet)
    replies = rec.send(msg("/rtverb/preset/load", "stone_church"))
    assert rec.c.room == load_preset("stone_church")
    assert by_address(replies, "/rtverb/preset/loaded")[0].args[0] == "stone_church"
    assert [r.dest for r in by_address(replies, "/rtverb/mix/wet_db")] == [tablet]
    assert len([r for r in replies if r.dest == tablet]) == 2 * len(PARAMS)
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


def test_an_address_not_on_this_machine_names_osc_host():
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine, no DNS lookup
    with pytest.raises(OSError, match="192.0.2.1 is not an address of this machine.*--osc-host"):
        OscServer(Recorder().c, "192.0.2.1", 0)


def test_an_ipv6_address_is_bracketed_before_its_port(caplog):
    server = OscServer(Recorder().c, "::1", 0)
    try:
        assert server.startup_line().startswith(f"OSC on [::1]:{server.port}, accepting")
    finally:
        server.stop()
    rec = Recorder()
    subscribe(rec, 9001, sender=("::1", 50000))
    with caplog.at_level(logging.INFO, logger="rtverb.osc.controller"):
        rec.c.drop_subscriber(("::1", 9001))
    assert "subscriber [::1]:9001 is unreachable" in caplog.text
    # 2001:db8::/32 is for documentation (RFC 3849): never an address of this machine
    with pytest.raises(OSError, match=r"on \[2001:db8::1\]:0 \(.*--osc-host"):
        OscServer(Recorder().c, "2001:db8::1", 0)


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


# every in-range value lands, except where the room bounds it: positions, the pair's spacing
# and the source's spread (a capsule or point source must stay inside the room)
_ROOM_BOUND = ("listener/spacing_m", "source/spread_m")
_SCALARS = [
    p
    for p in PARAMS
    if p.size == 1 and not p.relative_to_size and not p.choices and p.name not in _ROOM_BOUND
]


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
            # a shrinking room carries the positions inside it, on that axis only, with the
            # listener's capsules (the studio's ORTF pair) inside too
            axis = AXES.index(other.name[-1])
            moved = rec.c.room.get(other.name) != before.get(other.name)
            centre = rec.c.room.listener_position_m[axis]
            reach = max(abs(c.position_m[axis] - centre) for c in rec.c.room.capsules())
            reach *= other.name.startswith("listener/")
            assert not moved or (
                AXES.index(spec.name[-1]) == axis
                and rec.c.room.get(other.name)
                == pytest.approx(
                    rec.c.room.size_m[axis] - POSITION_MARGIN_M - reach, abs=POSITION_ATOL_M
                )
            )
        elif other.name != spec.name:
            assert rec.c.room.get(other.name) == before.get(other.name)


# ---- what a remote sender can reach (issue 14) --------------------------------------------

#: ``/rtverb/mix/wet_db ,f`` with no value bytes: python-osc pads it to 0.0 and applied it.
GOLDEN_NO_VALUE = b"/rtverb/mix/wet_db\x00\x00" + b",f\x00\x00"
#: ``/rtverb/room/scattering ,f 0.5`` with the float's last 2 bytes cut.
GOLDEN_CUT_FLOAT = b"/rtverb/room/scattering\x00" + b",f\x00\x00" + struct.pack(">f", 0.5)[:2]
#: ``/rtverb/preset/save s /any/path/x.toml``: wrote anywhere the process could write.
GOLDEN_SAVE_PATH = b"/rtverb/preset/save\x00" + b",s\x00\x00" + b"/any/path/x.toml\x00\x00\x00\x00"
#: ``/rtverb/preset/load s /dev/zero``: read forever.
GOLDEN_LOAD_DEVICE = b"/rtverb/preset/load\x00" + b",s\x00\x00" + b"/dev/zero\x00\x00\x00"
#: ``/rtverb/describe``: 24 bytes that answered 2.4 kB.
GOLDEN_DESCRIBE = b"/rtverb/describe\x00\x00\x00\x00" + b",\x00\x00\x00"


@pytest.mark.parametrize(
    "data, fragment",
    [
        (GOLDEN_NO_VALUE, "needs 4 bytes, 0 left"),
        (GOLDEN_CUT_FLOAT, "not a multiple of 4"),
        (msg("/rtverb/mix/wet_db", -3.0) + b"\x00\x00\x00\x00", "4 bytes after the last"),
        (msg("/rtverb/mix/wet_db", -3.0)[:-4] + b"\x00\x00\x00", "not a multiple of 4"),
        (b"/rtverb/mix/wet_db\x00\x00,f\x00\x00\x00\x00\x00", "not a multiple of 4"),
        (b"/rtverb/mix/wet_db\x00\x00,t\x00\x00" + bytes(8), "type tag 't'"),
        (b"/rtverb/mix/wet_db\x00\x00,s\x00\x00abcd", "no terminating NUL"),
        (b"/rtverb/mix/wet_db\x00\x00" + b",b\x00\x00" + struct.pack(">i", 99), "blob"),
        (b"#bundle\x00" + bytes(8) + struct.pack(">i", 64) + GOLDEN_DESCRIBE, "declares 64"),
    ],
)
def test_datagrams_that_do_not_hold_their_type_tags_are_refused(data, fragment):
    rec = Recorder()
    before = rec.c.room
    replies = rec.send(data)
    assert len(errors(replies)) == 1 and fragment in errors(replies)[0], replies
    assert rec.c.room is before and rec.rooms == [] and rec.mixes == []


def test_a_bundle_of_the_udp_maximum_applies():
    rec = Recorder()
    setter = msg("/rtverb/room/scattering", 0.25)
    last = msg("/rtverb/mix/wet_db", -9.0)
    count = (MAX_DATAGRAM_BYTES - 16 - 4 - len(last)) // (4 + len(setter))
    data = bundle(*[setter] * count, last)
    assert 8192 < len(data) <= MAX_DATAGRAM_BYTES
    assert errors(rec.send(data)) == []
    assert rec.c.room.scattering == 0.25 and rec.c.room.wet_db == -9.0


@pytest.mark.parametrize("data", [GOLDEN_SAVE_PATH, msg("/rtverb/preset/save", "../x")])
def test_preset_save_takes_names_only(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RTVERB_PRESETS_DIR", str(tmp_path / "presets"))
    replies = Recorder().send(data)
    assert "bad preset name" in errors(replies)[0]
    assert list(tmp_path.rglob("*")) == []


@pytest.mark.parametrize(
    "name", ["/dev/zero", "../presets/classroom", "/etc/passwd", "classroom.toml", "x" * 65]
)
def test_preset_load_takes_names_only_and_reads_nothing_else(name):
    rec = Recorder()
    before = rec.c.room
    data = GOLDEN_LOAD_DEVICE if name == "/dev/zero" else msg("/rtverb/preset/load", name)
    replies = rec.send(data)
    assert "bad preset name" in errors(replies)[0]
    assert rec.c.room is before


def _valid_messages() -> list[bytes]:
    """One valid datagram per address and command."""
    out = []
    for spec in PARAMS:
        if spec.size > 1:
            out += [msg("/rtverb/" + spec.name, "carpet_cotton"), msg("/rtverb/" + spec.name, 0.3)]
        elif not spec.relative_to_size:
            out.append(msg("/rtverb/" + spec.name, (spec.min + spec.max) / 2))
        out.append(msg("/rtverb/norm/" + spec.name, 0.5))
    out += [msg("/rtverb/" + g, 0.5, 0.5, 0.5) for g in GROUPS if "position" in g]
    out += [msg("/rtverb/norm/" + g, 0.6, 0.5, 0.5) for g in GROUPS]
    out += [
        msg("/rtverb/get", "room/size"),
        msg("/rtverb/describe"),
        msg("/rtverb/describe", 3),
        msg("/rtverb/status"),
        msg("/rtverb/status", 0),
        msg("/rtverb/subscribe", 9001),
        msg("/rtverb/subscribe", 9001, 7),  # a wrong nonce
        msg("/rtverb/unsubscribe", 9001),
        msg("/rtverb/preset/load", "stone_church"),
        msg("/rtverb/room/surface/east", 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
        msg("/rtverb/mix/wet_db", True),
        msg("/rtverb/mix/wet_db", -6),
    ]
    return out


VALID = _valid_messages()


@pytest.mark.parametrize("data", [*VALID, GOLDEN_DESCRIBE, bundle(*VALID[:3])])
def test_replies_to_the_sender_are_at_most_reply_factor_times_the_datagram(data):
    rec = Recorder(status=lambda: {"load": 0.25, "xruns": 3})
    subscribe(rec, 9002)  # the sender's host's feedback counts too
    replies = rec.send(data)
    to_host = sum(len(r.dgram()) for r in replies if r.dest[0] == SENDER[0])
    assert to_host <= REPLY_FACTOR * len(data)


def test_an_unbounded_reply_would_be_cut_and_an_error_shortened():
    rec = Recorder()
    tiny = b"/x\x00\x00,\x00\x00\x00"  # 8 bytes: an unknown address
    (r,) = rec.send(tiny)
    assert r.address == "/rtverb/error" and len(r.dgram()) <= REPLY_FACTOR * len(tiny)
    assert "unknown address" in r.args[0]


def test_a_subscriber_on_the_senders_host_gets_the_whole_error_and_no_copy_is_cut():
    # the README's oscsend (an ephemeral port nobody reads) + oscdump subscribed on one host
    rec = Recorder()
    oscdump = (SENDER[0], 9001)
    subscribe(rec, oscdump[1])
    replies = rec.send(msg("/rtverb/room/size/x", 99.0))  # out of range
    (whole,) = errors([r for r in replies if r.dest == oscdump])
    assert whole.startswith("/rtverb/room/size/x: 99 m is outside")
    assert whole.endswith("; state unchanged")
    assert set(errors(replies)) == {whole}  # the sender's copy is whole or left out


def test_subscriptions_expire_unless_renewed_with_their_nonce_and_get_errors_and_warnings():
    rec = Recorder()
    tablet = ("10.0.0.9", 9001)
    nonce = subscribe(rec, 9001, sender=tablet)
    replies = rec.send(msg("/rtverb/room/size/x", 99.0))  # out of range
    assert {r.dest for r in by_address(replies, "/rtverb/error")} == {SENDER, tablet}
    replies = rec.send(msg("/rtverb/room/size/x", 45.0))  # outside the model domain
    assert {r.dest for r in by_address(replies, "/rtverb/warning")} == {SENDER, tablet}
    rec.now_s += SUBSCRIPTION_S - 1
    renewed = rec.send(msg("/rtverb/subscribe", 9001, nonce), sender=tablet)
    assert renewed == [Reply(tablet, "/rtverb/subscribed", (9001, SUBSCRIPTION_S))]
    rec.now_s += SUBSCRIPTION_S - 1
    # a spoofer keeping the tablet subscribed: the challenge again (to the tablet), no renewal
    spoofed = rec.send(msg("/rtverb/subscribe", 9001), sender=tablet)
    assert spoofed == [Reply(tablet, "/rtverb/confirm", (9001, nonce))]
    assert errors(rec.send(msg("/rtverb/subscribe", 9001, nonce ^ 1), sender=tablet))
    replies = rec.send(msg("/rtverb/room/scattering", 0.3))
    assert tablet in {r.dest for r in replies}
    rec.now_s += 2
    replies = rec.send(msg("/rtverb/room/scattering", 0.4))
    assert tablet not in {r.dest for r in replies} and rec.c.subscribers == {}
    # a lapsed subscription's nonce is gone with it
    assert "not the nonce" in errors(rec.send(msg("/rtverb/subscribe", 9001, nonce), tablet))[0]
    assert rec.c.subscribers == {}


def test_dead_subscribers_cannot_lock_others_out():
    rec = Recorder()
    for port in range(MAX_SUBSCRIBERS):
        subscribe(rec, 10000 + port)
    assert "already subscribed" in errors(rec.send(msg("/rtverb/subscribe", 20000)))[0]
    rec.now_s += SUBSCRIPTION_S
    subscribe(rec, 20000)


#: ``/rtverb/subscribe ,i 9001``: 28 bytes; its challenge must be no larger.
GOLDEN_SUBSCRIBE = b"/rtverb/subscribe\x00\x00\x00" + b",i\x00\x00" + struct.pack(">i", 9001)


def test_golden_subscribe_handshake():
    rec = Recorder()
    assert GOLDEN_SUBSCRIBE == msg("/rtverb/subscribe", 9001)
    (challenge,) = rec.send(GOLDEN_SUBSCRIBE)
    nonce = challenge.args[1]
    assert challenge.dest == (SENDER[0], 9001) and 0 <= nonce < 2**31
    confirm = b"/rtverb/confirm\x00" + b",ii\x00" + struct.pack(">ii", 9001, nonce)
    assert challenge.dgram() == confirm and len(confirm) <= len(GOLDEN_SUBSCRIBE)
    # pending: no feedback yet
    replies = rec.send(msg("/rtverb/room/scattering", 0.3), sender=("10.0.0.2", 7000))
    assert (SENDER[0], 9001) not in {r.dest for r in replies} and rec.c.subscribers == {}
    answer = b"/rtverb/subscribe\x00\x00\x00" + b",ii\x00" + struct.pack(">ii", 9001, nonce)
    subscribed = b"/rtverb/subscribed\x00\x00" + b",if\x00" + struct.pack(">if", 9001, 60.0)
    assert [r.dgram() for r in rec.send(answer)] == [subscribed]
    replies = rec.send(msg("/rtverb/room/scattering", 0.4), sender=("10.0.0.2", 7000))
    assert (SENDER[0], 9001) in {r.dest for r in replies}


def test_a_spoofed_subscribe_earns_the_victim_the_challenge_and_nothing_more():
    # --osc-allow 192.168.1.0/24: the attacker sends a subscribe with the victim's address,
    # then small datagrams from its own address whose echoes would go to the victim
    rec = Recorder()
    victim, attacker = ("192.168.1.20", 50000), ("192.168.1.66", 40000)
    spoofed = msg("/rtverb/subscribe", 9001)
    to_victim = rec.send(spoofed, sender=victim)
    for _ in range(100):
        for data in (msg("/rtverb/preset/load", "stone_church"), msg("/rtverb/mix/wet_db", 1)):
            to_victim += [r for r in rec.send(data, sender=attacker) if r.dest[0] == victim[0]]
    assert [r.address for r in to_victim] == ["/rtverb/confirm"]
    assert sum(len(r.dgram()) for r in to_victim) <= len(spoofed)
    assert rec.c.subscribers == {}


def test_a_wrong_absent_or_foreign_nonce_is_refused_and_registers_nothing():
    rec = Recorder()
    tablet, other = ("10.0.0.9", 50000), ("10.0.0.10", 50000)
    no_challenge = rec.send(msg("/rtverb/subscribe", 9001, 12345), sender=tablet)
    assert "not the nonce of port 9001" in errors(no_challenge)[0]
    (challenge,) = rec.send(msg("/rtverb/subscribe", 9001), sender=tablet)
    nonce = challenge.args[1]
    for args, sender in [
        ((9001, nonce ^ 1), tablet),  # wrong
        ((9001, float(nonce)), tablet),  # not an int
        ((9002, nonce), tablet),  # another port's
        ((9001, nonce), other),  # from another host
        ((9001,), other),  # a challenge to the other host only
        ((9001, nonce, 1), tablet),  # too many arguments
    ]:
        replies = rec.send(msg("/rtverb/subscribe", *args), sender=sender)
        assert rec.c.subscribers == {} and "/rtverb/subscribed" not in [r.address for r in replies]
        assert errors(replies) or replies[0].address == "/rtverb/confirm", replies
    rec.now_s += CONFIRM_S  # the challenge lapses
    assert errors(rec.send(msg("/rtverb/subscribe", 9001, nonce), sender=tablet))
    assert rec.c.subscribers == {}


def test_pending_challenges_are_bounded_and_the_oldest_goes_first():
    rec = Recorder()
    nonces = [rec.send(msg("/rtverb/subscribe", 10000 + i))[0].args[1] for i in range(MAX_PENDING)]
    rec.send(msg("/rtverb/subscribe", 20000))  # pushes 10000's challenge out
    assert errors(rec.send(msg("/rtverb/subscribe", 10000, nonces[0])))
    assert errors(rec.send(msg("/rtverb/subscribe", 10001, nonces[1]))) == []
    assert set(rec.c.subscribers) == {(SENDER[0], 10001)}


def test_allow_list():
    local = parse_allow(DEFAULT_ALLOW)
    assert is_allowed("127.0.0.1", local) and is_allowed("::1", local)
    assert is_allowed("::ffff:127.0.0.1", local)
    assert not is_allowed("192.168.1.20", local) and not is_allowed("nonsense", local)
    lan = parse_allow("192.168.1.0/24, 10.0.0.7")
    assert is_allowed("192.168.1.20", lan) and is_allowed("10.0.0.7", lan)
    assert not is_allowed("10.0.0.8", lan)
    with pytest.raises(ValueError, match="'192.168.1/24' is not an address"):
        parse_allow("192.168.1/24")


def test_a_refused_sender_gets_nothing_back():
    rec = Recorder()
    server = OscServer(rec.c, "127.0.0.1", 0, allow=parse_allow("10.0.0.0/8")).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(0.5)
            client.sendto(msg("/rtverb/room/size/x", 6.5), ("127.0.0.1", server.port))
            client.sendto(b"junk", ("127.0.0.1", server.port))
            with pytest.raises(TimeoutError):
                client.recv(65536)
    finally:
        server.stop()
    assert rec.c.room.size_m[0] != 6.5 and rec.c.packets == 0


def test_server_reads_bundles_of_the_udp_maximum_and_drops_unreachable_subscribers():
    rec = Recorder()
    server = OscServer(rec.c, "127.0.0.1", 0).start()
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(2.0)
            dest = ("127.0.0.1", server.port)
            client.sendto(msg("/rtverb/subscribe", dead_port), dest)
            challenge = OscMessage(dead.recv(65536))  # the handshake, over the wire
            assert (challenge.address, challenge.params[0]) == ("/rtverb/confirm", dead_port)
            client.sendto(msg("/rtverb/subscribe", dead_port, challenge.params[1]), dest)
            assert OscMessage(dead.recv(65536)).address == "/rtverb/subscribed"
            dead.close()  # its port now answers ICMP port unreachable
            setter = msg("/rtverb/room/scattering", 0.25)
            big = bundle(*[setter] * ((MAX_DATAGRAM_BYTES - 16) // (4 + len(setter))))
            assert len(big) > 60000
            for _ in range(3):  # the first send provokes the ICMP, a later one reports it
                client.sendto(big, dest)
                while OscMessage(client.recv(65536)).address != "/rtverb/norm/room/scattering":
                    pass
                time.sleep(0.05)
    finally:
        server.stop()
    assert rec.c.room.scattering == 0.25 and rec.c.errors == 0
    assert rec.c.subscribers == {}


def _well_formed(data: bytes) -> bool:
    """Independent oracle: python-osc parses it and builds back the very same bytes (every
    valid message here uses types python-osc writes back unchanged: i, f, s, T, F)."""
    try:
        parsed = OscMessage(data)
        return bytes(build_msg(parsed.address, list(parsed.params)).dgram) == data
    except Exception:
        return False


def _mutate(data: bytes, kind: str, n: int, bit: int) -> bytes:
    if kind == "truncate":
        return data[: n % len(data)]
    if kind == "pad":
        return data + bytes(1 + n % 12)
    flipped = bytearray(data)
    flipped[n % len(data)] ^= 1 << bit
    return bytes(flipped)


@settings(max_examples=1500, deadline=None)
@given(
    st.sampled_from(VALID),
    st.sampled_from(["truncate", "pad", "flip"]),
    st.integers(0, 10_000),
    st.integers(0, 7),
)
def test_fuzz_mutated_valid_messages_apply_only_when_well_formed(data, kind, n, bit):
    rec = Recorder()
    before = rec.c.room
    mutated = _mutate(data, kind, n, bit)
    replies = rec.send(mutated)
    # the shortest error reply fits the reply budget of a datagram of 3 bytes or more
    told = bool(errors(replies)) or REPLY_FACTOR * len(mutated) < len(
        Reply((), "/rtverb/error", ("",)).dgram()
    )
    if not _well_formed(mutated):
        assert rec.c.room is before and rec.rooms == [] and rec.mixes == [], mutated
        assert told
    if kind in ("truncate", "pad"):
        assert rec.c.room is before and told


def test_moving_the_listener_onto_the_source_is_refused():
    rec = Recorder()
    before = rec.c.room
    replies = rec.send(msg("/rtverb/listener/position", *before.source_position_m))
    assert "apart" in errors(replies)[0]
    assert rec.c.room is before and rec.rooms == []


def test_a_shrinking_room_keeps_a_spread_sources_points_inside():
    rec = Recorder(load_preset("concert_hall"))  # a 20 m hall, its source spread 6 m wide
    for x in (4.7, 4.1, 7.0):  # the knob benchmark's sweep: the listener moves, the line turns
        assert errors(rec.send(msg("/rtverb/room/size/x", x))) == []
        room = rec.c.room
        assert room.size_m[0] == x and room.true_stereo
        assert all(0.01 <= p[0] <= x - 0.01 for p in room.sources())


def test_a_room_too_small_for_the_spread_names_the_spread():
    rec = Recorder(load_preset("concert_hall"))  # its source spread 6 m wide, across y
    before = rec.c.room
    (error,) = errors(rec.send(msg("/rtverb/room/size", 4.0, 3.0, 2.5)))
    assert "source.spread_m" in error and "reduce spread_m" in error, error
    assert rec.c.room is before


def test_a_listener_fader_at_its_end_keeps_the_pairs_capsules_inside():
    rec = Recorder()  # the studio: an ORTF pair facing the source
    for end in (0.0, 1.0):
        replies = rec.send(msg("/rtverb/norm/listener/position/x", end))
        assert errors(replies) == []
        xs = [c.position_m[0] for c in rec.c.room.capsules()]
        near_wall = min(min(xs), rec.c.room.size_m[0] - max(xs))
        assert near_wall == pytest.approx(POSITION_MARGIN_M, abs=POSITION_ATOL_M)
        assert by_address(replies, "/rtverb/listener/position/x")  # echoed where it went


def test_a_shrinking_room_keeps_a_coincident_pair():
    # the capsules sit on the listener: clamped 1 cm inside, they must not be refused as closer
    xy = Room.from_dict({**load_preset("studio_live_room").to_dict(), "listener": {
        "position_m": [5.0, 2.5, 1.2], "pair": "xy"}})  # fmt: skip
    rec = Recorder(xy)
    assert errors(rec.send(msg("/rtverb/room/size", 4.0, 2.0, 2.5))) == []
    assert rec.c.room.listener_position_m[:2] == (4.0 - POSITION_MARGIN_M, 2.0 - POSITION_MARGIN_M)


def test_a_mono_session_refuses_a_pair():
    mono = Room.from_dict({**load_preset("studio_live_room").to_dict(), "listener": {
        "position_m": [5.0, 2.5, 1.2]}})  # fmt: skip
    rec = Recorder(mono)
    rec.c.channels = 1  # as `rtverb live --channels 1` builds it
    (error,) = errors(rec.send(msg("/rtverb/listener/pair", "xy")))
    assert error == (
        "/rtverb/listener/pair: the xy pair gives 2 channels and the audio runs 1; keep pair "
        "mono, or restart with --channels 2; state unchanged"
    )
    assert rec.c.room is mono and rec.rooms == []
    assert "--channels 2" in errors(rec.send(msg("/rtverb/preset/load", "concert_hall")))[0]
