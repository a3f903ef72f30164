"""Strict OSC 1.0 framing: a datagram's bytes must hold exactly what they declare.

python-osc's parser pads a datagram that ends early with zeros (``/x ,f`` with no value bytes
parses as 0.0) and ignores trailing bytes; `parse_packet` refuses both. It decodes a message or a
bundle (nested up to `MAX_BUNDLE_DEPTH`) into ``(address, args)`` pairs, or raises
`MalformedPacket` naming the first byte that does not fit.

Argument types: ``i`` int32, ``h`` int64, ``f`` float32, ``d`` float64, ``s`` string,
``b`` blob, ``T``/``F`` booleans, ``N`` nil. Others (time tags, MIDI, colours, arrays) are
refused by name: no rtverb address takes them.
"""

from __future__ import annotations

import struct
from typing import Any

#: Bundles inside bundles, at most: parsing deep nesting holds the interpreter lock for long
#: (300 such datagrams a second added xruns when the server shared the callback's process).
MAX_BUNDLE_DEPTH = 4
#: Largest UDP payload over IPv4; the server reads datagrams up to this size.
MAX_DATAGRAM_BYTES = 65507

_BUNDLE_TAG = b"#bundle\x00"
_FIXED = {"i": (">i", 4), "h": (">q", 8), "f": (">f", 4), "d": (">d", 8)}
_CONSTANTS = {"T": True, "F": False, "N": None}

Message = tuple[str, list[Any]]


class MalformedPacket(ValueError):
    """A datagram that is not a well-formed OSC message or bundle; the text says where."""


def _string(data: bytes, pos: int, end: int, what: str) -> tuple[str, int]:
    """A NUL-terminated string padded with NULs to a multiple of 4 bytes."""
    nul = data.find(b"\x00", pos, end)
    if nul < 0:
        raise MalformedPacket(f"{what} at byte {pos} has no terminating NUL before byte {end}")
    stop = (nul + 4) & ~3
    if stop > end:
        raise MalformedPacket(f"{what} at byte {pos}: its padding runs past byte {end}")
    if data[nul:stop].strip(b"\x00"):
        raise MalformedPacket(f"{what} at byte {pos}: non-zero padding bytes")
    try:
        return data[pos:nul].decode("utf-8"), stop
    except UnicodeDecodeError:
        raise MalformedPacket(f"{what} at byte {pos} is not UTF-8") from None


def _message(data: bytes, pos: int, end: int) -> Message:
    address, pos = _string(data, pos, end, "address")
    if not address.startswith("/"):
        raise MalformedPacket(f"address {address!r} does not start with '/'")
    if pos >= end:
        raise MalformedPacket(f"{address}: no type tag string")
    tags, pos = _string(data, pos, end, f"{address}: type tags")
    if not tags.startswith(","):
        raise MalformedPacket(f"{address}: the type tag string {tags!r} does not start with ','")
    args: list[Any] = []
    for tag in tags[1:]:
        if tag in _FIXED:
            fmt, size = _FIXED[tag]
            if pos + size > end:
                raise MalformedPacket(
                    f"{address}: argument {len(args) + 1} ('{tag}') needs {size} bytes, "
                    f"{end - pos} left"
                )
            args.append(struct.unpack_from(fmt, data, pos)[0])
            pos += size
        elif tag == "s":
            text, pos = _string(data, pos, end, f"{address}: argument {len(args) + 1} ('s')")
            args.append(text)
        elif tag == "b":
            if pos + 4 > end:
                raise MalformedPacket(f"{address}: blob argument {len(args) + 1} has no size")
            (size,) = struct.unpack_from(">i", data, pos)
            stop = pos + 4 + ((size + 3) & ~3)
            if size < 0 or stop > end:
                raise MalformedPacket(
                    f"{address}: blob argument {len(args) + 1} declares {size} bytes, "
                    f"{end - pos - 4} left"
                )
            args.append(data[pos + 4 : pos + 4 + size])
            pos = stop
        elif tag in _CONSTANTS:
            args.append(_CONSTANTS[tag])
        else:
            raise MalformedPacket(f"{address}: type tag {tag!r} is not supported by rtverb")
    if pos != end:
        raise MalformedPacket(f"{address}: {end - pos} bytes after the last argument")
    return address, args


def _bundle(data: bytes, pos: int, end: int, depth: int, out: list[Message]) -> None:
    if depth > MAX_BUNDLE_DEPTH:
        raise MalformedPacket(f"bundles nested deeper than {MAX_BUNDLE_DEPTH}")
    pos += len(_BUNDLE_TAG) + 8  # the time tag: rtverb applies every bundle when it arrives
    if pos > end:
        raise MalformedPacket("bundle shorter than its header (16 bytes)")
    while pos < end:
        if pos + 4 > end:
            raise MalformedPacket(f"bundle element at byte {pos}: no size")
        (size,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if size <= 0 or size % 4 or pos + size > end:
            raise MalformedPacket(
                f"bundle element at byte {pos - 4} declares {size} bytes "
                f"({end - pos} left; sizes are positive multiples of 4)"
            )
        _element(data, pos, pos + size, depth + 1, out)
        pos += size


def _element(data: bytes, pos: int, end: int, depth: int, out: list[Message]) -> None:
    if data.startswith(_BUNDLE_TAG, pos, end):
        _bundle(data, pos, end, depth, out)
        return
    out.append(_message(data, pos, end))


def parse_packet(data: bytes) -> list[Message]:
    """A datagram's messages in order (one for a message, each of a bundle's, depth first).

    Raises:
        MalformedPacket: the bytes do not hold exactly what the message or bundle declares.
    """
    if not data:
        raise MalformedPacket("empty datagram")
    if len(data) % 4:
        raise MalformedPacket(f"{len(data)} bytes is not a multiple of 4")
    if len(data) > MAX_DATAGRAM_BYTES:
        raise MalformedPacket(f"{len(data)} bytes is more than {MAX_DATAGRAM_BYTES}")
    out: list[Message] = []
    _element(bytes(data), 0, len(data), 0, out)
    return out
