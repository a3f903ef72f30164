"""OSC control: addresses derived from the parameter table, handlers that validate and store.

`OscController` holds the current room and turns one OSC packet (a message or a bundle) into one
change: every message of a bundle is validated against a working copy of the room and the
bundle is committed as a whole, or not at all. It never touches sockets: it returns the
replies to send, so tests feed it golden datagrams; `rtverb.osc.server.OscServer` owns the
socket.

Addresses (``/rtverb/`` + a parameter name from `rtverb.room.params`; see `address_table`):

- ``/rtverb/room/size/x f`` … one value per parameter; ``/rtverb/room/size fff``,
  ``/rtverb/source/position fff``, ``/rtverb/listener/position fff`` set three axes at once;
- ``/rtverb/room/surface/<floor|ceiling|east|west|north|south> s|f|6-7 f``;
- ``/rtverb/listener/pair s``: an enum takes one of its names (an unknown one is refused with
  the list); its ``/rtverb/norm/`` twin picks the nearest of them spread over 0..1; a new pair
  brings back its own spacing and angle unless the same packet sets them, and
  ``/rtverb/listener/spacing_m N`` (``angle_deg N``, nil) gives them back to the pair;
- ``/rtverb/norm/<any of the above>``: the same in 0..1 (faders), mapped onto ``[min, max]``
  (positions: onto the room's size);
- ``/rtverb/preset/load s``, ``/rtverb/preset/save s`` (preset names only, never paths),
  ``/rtverb/get s``, ``/rtverb/describe [i]``, ``/rtverb/status [i]``,
  ``/rtverb/subscribe i [i]``, ``/rtverb/unsubscribe i``.

Datagrams are parsed strictly (`rtverb.osc.wire`): bytes that do not hold what the type tags
declare are refused. Every applied value is echoed, as applied, to the sender and to subscribers
(a position the room's new size moved is echoed too); bad input, a value outside its range
included, gets ``/rtverb/error s`` and leaves the state unchanged; a room outside the model
domain (inside the ranges) is applied with ``/rtverb/warning s``; errors and warnings go to
subscribers too. int, float and bool arguments are interchangeable. Bundle timetags are ignored:
a bundle applies when it arrives.

Replies to one datagram, to its sender's host, total at most `REPLY_FACTOR` times the
datagram's size (what does not fit is left out; the host's subscribed ports come before the
sender's own; only an error's first copy is shortened), so a spoofed sender address cannot turn
rtverb into an amplifier; long answers are paged (``/rtverb/describe i``,
``/rtverb/status i``).

Subscribing is a handshake, so that nobody can subscribe someone else's address:
``/rtverb/subscribe i`` (a port on the sender's host) only sends that port a challenge,
``/rtverb/confirm ii`` (the port, a random nonce; 28 bytes, no larger than the request); the
controller answers ``/rtverb/subscribe ii`` (port, nonce) within `CONFIRM_S` and the port
subscribes for `SUBSCRIPTION_S`, ``/rtverb/subscribed i f``. Renewing takes the same nonce
(``/rtverb/subscribe i`` sends it again and renews nothing); a lapsed subscription takes
its nonce with it. So rtverb sends a host only answers to datagrams that claim to come from it
(bounded as above) and feedback to ports on it that proved they receive their challenge.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pythonosc.osc_message_builder import build_msg

from rtverb.osc.wire import MalformedPacket, parse_packet
from rtverb.room import mics
from rtverb.room.hints import did_you_mean
from rtverb.room.params import AXES, BANDS_HZ, PARAMS, PARAMS_BY_NAME, ParamSpec
from rtverb.room.presets import load_named_preset, save_preset
from rtverb.room.room import PAIR_DEFAULTED, Room, RoomError, material_absorption

log = logging.getLogger(__name__)

PREFIX = "/rtverb/"
NORM = "norm/"
#: Positions are kept at least this far inside the room (a room excludes its walls).
POSITION_MARGIN_M = 0.01
#: OSC floats are float32: values are rounded to this many digits (8.3 stays 8.3, not 8.30000019).
SIGNIFICANT_DIGITS = 7
#: Most clients that `/rtverb/subscribe` may register (bounds the feedback traffic).
MAX_SUBSCRIBERS = 16
#: A subscription lasts this long unless the controller renews it (`/rtverb/subscribe ii`), s.
SUBSCRIPTION_S = 60.0
#: A challenge (`/rtverb/confirm`) must be answered within this time, s.
CONFIRM_S = 10.0
#: Most challenges awaiting their answer; a new one pushes the oldest out (a flood of spoofed
#: requests cannot lock real controllers out for long).
MAX_PENDING = 16
#: Nonces are drawn from 0 .. NONCE_BOUND - 1 (31 bits: a positive OSC int32).
NONCE_BOUND = 2**31
#: Replies to one datagram, to its sender's host, total at most this many times its size
#: (payload bytes): a spoofed sender address gets no amplification worth the name.
REPLY_FACTOR = 8

Address = tuple[Any, ...]  # (host, port) as the socket reports it


@dataclass(frozen=True)
class Reply:
    """One OSC message to send: destination, address, arguments."""

    dest: Address
    address: str
    args: tuple[Any, ...] = ()

    def dgram(self) -> bytes:
        return bytes(build_msg(self.address, list(self.args)).dgram)


class BadInput(ValueError):
    """A message that cannot be applied; the text goes back as ``/rtverb/error``."""


# ---- the address table, derived from rtverb.room.params ---------------------------------------


def _groups() -> dict[str, tuple[str, ...]]:
    """Group name -> its per-axis parameter names, e.g. ``room/size`` -> (``room/size/x``, …)."""
    groups: dict[str, list[str]] = {}
    for spec in PARAMS:
        head, _, last = spec.name.rpartition("/")
        if last in AXES:
            groups.setdefault(head, []).append(spec.name)
    return {g: tuple(names) for g, names in groups.items() if len(names) == len(AXES)}


GROUPS = _groups()
COMMANDS = (
    "preset/load",
    "preset/save",
    "get",
    "describe",
    "status",
    "subscribe",
    "unsubscribe",
)


def address_table() -> list[tuple[str, str, str, str]]:
    """(address, argument types, unit, range) for every OSC address; the README's table."""
    rows = []
    for spec in PARAMS:
        if spec.size > 1:
            types, rng = "s | f | 6-7 f", f"material name or {spec.min:g}..{spec.max:g} per band"
        elif spec.choices:
            types, rng = "s", " \\| ".join(spec.choices)
        elif spec.relative_to_size:
            types, rng = "f", f"{spec.min:g}..room size"
        else:
            types, rng = "f", f"{spec.min:g}..{spec.max:g}"
        for group, names in GROUPS.items():
            if names[0] == spec.name:
                rows.append((PREFIX + group, "fff", spec.unit, "x, y, z as below"))
        rows.append((PREFIX + spec.name, types, spec.unit, rng))
    rows += [
        (PREFIX + NORM + r[0][len(PREFIX) :], r[1].replace("s | ", ""), "", "0..1") for r in rows
    ]
    return rows


