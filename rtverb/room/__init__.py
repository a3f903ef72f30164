"""Stage 1, the room: the parameter table (`params`), the room schema (`room`), materials and
presets (`presets`). Everything below reads a `Room`; nothing here knows about sound."""

from rtverb.room.room import Room, RoomError, Surfaces

__all__ = ["Room", "RoomError", "Surfaces"]
