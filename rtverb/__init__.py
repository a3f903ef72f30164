"""rtverb: real-time neural room reverb."""

from rtverb.dsp.convolver import Convolver
from rtverb.dsp.engine import Engine
from rtverb.room.room import Room, RoomError, Surfaces

__all__ = [
    "Convolver",
    "Engine",
    "Room",
    "RoomError",
    "Surfaces",
    "capture_chain",
    "capture_device",
    "capture_dry_wet",
    "match",
    "synthesize",
    "to_pedalboard",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """Lazy exports: ``to_pedalboard``, ``capture_*`` and ``match`` import pedalboard or scipy's
    optimizers (~0.2 s) on first use only."""
    if name == "synthesize":
        from rtverb.synth import synthesize

        return synthesize
    if name in ("capture_chain", "capture_device", "capture_dry_wet"):
        from rtverb import capture

        return getattr(capture, name)
    if name == "match":
        from rtverb.matching import match

        return match
    if name == "to_pedalboard":
        from rtverb.offline.pedalboard_room import to_pedalboard

        return to_pedalboard
    raise AttributeError(f"module 'rtverb' has no attribute {name!r}")
