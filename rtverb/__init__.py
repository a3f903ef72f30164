"""rtverb: real-time neural room reverb."""

from rtverb.dsp.convolver import Convolver
from rtverb.dsp.engine import Engine
from rtverb.room.room import Room, RoomError, Surfaces

__all__ = ["Convolver", "Engine", "Room", "RoomError", "Surfaces", "synthesize", "to_pedalboard"]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """Lazy exports: ``rtverb.to_pedalboard`` imports pedalboard (~0.2 s) on first use only."""
    if name == "synthesize":
        from rtverb.synth import synthesize

        return synthesize
    if name == "to_pedalboard":
        from rtverb.offline.pedalboard_room import to_pedalboard

        return to_pedalboard
    raise AttributeError(f"module 'rtverb' has no attribute {name!r}")
