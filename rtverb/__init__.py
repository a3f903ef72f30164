"""rtverb: real-time neural room reverb."""

from rtverb.room import Room, RoomError, Surfaces

__all__ = ["Room", "RoomError", "Surfaces"]
__version__ = "0.1.0"