def _number(arg: Any, where: str) -> float:
    """int, float and bool are interchangeable; anything else (or NaN/inf) is bad input."""
    if isinstance(arg, bool | int | float):
        value = float(arg)
        if math.isfinite(value):
            return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
        raise BadInput(f"{where}: {arg!r} is not a finite number")
    raise BadInput(f"{where}: expected a number, got {type(arg).__name__} {arg!r}")


def _clamp(value: float, lo: float, hi: float) -> float:
    return min(max(value, lo), hi)


# ---- the controller ------------------------------------------------------------------------


@dataclass
class _Txn:
    """One packet being applied: the working room and what to send after committing."""

    room: Room
    sender: Address
    touched: list[str] = field(default_factory=list)
    replies: list[Callable[[], list[Reply]]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class OscController:
    """The room as OSC sets it. Only the OSC thread calls `handle_packet`; others may read `room`.

    Args:
        room: the starting room.
        on_room: called with ``(room, received_s)`` when the geometry or materials change
            (e.g. `rtverb.live.worker.RoomWorker.submit`).
        on_mix: called with the room when wet/dry/predelay change (e.g. ``engine.set_mix``).
        status: returns the figures ``/rtverb/status`` reports (load, xruns, latency …).
        clock: seconds, for subscription lifetimes (tests pass their own).
        channels: the audio's channels: a room whose microphone pair needs more (a pair in a
            mono session) is refused.
    """

    def __init__(
        self,
        room: Room,
        *,
        on_room: Callable[[Room, float], None] | None = None,
        on_mix: Callable[[Room], None] | None = None,
        status: Callable[[], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        channels: int = 2,
    ) -> None:
        self.room = room
        self.channels = channels
        self._domain_warnings = room.domain_warnings()
        self._on_room = on_room
        self._on_mix = on_mix
        self._status = status
        self._clock = clock
        #: destination -> when its subscription expires (`clock` seconds)
        self.subscribers: dict[Address, float] = {}
        #: challenged destination -> when its challenge lapses (`clock` seconds)
        self._pending: dict[Address, float] = {}
        #: the nonce of every subscribed and challenged destination
        self._nonces: dict[Address, int] = {}
        self.packets = 0
        self.errors = 0
        self.room_changes = 0
        self._handlers: dict[str, Callable[[_Txn, list[Any]], None]] = {}
        for spec in PARAMS:
            for norm in (False, True):
                key = (NORM if norm else "") + spec.name
                if spec.size > 1:
                    self._handlers[key] = self._surface_setter(spec, norm)
                elif spec.choices:
                    self._handlers[key] = self._enum_setter(spec, norm)
                else:
                    self._handlers[key] = self._scalar_setter((spec,), norm)
        for group, names in GROUPS.items():
            specs = tuple(PARAMS_BY_NAME[n] for n in names)
            self._handlers[group] = self._scalar_setter(specs, False)
            self._handlers[NORM + group] = self._scalar_setter(specs, True)
        for command in COMMANDS:
            self._handlers[command] = getattr(self, "_cmd_" + command.replace("/", "_"))

    # ---- packets -------------------------------------------------------------------------

    def handle_packet(
        self, data: bytes, sender: Address, received_s: float | None = None
    ) -> list[Reply]:
        """Apply one datagram (message or bundle) as one change; return the replies to send.

        Never raises for any input: malformed datagrams, unknown addresses and bad values give
        an ``/rtverb/error`` reply and leave the state unchanged.
        """
        received_s = time.perf_counter() if received_s is None else received_s
        self.packets += 1
        try:
            replies = self.handle_messages(parse_packet(data), sender, received_s)
        except MalformedPacket as e:
            replies = self._error(sender, f"malformed OSC packet ({len(data)} bytes): {e}")
        except Exception as e:  # a bug must not kill the server thread
            log.exception("OSC handler failed")
            replies = self._error(sender, f"internal error: {type(e).__name__}: {e}")
        return _bounded(replies, _host(sender), REPLY_FACTOR * len(data), set(self.subscribers))

    def drop_subscriber(self, dest: Address) -> None:
        """Forget a subscriber (the server calls this when its port is unreachable)."""
        if dest in self.subscribers:
            log.info("OSC: subscriber %s is unreachable; dropped", endpoint(_host(dest), dest[1]))
        self._forget(dest)

    def _forget(self, dest: Address) -> None:
        self.subscribers.pop(dest, None)
        self._pending.pop(dest, None)
        self._nonces.pop(dest, None)

    def _expire(self) -> None:
        """Forget lapsed subscriptions and challenges, with their nonces."""
        now = self._clock()
        for table in (self.subscribers, self._pending):
            for dest in [d for d, until in table.items() if until <= now]:
                del table[dest]
        live = self.subscribers.keys() | self._pending.keys()
        for dest in [d for d in self._nonces if d not in live]:
            del self._nonces[dest]

    def handle_messages(
        self, messages: Sequence[tuple[str, list[Any]]], sender: Address, received_s: float
    ) -> list[Reply]:
        """Apply already-parsed messages as one change (all or nothing)."""
        txn = _Txn(self.room, sender)
        for address, args in messages:
            try:
                self._route(address)(txn, args)
            except (BadInput, RoomError) as e:
                message = str(e)
                if not message.startswith(PREFIX):
                    message = f"{address}: {message}"
                return self._error(sender, message)
        if txn.room.channels > self.channels:
            return self._error(
                sender,
                f"{PREFIX}listener/pair: the {txn.room.pair} pair gives {txn.room.channels} "
                f"channels and the audio runs {self.channels}; keep pair mono, or restart with "
                f"--channels {txn.room.channels}",
            )
        return self._commit(txn, received_s)

    def _route(self, address: str) -> Callable[[_Txn, list[Any]], None]:
        key = address[len(PREFIX) :] if address.startswith(PREFIX) else None
        handler = self._handlers.get(key) if key is not None else None
        if handler is None:
            known = [PREFIX + k for k in self._handlers]
            hint = did_you_mean(str(address), known, most=2)
            raise BadInput(f"unknown address {address!r}.{hint} Send /rtverb/describe for the list")
        return handler

    def _commit(self, txn: _Txn, received_s: float) -> list[Reply]:
        old, new = self.room, txn.room
        changed = [n for n in _PARAM_NAMES if old.get(n) != new.get(n)]
        if new != old:
            self.room = new
            self.room_changes += 1
            if any(not PARAMS_BY_NAME[n].is_mix for n in changed) and self._on_room is not None:
                self._on_room(new, received_s)
            if any(PARAMS_BY_NAME[n].is_mix for n in changed) and self._on_mix is not None:
                self._on_mix(new)
        # in order of importance: what fits the sender's reply budget goes first
        out = [r for make in txn.replies for r in make()]
        dests = self._feedback_dests(txn.sender)
        notes = list(txn.warnings)
        if any(not PARAMS_BY_NAME[n].is_mix for n in changed):
            before, self._domain_warnings = self._domain_warnings, new.domain_warnings()
            notes += [w for w in self._domain_warnings if w not in before]
        for note in notes:
            log.info("OSC: %s", note)
            out += [Reply(d, "/rtverb/warning", (note,)) for d in dests]
        echo = list(dict.fromkeys([*txn.touched, *changed]))
        feedback = [r for name in echo for r in self._value_replies(name)]
        return out + [Reply(d, r.address, r.args) for d in dests for r in feedback]

    def _error(self, sender: Address, message: str) -> list[Reply]:
        message = message.rstrip(". ")
        self.errors += 1
        log.warning("OSC from %s: %s; state unchanged", _host(sender), message)
        text = f"{message}; state unchanged"
        return [Reply(d, "/rtverb/error", (text,)) for d in self._feedback_dests(sender)]

    def _feedback_dests(self, sender: Address) -> list[Address]:
        """The sender, then every subscriber whose subscription has not expired."""
        self._expire()
        return list(dict.fromkeys([sender, *self.subscribers]))

    def _value_replies(self, name: str) -> list[Reply]:
        """The messages that report one parameter: absolute and its 0..1 twin."""
        room = self.room
        spec = PARAMS_BY_NAME[name]
        value = room.get(name)
        if spec.size > 1:
            stored = value if isinstance(value, tuple) else (value,)
            absolute = tuple(v if isinstance(v, str) else float(v) for v in stored)
            fader = tuple(_to_fader(spec, float(c), room) for c in material_absorption(value))
        elif spec.choices:
            absolute = (str(value),)
            fader = (spec.to_fader(spec.choices.index(str(value))),)
        else:
            absolute = (float(value),)  # type: ignore[arg-type]
            fader = (_to_fader(spec, float(value), room),)  # type: ignore[arg-type]
        return [
            Reply((), PREFIX + name, absolute),
            Reply((), PREFIX + NORM + name, fader),
        ]

    # ---- setters -------------------------------------------------------------------------

    def _scalar_setter(
        self, specs: tuple[ParamSpec, ...], norm: bool
    ) -> Callable[[_Txn, list[Any]], None]:
        def handler(txn: _Txn, args: list[Any]) -> None:
            group = specs[0].name.rpartition("/")[0] if len(specs) > 1 else specs[0].name
            where = PREFIX + (NORM if norm else "") + group
            if len(args) != len(specs):
                kind = "0..1" if norm else f"{specs[0].unit or 'unitless'}"
                raise BadInput(
                    f"{where}: expected {len(specs)} number{'s' * (len(specs) > 1)} ({kind}), "
                    f"got {len(args)} argument{'s' * (len(args) != 1)} {args!r}"
                )
            if args == [None] and specs[0].field in PAIR_DEFAULTED:
                self._set(txn, {specs[0].name: None})  # nil: back to the pair's own
                return
            values = [_number(a, where) for a in args]
            updates: dict[str, Any] = {}
            for spec, v in zip(specs, values, strict=True):
                updates[spec.name] = self._in_range(txn, spec, v, norm, where)
            self._set(txn, updates)

        return handler

    def _in_range(self, txn: _Txn, spec: ParamSpec, v: float, norm: bool, where: str) -> float:
        """``v`` in the parameter's unit, or BadInput if it is outside the parameter's range.

        Positions may be anywhere in the room (0..size on their axis); one on a wall is moved
        `POSITION_MARGIN_M` inside, a listener's so far that its pair's capsules are (the echo
        shows where it went).
        """
        if norm and not 0.0 <= v <= 1.0:
            raise BadInput(f"{where}: {v:g} is outside 0..1; send a value from 0 to 1")
        if spec.relative_to_size:
            axis = AXES.index(spec.name[-1])
            size = txn.room.size_m[axis]
            v = v * size if norm else v
            if not 0.0 <= v <= size:
                raise BadInput(
                    f"{where}: {v:g} m is outside the room (0..{size:g} m on this axis); "
                    "send a position inside it"
                )
            # a spread source's line turns as it moves: its points are left to Room's check
            listener = spec.name.startswith("listener/")
            reach = _reach_m(txn.room, {})["listener"][axis] if listener else 0.0
            return _clamp(v, POSITION_MARGIN_M + reach, size - POSITION_MARGIN_M - reach)
        v = spec.from_fader(v) if norm else v
        if not spec.min <= v <= spec.max:
            raise BadInput(
                f"{where}: {v:g}{' ' + spec.unit if spec.unit else ''} is outside "
                f"{spec.min:g}..{spec.max:g}; "
                "send a value in range (/rtverb/describe lists every range)"
            )
        return v

    def _enum_setter(self, spec: ParamSpec, norm: bool) -> Callable[[_Txn, list[Any]], None]:
        def handler(txn: _Txn, args: list[Any]) -> None:
            where = PREFIX + (NORM if norm else "") + spec.name
            if norm:
                position = _number(args[0], where) if len(args) == 1 else math.nan
                if not 0.0 <= position <= 1.0:
                    raise BadInput(f"{where}: expected one number 0..1, got {args!r}")
                self._set(
                    txn, self._choice(txn, spec, spec.choices[round(spec.from_fader(position))])
                )
                return
            if len(args) != 1 or not isinstance(args[0], str):
                raise BadInput(
                    f"{where}: expected one name ({', '.join(spec.choices)}), got {args!r}"
                )
            if args[0] not in spec.choices:
                raise BadInput(
                    f"{where}: unknown {spec.field} {args[0]!r}; send one of "
                    f"{', '.join(spec.choices)}"
                )
            self._set(txn, self._choice(txn, spec, args[0]))

        return handler

    def _choice(self, txn: _Txn, spec: ParamSpec, choice: str) -> dict[str, Any]:
        """The updates for an enum's new value: a new pair brings its own spacing and angle
        back, unless the same packet sets them."""
        updates: dict[str, Any] = {spec.name: choice}
        if spec.name == "listener/pair" and choice != txn.room.pair:
            updates |= {n: None for n in _PAIR_DEFAULTED_NAMES if n not in txn.touched}
        return updates

    def _surface_setter(self, spec: ParamSpec, norm: bool) -> Callable[[_Txn, list[Any]], None]:
        def handler(txn: _Txn, args: list[Any]) -> None:
            where = PREFIX + (NORM if norm else "") + spec.name
            if len(args) == 1 and isinstance(args[0], str) and not norm:
                material_absorption(args[0], where)  # raises RoomError with close matches
                self._set(txn, {spec.name: args[0]})
                return
            if len(args) not in (1, len(BANDS_HZ) - 1, len(BANDS_HZ)):
                raise BadInput(
                    f"{where}: expected a material name, 1 coefficient or 6-7 band coefficients "
                    f"({', '.join(f'{b:g}' for b in BANDS_HZ)} Hz), got {len(args)} arguments"
                )
            coeffs = [self._in_range(txn, spec, _number(a, where), norm, where) for a in args]
            self._set(txn, {spec.name: coeffs[0] if len(coeffs) == 1 else tuple(coeffs)})

        return handler

    def _set(self, txn: _Txn, updates: dict[str, Any]) -> None:
        """Apply updates to the working room; positions follow a room that shrinks (a pair's
        capsules and a spread source's points stay inside it too)."""
        room = txn.room
        size = list(room.size_m)
        for axis_i, axis in enumerate(AXES):
            size[axis_i] = updates.get(f"room/size/{axis}", size[axis_i])
        reach = _reach_m(room, updates)
        for who in ("source", "listener"):
            for axis_i, axis in enumerate(AXES):
                name = f"{who}/position/{axis}"
                v = updates.get(name, room.get(name))
                hi = size[axis_i] - POSITION_MARGIN_M
                if f"room/size/{axis}" in updates:
                    hi -= reach[who][axis_i]
                if v > hi:  # a pair or spread wider than the room: its own check names it
                    updates[name] = max(hi, POSITION_MARGIN_M)
        txn.room = room.with_values(updates)
        txn.touched += [n for n in updates if n not in txn.touched]

    # ---- commands ------------------------------------------------------------------------

    def _one_string(self, command: str, args: list[Any], what: str) -> str:
        if len(args) != 1 or not isinstance(args[0], str) or not args[0]:
            raise BadInput(f"{PREFIX}{command}: expected one string ({what}), got {args!r}")
        return str(args[0])

    def _one_port(self, command: str, args: list[Any]) -> int:
        port = _number(args[0], PREFIX + command) if len(args) == 1 else -1.0
        if not (port.is_integer() and 1 <= port <= 65535):
            raise BadInput(f"{PREFIX}{command}: expected one port number 1..65535, got {args!r}")
        return int(port)

    def _cmd_preset_load(self, txn: _Txn, args: list[Any]) -> None:
        name = self._one_string("preset/load", args, "a preset name")
        txn.room = load_named_preset(name)  # RoomError lists the presets
        txn.touched += [n for n in _PARAM_NAMES if n not in txn.touched]
        txn.replies.append(
            lambda: [Reply(txn.sender, "/rtverb/preset/loaded", (name, self.room.name))]
        )

    def _cmd_preset_save(self, txn: _Txn, args: list[Any]) -> None:
        name = self._one_string("preset/save", args, "a preset name")

        def save() -> list[Reply]:
            try:
                path = save_preset(self.room, name)
            except RoomError as e:
                return self._error(txn.sender, f"/rtverb/preset/save: {e}")
            return [Reply(txn.sender, "/rtverb/preset/saved", (name, str(path)))]

        txn.replies.append(save)

    def _cmd_get(self, txn: _Txn, args: list[Any]) -> None:
        name = self._one_string("get", args, "a parameter name such as room/size/x")
        key = name[len(PREFIX) :] if name.startswith(PREFIX) else name.lstrip("/")
        norm = key.startswith(NORM)
        base = key[len(NORM) :] if norm else key
        if base in GROUPS:
            names = GROUPS[base]
        elif base in PARAMS_BY_NAME:
            names = (base,)
        else:
            hint = did_you_mean(base, [*PARAMS_BY_NAME, *GROUPS], most=2)
            raise BadInput(f"/rtverb/get: unknown parameter {name!r}.{hint}")

        def reply() -> list[Reply]:
            parts = [self._value_replies(n)[1 if norm else 0] for n in names]
            address = PREFIX + key
            return [Reply(txn.sender, address, tuple(a for p in parts for a in p.args))]

        txn.replies.append(reply)

    def _page(self, command: str, args: list[Any], count: int) -> int | None:
        """The item a paged command asks for: None without an argument, else 0..count-1."""
        if not args:
            return None
        index = _number(args[0], PREFIX + command) if len(args) == 1 else -1.0
        if not (index.is_integer() and 0 <= index < count):
            raise BadInput(
                f"{PREFIX}{command}: expected no argument (the count) or one item number "
                f"0..{count - 1}, got {args!r}"
            )
        return int(index)

    def _cmd_describe(self, txn: _Txn, args: list[Any]) -> None:
        index = self._page("describe", args, len(PARAMS))

        def reply() -> list[Reply]:
            if index is None:
                return [Reply(txn.sender, "/rtverb/describe/count", (len(PARAMS),))]
            s = PARAMS[index]
            fields = (s.name, s.unit, s.min, s.max, s.default, s.domain_min, s.domain_max)
            return [Reply(txn.sender, "/rtverb/describe/param", (*fields, s.size, s.doc))]

        txn.replies.append(reply)

    def _status_figures(self) -> dict[str, Any]:
        figures = dict(self._status()) if self._status is not None else {}
        figures.update(room_changes=self.room_changes, osc_errors=self.errors)
        return figures

    def _cmd_status(self, txn: _Txn, args: list[Any]) -> None:
        index = self._page("status", args, len(self._status_figures()))

        def reply() -> list[Reply]:
            figures = self._status_figures()
            if index is None:
                return [Reply(txn.sender, "/rtverb/status/count", (len(figures),))]
            key, value = list(figures.items())[index]
            return [Reply(txn.sender, f"/rtverb/status/{key}", (value,))]

        txn.replies.append(reply)

    def _cmd_subscribe(self, txn: _Txn, args: list[Any]) -> None:
        """``i``: challenge the port; ``ii``: the port and the challenge's nonce subscribe or
        renew. Nothing changes before the packet commits."""
        if len(args) not in (1, 2):
            raise BadInput(
                "/rtverb/subscribe: expected a port (i), then the port and the nonce that "
                f"/rtverb/confirm brought to it (ii), got {args!r}"
            )
        dest = (_host(txn.sender), self._one_port("subscribe", args[:1]))
        self._expire()
        if dest not in self.subscribers and len(self.subscribers) >= MAX_SUBSCRIBERS:
            raise BadInput(_full_message())
        if len(args) == 1:
            txn.replies.append(lambda: [self._challenge(dest)])
            return
        nonce = args[1]
        if type(nonce) is not int or self._nonces.get(dest) != nonce:
            raise BadInput(
                f"/rtverb/subscribe: {nonce!r} is not the nonce of port {dest[1]}; send "
                "/rtverb/subscribe i and answer with the nonce /rtverb/confirm brings to "
                f"that port within {CONFIRM_S:g} s"
            )

        def reply() -> list[Reply]:
            if dest not in self.subscribers and len(self.subscribers) >= MAX_SUBSCRIBERS:
                # checked again here: a bundle's earlier messages may have filled the slots
                return self._error(txn.sender, _full_message())
            self._pending.pop(dest, None)
            self._nonces[dest] = nonce
            self.subscribers[dest] = self._clock() + SUBSCRIPTION_S
            return [Reply(dest, "/rtverb/subscribed", (dest[1], SUBSCRIPTION_S))]

        txn.replies.append(reply)

    def _challenge(self, dest: Address) -> Reply:
        """``/rtverb/confirm ii`` (port, nonce) to ``dest``: its nonce, a new one if it has
        none; an unsubscribed destination waits `CONFIRM_S` for the answer."""
        if dest not in self._nonces:
            if len(self._pending) >= MAX_PENDING:
                self._forget(next(iter(self._pending)))
            self._nonces[dest] = secrets.randbelow(NONCE_BOUND)
        if dest not in self.subscribers:
            self._pending[dest] = self._clock() + CONFIRM_S
        return Reply(dest, "/rtverb/confirm", (dest[1], self._nonces[dest]))

    def _cmd_unsubscribe(self, txn: _Txn, args: list[Any]) -> None:
        dest = (_host(txn.sender), self._one_port("unsubscribe", args))

        def reply() -> list[Reply]:
            self._forget(dest)
            return [Reply(txn.sender, "/rtverb/unsubscribed", (dest[1],))]

        txn.replies.append(reply)


def _full_message() -> str:
    return (
        f"/rtverb/subscribe: {MAX_SUBSCRIBERS} clients already subscribed; "
        f"a subscription lapses {SUBSCRIPTION_S:g} s after its last renewal"
    )


_PARAM_NAMES: tuple[str, ...] = tuple(s.name for s in PARAMS)
_PAIR_DEFAULTED_NAMES = tuple(s.name for s in PARAMS if s.field in PAIR_DEFAULTED)


def _reach_m(room: Room, updates: dict[str, Any]) -> dict[str, tuple[float, ...]]:
    """How far the capsules and the spread source's points reach from the listener and the
    source position, per axis, for ``room`` with ``updates`` (names to values)."""

    def value(name: str) -> Any:
        return updates.get(name, room.get(name))

    pair = value("listener/pair")
    spacing = updates.get("listener/spacing_m", room.spacing_m)
    angle = updates.get("listener/angle_deg", room.angle_deg)
    origin = (0.0, 0.0, 0.0)
    capsules = mics.capsules(
        origin,
        pair,
        mics.PAIRS[pair].spacing_m if spacing is None else spacing,
        value("listener/azimuth_deg"),
        mics.PAIRS[pair].angle_deg if angle is None else angle,
    )
    # the spread's line turns as the listener moves: half the spread on either horizontal axis
    half = 0.5 * value("source/spread_m") if pair != "mono" else 0.0
    return {
        "listener": tuple(np.max(np.abs([c.position_m for c in capsules]), axis=0)),
        "source": (half, half, 0.0),
    }


def _host(address: Address) -> str:
    return str(address[0]) if address else "?"


def endpoint(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets (``[::]:9000``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bounded(
    replies: list[Reply], host: str, budget_bytes: int, subscribed: set[Address]
) -> list[Reply]:
    """The replies to ``host`` that fit in ``budget_bytes``; replies to other hosts untouched.

    The host's ``subscribed`` ports (where its controllers listen) are served before the
    sender's own port, each destination's replies in order. The first copy of an error is
    shortened if it must be; later copies go whole or not at all, never as a stub.
    """
    mine = sorted(
        (r for r in replies if _host(r.dest) == host), key=lambda r: r.dest not in subscribed
    )
    out = [r for r in replies if _host(r.dest) != host]
    error_sent = False
    for reply in mine:
        size = len(reply.dgram())
        if size > budget_bytes and reply.address == "/rtverb/error" and not error_sent:
            text = str(reply.args[0]).encode()
            keep = max(budget_bytes - (size - len(text)) - 4, 0)  # 4: the string's padding
            reply = Reply(reply.dest, reply.address, (text[:keep].decode(errors="ignore"),))
            size = len(reply.dgram())
        if size <= budget_bytes:
            budget_bytes -= size
            error_sent |= reply.address == "/rtverb/error"
            out.append(reply)
    return out


def _to_fader(spec: ParamSpec, value: float, room: Room) -> float:
    """A value's fader position in 0..1 (the inverse of the ``/rtverb/norm/`` mapping)."""
    if spec.relative_to_size:
        return value / room.size_m[AXES.index(spec.name[-1])]
    return spec.to_fader(value)
