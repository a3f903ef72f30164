"""Room presets: TOML room files by name (the `rtverb presets` command is `rtverb.cli.presets`).

Built-in presets live in the repository's top-level ``presets/`` folder (`PRESETS_DIR`); presets
saved by a user (``/rtverb/preset/save`` over OSC, or `save_preset`) go to `user_presets_dir`
(``$RTVERB_PRESETS_DIR``, default ``~/.config/rtverb/presets``). A built-in preset is never
overwritten. OSC reaches presets by name only (`load_named_preset`, `save_preset`): a name has
no separators and no ``..``, so nothing outside these two folders is read or written; the
command line's ``--preset`` also takes a room file path (`load_preset`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from rtverb.room.hints import did_you_mean
from rtverb.room.room import Room, RoomError

#: The built-in presets (the repository's top-level ``presets/`` folder; rtverb is installed
#: editable).
PRESETS_DIR = Path(__file__).resolve().parents[2] / "presets"

#: Longest preset name, characters.
MAX_NAME_CHARS = 64

#: The room the commands start from when none is given.
DEFAULT_PRESET = "studio_live_room"

#: A preset name: letters, digits, ``_`` and ``-`` (it becomes ``NAME.toml``).
_NAME = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_-]{{0,{MAX_NAME_CHARS - 1}}}$")


def user_presets_dir() -> Path:
    """Where user presets are saved and looked up: ``$RTVERB_PRESETS_DIR`` or
    ``~/.config/rtverb/presets``."""
    return Path(os.environ.get("RTVERB_PRESETS_DIR", "~/.config/rtverb/presets")).expanduser()


def _preset_files() -> dict[str, Path]:
    """Preset name -> file; built-in presets win over user presets of the same name."""
    found: dict[str, Path] = {}
    for folder in (user_presets_dir(), PRESETS_DIR):
        if folder.is_dir():
            found.update({p.stem: p for p in sorted(folder.glob("*.toml"))})
    return found


def list_presets() -> list[str]:
    """Names of the built-in and user presets, sorted."""
    return sorted(_preset_files())


def _looks_like_path(text: str) -> bool:
    return text.endswith(".toml") or "/" in text or os.sep in text


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        shown = repr(name) if len(repr(name)) <= MAX_NAME_CHARS + 2 else f"{repr(name)[:40]}..."
        raise RoomError(
            f"bad preset name {shown}: a name is letters, digits, '_' and '-' (at most "
            f"{MAX_NAME_CHARS}), not a path; `rtverb presets` lists them"
        )
    return name


def load_named_preset(name: str) -> Room:
    """A built-in or user preset by name; never a path (what OSC may load).

    Raises:
        RoomError: a bad name, an unknown preset (the message lists the presets), a preset file
            that is not a regular file, too large, or does not parse.
    """
    files = _preset_files()
    if _check_name(name) not in files:
        hint = did_you_mean(name, files)
        raise RoomError(f"unknown preset {name!r}.{hint} Presets: {', '.join(sorted(files))}")
    return Room.from_toml(files[name])


def load_preset(name_or_path: str) -> Room:
    """A preset by name (``"studio_live_room"``) or a room file by path (``"my/room.toml"``);
    the command line's ``--preset``.

    Raises:
        RoomError: the preset does not exist (the message lists the presets) or does not parse.
    """
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise RoomError(f"expected a preset name or a .toml path, got {name_or_path!r}")
    if _looks_like_path(name_or_path):
        return Room.from_toml(name_or_path)
    try:
        return load_named_preset(name_or_path)
    except RoomError as e:
        raise RoomError(f"{e}; or give a path to a .toml room file") from None


def save_preset(room: Room, name: str) -> Path:
    """Save ``room`` as the user preset ``name`` in `user_presets_dir` (atomic write; an
    existing user preset of that name is replaced). Names only, never paths.

    Returns:
        The file written.

    Raises:
        RoomError: a bad name, a name that would overwrite a built-in preset, or the folder
            cannot be written.
    """
    if (PRESETS_DIR / f"{_check_name(name)}.toml").exists():
        raise RoomError(f"{name!r} is a built-in preset and is read-only; save under another name")
    path = user_presets_dir() / f"{name}.toml"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        room.to_toml(path)
    except OSError as e:
        raise RoomError(f"cannot save the preset to {path}: {e.strerror or e}") from None
    return path
