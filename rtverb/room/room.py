"""`Room`: the one room schema shared by room files, presets, OSC and the model.

A room file is TOML::

    name = "Studio live room"
    description = "optional"
    [room]
    size_m = [7.5, 5.8, 3.2]
    scattering = 0.1
    [room.surfaces]          # a material name, one coefficient, or 6-7 octave-band coefficients
    floor = "carpet_cotton"
    ceiling = 0.3
    east = [0.10, 0.12, 0.15, 0.20, 0.25, 0.30]
    west = "brickwork"
    north = "hard_surface"
    south = "curtains_densely_woven"
    [source]
    position_m = [2.0, 3.0, 1.5]
    spread_m = 0.0           # optional: a stereo source this wide (two point sources)
    [listener]
    position_m = [5.0, 2.5, 1.2]
    pair = "ortf"            # optional: mono (default), ab, ortf, xy, blumlein
    spacing_m = 0.17         # optional: the pair's own by default
    azimuth_deg = 0.0        # optional: where the pair faces; 0 = +x (east), 90 = +y (north)
    angle_deg = 55.0         # optional: each capsule's turn off the axis; the pair's by default
    [mix]                    # optional
    wet_db = -6.0
    dry_db = 0.0
    predelay_ms = 0.0
    width = 1.0              # stereo width of the wet signal (0: mono)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import stat
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from rtverb.files import OutputError, atomic_output
from rtverb.room import mics
from rtverb.room.hints import did_you_mean
from rtverb.room.mics import PAIRS, Capsule
from rtverb.room.params import (
    AXES,
    BANDS_HZ,
    DOMAIN_CLEARANCE_M,
    DOMAIN_RT60_BANDS_HZ,
    DOMAIN_RT60_S,
    PARAMS,
    PARAMS_BY_NAME,
    SURFACES,
    ParamSpec,
    axis_defaults,
)

#: A surface material: a database name, one coefficient for all bands, or 6-7 band coefficients.
Material = str | float | tuple[float, ...]

#: Speed of sound used by the simulator (pyroomacoustics' default at 20 C), m/s.
SPEED_OF_SOUND_M_S = 343.0
#: Closest a listener (every capsule of one) may be to the source, m: at 0 the IR is NaN, and
#: the direct sound's 1/distance gain is already +20 dB over 1 m at 0.1 m (inside a head).
MIN_SOURCE_DISTANCE_M = 0.1
#: Largest room file read, bytes (the presets are ~600 bytes).
MAX_ROOM_FILE_BYTES = 64 * 1024


#: Capsules and spread sources keep this far from every surface, m.
MIC_CLEARANCE_M = 0.01
#: A point computed in float arithmetic exactly `MIC_CLEARANCE_M` inside may land this much
#: short of it (12 - 0.01 leaves 0.00999...98 m): still inside, m.
CLEARANCE_ROUNDING_M = 1e-9
#: Scalar fields that may be None: the listener's pair then decides.
PAIR_DEFAULTED = ("spacing_m", "angle_deg")

#: Mean absorption is kept this far inside (0, 1): Eyring's log(1 - a) stays finite.
MEAN_ABSORPTION_MARGIN = 1e-6


def mean_absorption(areas_m2: np.ndarray, absorption: np.ndarray) -> np.ndarray:
    """Area-weighted absorption per band, clipped `MEAN_ABSORPTION_MARGIN` inside (0, 1).

    ``areas_m2`` (surfaces,), ``absorption`` (surfaces, bands) -> (bands,).
    """
    margin = MEAN_ABSORPTION_MARGIN
    return np.clip((areas_m2 @ absorption) / areas_m2.sum(), margin, 1 - margin)


def sabine_rt60_s(
    volume_m3: float,
    surface_m2: float,
    mean_absorption: np.ndarray,
    air_per_m: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Sabine's reverberation time, 0.161 V / (S a + 4 m V), per band, seconds.

    ``air_per_m``: air absorption m per band, 1/m on energy (0: none).
    """
    return 0.161 * volume_m3 / (surface_m2 * mean_absorption + 4 * air_per_m * volume_m3)


def eyring_rt60_s(
    volume_m3: float,
    surface_m2: float,
    mean_absorption: np.ndarray,
    air_per_m: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Eyring's reverberation time, 0.161 V / (-S ln(1 - a) + 4 m V), per band, seconds.

    Sabine's for small ``mean_absorption``; ``air_per_m`` as in `sabine_rt60_s`.
    """
    area_m2 = -surface_m2 * np.log1p(-mean_absorption)  # Eyring's absorption area
    return 0.161 * volume_m3 / (area_m2 + 4 * air_per_m * volume_m3)


class RoomError(ValueError):
    """A room description is invalid; the message names the field and the fix."""


@cache
def materials_db() -> dict[str, dict[str, Any]]:
    """Absorption materials by name (pyroomacoustics' database, 7 octave bands 125-8000 Hz)."""
    path = Path(__file__).parent / "materials.json"
    return dict(json.loads(path.read_text())["materials"])


def material_absorption(material: Material, where: str = "material") -> np.ndarray:
    """Resolve a material to its 7 octave-band absorption coefficients (125-8000 Hz).

    Raises:
        RoomError: unknown name (with close matches), coefficients outside (0, 1], wrong count.
    """
    if isinstance(material, str):
        db = materials_db()
        if material not in db:
            hint = did_you_mean(material, db, most=4)
            raise RoomError(
                f"{where}: unknown material {material!r}.{hint} Use a name from "
                "`rtverb.room.room.materials_db()`, one absorption coefficient, or 6-7 band "
                "coefficients."
            )
        return np.array(db[material]["coeffs"], dtype=np.float64)
    if isinstance(material, bool) or not isinstance(material, int | float | Sequence):
        raise RoomError(
            f"{where}: expected a material name or absorption coefficients, got {material!r}"
        )
    values = [material] if isinstance(material, int | float) else list(material)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise RoomError(f"{where}: absorption coefficients must be numbers, got {material!r}")
    if len(values) not in (1, len(BANDS_HZ) - 1, len(BANDS_HZ)):
        raise RoomError(
            f"{where}: give 1, 6 or 7 absorption coefficients (bands "
            f"{', '.join(str(int(b)) for b in BANDS_HZ)} Hz), got {len(values)}"
        )
    try:
        coeffs = np.array(values, dtype=np.float64)
    except OverflowError:  # an integer beyond float range
        coeffs = np.full(len(values), np.inf)
    if not np.all(np.isfinite(coeffs)) or np.any(coeffs <= 0) or np.any(coeffs > 1):
        raise RoomError(
            f"{where}: absorption coefficients must lie in (0, 1], got {values}; 0.01 is a hard "
            "wall, 1 absorbs everything"
        )
    if len(coeffs) == 1:
        return np.full(len(BANDS_HZ), coeffs[0])
    if len(coeffs) == len(BANDS_HZ) - 1:
        return np.append(coeffs, coeffs[-1])  # the 8 kHz band repeats 4 kHz, as the database does
    return coeffs


@dataclass(frozen=True)
class Surfaces:
    """The material of each of the six surfaces of a shoebox room."""

    floor: Material = "carpet_cotton"
    ceiling: Material = "ceiling_plasterboard"
    east: Material = "plasterboard"
    west: Material = "plasterboard"
    north: Material = "hard_surface"
    south: Material = "hard_surface"

    def __getitem__(self, surface: str) -> Material:
        if surface not in SURFACES:
            raise KeyError(f"unknown surface {surface!r}; surfaces are {', '.join(SURFACES)}")
        value: Material = getattr(self, surface)
        return value


def _vec3(value: Any, where: str) -> tuple[float, float, float]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 3
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        raise RoomError(f"{where}: expected three numbers [x, y, z] in metres, got {value!r}")
    try:
        x, y, z = (float(v) for v in value)
    except OverflowError:  # an integer beyond float range
        x = y = z = math.inf
    if not all(math.isfinite(v) for v in (x, y, z)):
        raise RoomError(f"{where}: values must be finite, got {value!r}")
    return (x, y, z)


@dataclass(frozen=True)
class Room:
    """A shoebox room with one source and one listener, and the reverb's mix settings.

    Build one in code, from a TOML file (`Room.from_toml`) or from a dict (`Room.from_dict`);
    every constructor validates. Positions are metres from the west/south/floor corner. The
    defaults are the parameter table's (the surfaces' are named materials).
    """

    size_m: tuple[float, float, float] = axis_defaults("size_m")
    surfaces: Surfaces = field(default_factory=Surfaces)
    source_position_m: tuple[float, float, float] = axis_defaults("source_position_m")
    listener_position_m: tuple[float, float, float] = axis_defaults("listener_position_m")
    scattering: float = PARAMS_BY_NAME["room/scattering"].default
    wet_db: float = PARAMS_BY_NAME["mix/wet_db"].default
    dry_db: float = PARAMS_BY_NAME["mix/dry_db"].default
    predelay_ms: float = PARAMS_BY_NAME["mix/predelay_ms"].default
    pair: str = PARAMS_BY_NAME["listener/pair"].choices[0]
    spacing_m: float | None = None  # None: the pair's own
    azimuth_deg: float = PARAMS_BY_NAME["listener/azimuth_deg"].default
    angle_deg: float | None = None  # None: the pair's own
    spread_m: float = PARAMS_BY_NAME["source/spread_m"].default
    width: float = PARAMS_BY_NAME["mix/width"].default
    name: str = "Untitled room"
    description: str = ""

    def __post_init__(self) -> None:
        size = _vec3(self.size_m, "room.size_m")
        if any(v <= 0 for v in size):
            raise RoomError(f"room.size_m: sizes must be positive, got {list(self.size_m)}")
        for axis, v in zip(AXES, size, strict=True):
            spec = PARAMS_BY_NAME[f"room/size/{axis}"]
            if not spec.min <= v <= spec.max:
                raise RoomError(f"room.size_m: {axis} = {v} m is outside {spec.min}-{spec.max} m")
        object.__setattr__(self, "size_m", size)
        for who in ("source", "listener"):
            pos = _vec3(getattr(self, f"{who}_position_m"), f"{who}.position_m")
            for axis, v, limit in zip(AXES, pos, size, strict=True):
                if not 0 < v < limit:
                    raise RoomError(
                        f"{who}.position_m: {axis} = {v} m is outside the room (0-{limit} m); "
                        "positions are metres from the west/south/floor corner"
                    )
            object.__setattr__(self, f"{who}_position_m", pos)
        if self.distance_m < MIN_SOURCE_DISTANCE_M:
            raise RoomError(
                f"source and listener are {self.distance_m:.3g} m apart; keep them at least "
                f"{MIN_SOURCE_DISTANCE_M} m apart (the direct sound grows as 1/distance)"
            )
        for surface in SURFACES:
            material_absorption(self.surfaces[surface], f"room.surfaces.{surface}")
        for spec in PARAMS:
            value, where = getattr(self, spec.field), spec.name.replace("/", ".")
            if spec.item is not None or (value is None and spec.field in PAIR_DEFAULTED):
                continue
            if spec.choices:
                if not isinstance(value, str) or value not in spec.choices:
                    raise RoomError(
                        f"{where}: unknown {spec.field} {value!r}; choose one of "
                        f"{', '.join(spec.choices)}"
                    )
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RoomError(f"{where}: expected a number, got {value!r}")
            if not spec.min <= value <= spec.max:  # also refuses NaN and huge integers
                raise RoomError(
                    f"{where}: {value} is outside {spec.min}..{spec.max}"
                    f"{' ' + spec.unit if spec.unit else ''}"
                )
            object.__setattr__(self, spec.field, float(value))
        for key in ("name", "description"):
            if not isinstance(getattr(self, key), str):
                raise RoomError(f"{key}: expected a string in quotes, got {getattr(self, key)!r}")
        if self.pair != "mono":  # a mono listener is its position, checked above
            for side, capsule in zip(("left", "right"), self.capsules(), strict=True):
                self._check_inside(capsule.position_m, "listener.spacing_m", f"the {side} capsule")
            if self.true_stereo:
                for side, source in zip(("left", "right"), self.sources(), strict=True):
                    self._check_inside(source, "source.spread_m", f"the {side} source")
            for source in self.sources():
                for side, capsule in zip(("left", "right"), self.capsules(), strict=True):
                    gap = math.dist(source, capsule.position_m)
                    if gap < MIN_SOURCE_DISTANCE_M:
                        raise RoomError(
                            f"the {side} capsule is {gap:.3g} m from a source; keep every capsule "
                            f"at least {MIN_SOURCE_DISTANCE_M} m from the source (move them apart "
                            "or narrow listener.spacing_m / source.spread_m)"
                        )

    def _check_inside(self, point: tuple[float, float, float], where: str, what: str) -> None:
        """A capsule or spread source at least `MIC_CLEARANCE_M` inside every surface."""
        names = (("west", "east"), ("south", "north"), ("floor", "ceiling"))
        gap, surface = min(
            gap
            for p, size, (low, high) in zip(point, self.size_m, names, strict=True)
            for gap in ((p, low), (size - p, high))
        )
        if gap < MIC_CLEARANCE_M - CLEARANCE_ROUNDING_M:
            at = ", ".join(f"{v:.3f}" for v in point)
            fix = (
                "spacing_m or move the listener"
                if "capsule" in what
                else "spread_m or move the source"
            )
            place = "outside the room" if gap <= 0 else f"{gap * 100:.1f} cm from the {surface}"
            raise RoomError(
                f"{where}: {what} at [{at}] m is {place}; it must stay {MIC_CLEARANCE_M * 100:g} "
                f"cm inside every surface: reduce {fix}"
            )

    # ---- derived acoustics -------------------------------------------------------------

    @property
    def volume_m3(self) -> float:
        x, y, z = self.size_m
        return x * y * z

    def surface_areas_m2(self) -> np.ndarray:
        """Area of each surface, in `SURFACES` order."""
        x, y, z = self.size_m
        return np.array([x * y, x * y, y * z, y * z, x * z, x * z])

    def absorption(self) -> np.ndarray:
        """Absorption coefficients, shape (6 surfaces, 7 bands), surfaces in `SURFACES` order."""
        return np.stack(
            [material_absorption(self.surfaces[s], f"room.surfaces.{s}") for s in SURFACES]
        )

    def sabine_rt60_s(self) -> np.ndarray:
        """Sabine reverberation time per octave band (no air absorption), seconds."""
        areas = self.surface_areas_m2()
        return sabine_rt60_s(self.volume_m3, areas.sum(), mean_absorption(areas, self.absorption()))

    def eyring_rt60_s(self) -> np.ndarray:
        """Eyring reverberation time per octave band (no air absorption), seconds."""
        areas = self.surface_areas_m2()
        return eyring_rt60_s(self.volume_m3, areas.sum(), mean_absorption(areas, self.absorption()))

    @property
    def distance_m(self) -> float:
        """Source-listener distance."""
        return float(np.linalg.norm(np.subtract(self.source_position_m, self.listener_position_m)))

    def domain_warnings(self) -> list[str]:
        """The model-domain bounds this room exceeds (empty inside the domain)."""
        out = []
        for axis, v in zip(AXES, self.size_m, strict=True):
            spec = PARAMS_BY_NAME[f"room/size/{axis}"]
            if not spec.domain_min <= v <= spec.domain_max:
                out.append(
                    f"room size {axis} = {v:g} m is outside the model domain "
                    f"{spec.domain_min:g}-{spec.domain_max:g} m"
                )
        rt = self.sabine_rt60_s()
        for band, t in zip(BANDS_HZ, rt, strict=True):
            if band in DOMAIN_RT60_BANDS_HZ and not DOMAIN_RT60_S[0] <= t <= DOMAIN_RT60_S[1]:
                out.append(
                    f"Sabine RT60 at {band:g} Hz = {t:.2f} s is outside the model domain "
                    f"{DOMAIN_RT60_S[0]}-{DOMAIN_RT60_S[1]} s"
                )
        spec = PARAMS_BY_NAME["room/scattering"]
        if self.scattering > spec.domain_max:
            out.append(
                f"scattering {self.scattering:g} is above the model domain's {spec.domain_max:g}"
            )
        for who in ("source", "listener"):
            pos = getattr(self, f"{who}_position_m")
            gap = min(min(pos), *(s - p for s, p in zip(self.size_m, pos, strict=True)))
            if gap < DOMAIN_CLEARANCE_M:
                out.append(
                    f"{who} is {gap:.2f} m from a surface; the model domain keeps "
                    f"{DOMAIN_CLEARANCE_M} m"
                )
        if self.distance_m < DOMAIN_CLEARANCE_M:
            out.append(
                f"source and listener are {self.distance_m:.2f} m apart; the model domain keeps "
                f"{DOMAIN_CLEARANCE_M} m"
            )
        return out

    # ---- the listener's pair and the source's spread -----------------------------------

    @property
    def channels(self) -> int:
        """Output channels of the room's IR: 1 for ``mono``, 2 for a pair."""
        return 1 if self.pair == "mono" else 2

    @property
    def true_stereo(self) -> bool:
        """Whether the IR is a 2 x 2 matrix (a pair and a spread source)."""
        return self.pair != "mono" and self.spread_m > 0

    def pair_spacing_m(self) -> float:
        """The capsules' spacing: ``spacing_m``, or the pair's own when not given."""
        return PAIRS[self.pair].spacing_m if self.spacing_m is None else self.spacing_m

    def pair_angle_deg(self) -> float:
        """Each capsule's turn off the pair's axis: ``angle_deg``, or the pair's own."""
        return PAIRS[self.pair].angle_deg if self.angle_deg is None else self.angle_deg

    def capsules(self) -> tuple[Capsule, ...]:
        """The listener's capsules, left first (see `rtverb.room.mics`)."""
        return mics.capsules(
            self.listener_position_m,
            self.pair,
            self.pair_spacing_m(),
            self.azimuth_deg,
            self.pair_angle_deg(),
        )

    def sources(self) -> tuple[tuple[float, float, float], ...]:
        """The point sources, left first: two for a spread source heard by a pair, else one
        (a mono listener ignores the spread)."""
        spread = self.spread_m if self.pair != "mono" else 0.0
        return mics.sources(self.source_position_m, self.listener_position_m, spread)

    def point_sources(self) -> list[Room]:
        """The room once per point of its source (`sources`): each a copy with the source
        there and no spread. The points were checked with this room: the copies skip
        validation (it costs a room change ~0.4 ms each)."""
        points = self.sources()
        if len(points) == 1:
            return [self]
        out = []
        for point in points:
            room = copy.copy(self)
            object.__setattr__(room, "source_position_m", point)
            object.__setattr__(room, "spread_m", 0.0)
            out.append(room)
        return out

    # ---- flat parameter access (OSC) ---------------------------------------------------

    def get(self, name: str) -> float | Material:
        """A parameter by its table name, e.g. ``room/size/x`` or ``room/surface/floor``.

        ``listener/spacing_m`` and ``listener/angle_deg`` give the pair's own when not set.
        """
        spec = _spec(name)
        value = getattr(self, spec.field)
        if spec.field == "spacing_m":
            return self.pair_spacing_m()
        if spec.field == "angle_deg":
            return self.pair_angle_deg()
        if spec.item is None:
            return value
        if isinstance(value, Surfaces):
            return value[spec.item]
        return value[AXES.index(spec.item)]

    def with_values(self, values: dict[str, Any]) -> Room:
        """A copy with parameters changed by table name; validates (raises `RoomError`)."""
        vectors: dict[str, list[float]] = {}
        surfaces: dict[str, Material] = {}
        scalars: dict[str, Any] = {}  # and the changed vectors
        for name, value in values.items():
            spec = _spec(name)
            if spec.item is None:
                scalars[spec.field] = value
            elif spec.field == "surfaces":
                surfaces[spec.item] = tuple(value) if isinstance(value, list) else value
            else:
                vector = vectors.setdefault(spec.field, list(getattr(self, spec.field)))
                vector[AXES.index(spec.item)] = value
        scalars.update((f, tuple(v)) for f, v in vectors.items())
        return dataclasses.replace(
            self, surfaces=dataclasses.replace(self.surfaces, **surfaces), **scalars
        )

    # ---- files -------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Room:
        """Build a room from the room file's structure (as `tomllib` reads it)."""
        _check_keys(data, "", {"name", "description", "room", "source", "listener", "mix"})
        room = _table(data, "room", required=True)
        _check_keys(room, "room", {"size_m", "scattering", "surfaces"})
        surfaces = _table(room, "surfaces", "room.surfaces", required=True)
        _check_keys(surfaces, "room.surfaces", set(SURFACES))
        missing = [s for s in SURFACES if s not in surfaces]
        if missing:
            raise RoomError(f"room.surfaces: missing {', '.join(missing)}; give all six surfaces")
        mix = _table(data, "mix")
        _check_keys(mix, "mix", set(_scalar_fields("mix")))
        kwargs: dict[str, Any] = dict(mix)
        for who in ("source", "listener"):
            table = _table(data, who, required=True)
            _check_keys(table, who, {"position_m", *_scalar_fields(who)})
            if "position_m" not in table:
                raise RoomError(f"{who}.position_m: missing; give [x, y, z] in metres")
            kwargs[f"{who}_position_m"] = table["position_m"]
            kwargs.update((k, v) for k, v in table.items() if k != "position_m")
        if "size_m" not in room:
            raise RoomError("room.size_m: missing; give [x, y, z] in metres")
        return cls(
            size_m=room["size_m"],
            surfaces=Surfaces(
                **{s: tuple(v) if isinstance(v, list) else v for s, v in surfaces.items()}
            ),
            scattering=room.get("scattering", PARAMS_BY_NAME["room/scattering"].default),
            name=data.get("name", "Untitled room"),
            description=data.get("description", ""),
            **kwargs,
        )

    def to_dict(self) -> dict[str, Any]:
        """The room file's structure; `Room.from_dict(room.to_dict()) == room`."""
        return {
            "name": self.name,
            "description": self.description,
            "room": {
                "size_m": list(self.size_m),
                "scattering": self.scattering,
                "surfaces": {
                    s: list(m) if isinstance(m, tuple) else m
                    for s, m in ((s, self.surfaces[s]) for s in SURFACES)
                },
            },
            **{
                who: {
                    **(
                        {}
                        if who == "mix"
                        else {"position_m": list(getattr(self, f"{who}_position_m"))}
                    ),
                    **{
                        f: getattr(self, f)
                        for f in _scalar_fields(who)
                        if getattr(self, f) is not None
                    },
                }
                for who in ("source", "listener", "mix")
            },
        }

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Room:
        """Read a room file. Errors name the file, the field and, where found, the line."""
        path = Path(path)
        text = _read_room_file(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            at = re.search(r"at line (\d+)", str(e))
            where = f"{path}:{at.group(1)}" if at else str(path)
            raise RoomError(f"{where}: not valid TOML: {e}") from None
        try:
            return cls.from_dict(data)
        except (RoomError, TypeError) as e:
            message = str(e)
            line = _find_line(text, message.split(":", 1)[0])
            where = f"{path}:{line}" if line else str(path)
            raise RoomError(f"{where}: {message}") from None

    def to_toml(self, path: str | os.PathLike[str]) -> None:
        """Write a room file atomically: complete, or absent (an existing one untouched).

        Raises:
            RoomError: a missing or read-only folder or a full disk, in one line.
        """
        text = to_toml_text(self.to_dict()).encode("utf-8")
        try:
            with atomic_output(path) as f:
                f.write(text)
        except OutputError as e:
            raise RoomError(str(e)) from None


def _scalar_fields(table: str) -> list[str]:
    """The scalar fields a room file keeps in ``[table]`` (``source``, ``listener``, ``mix``)."""
    return [p.field for p in PARAMS if p.item is None and p.name.split("/")[0] == table]


def _spec(name: str) -> ParamSpec:
    if name not in PARAMS_BY_NAME:
        raise KeyError(f"unknown parameter {name!r}; see rtverb.room.params.PARAMS")
    return PARAMS_BY_NAME[name]


def _read_room_file(path: Path) -> str:
    """A room file's text: a regular file of at most `MAX_ROOM_FILE_BYTES`, opened without
    blocking (a FIFO or a device such as /dev/zero is refused, never read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise RoomError(f"{path}: no such room file") from None
    except OSError as e:
        raise RoomError(f"{path}: cannot read the room file ({e.strerror or e})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RoomError(f"{path}: cannot read the room file: not a regular file")
        if info.st_size > MAX_ROOM_FILE_BYTES:
            raise RoomError(
                f"{path}: {info.st_size} bytes; a room file is at most {MAX_ROOM_FILE_BYTES}"
            )
        data = os.read(fd, MAX_ROOM_FILE_BYTES + 1)
    except OSError as e:
        raise RoomError(f"{path}: cannot read the room file ({e.strerror or e})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_ROOM_FILE_BYTES:
        raise RoomError(f"{path}: a room file is at most {MAX_ROOM_FILE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RoomError(f"{path}: cannot read the room file: not UTF-8 ({e})") from None


def _table(
    data: dict[str, Any], key: str, where: str = "", required: bool = False
) -> dict[str, Any]:
    where = where or key
    if key not in data:
        if required:
            raise RoomError(f"[{where}]: missing table; see the room file format in the README")
        return {}
    value = data[key]
    if not isinstance(value, dict):
        raise RoomError(f"{where}: expected a table [{where}], got {value!r}")
    return value


def _check_keys(table: dict[str, Any], where: str, allowed: set[str]) -> None:
    """Refuse keys not in ``allowed``; ``where`` is the table's path ("" at the top level)."""
    for key in table:
        if key not in allowed:
            what = f"{where}.{key}: unknown key" if where else f"{key}: unknown top-level key"
            hint = did_you_mean(key, sorted(allowed))
            raise RoomError(f"{what}.{hint} Allowed: {', '.join(sorted(allowed))}")


def _find_line(text: str, field_path: str) -> int | None:
    """Line of ``field_path`` (``listener.position_m``, ``[room.surfaces]``) in a room file.

    The key's line inside its own table; else the table's header; else the key's first line.
    """
    *tables, key = field_path.strip("[]").split(".")
    table = ".".join(tables)
    key_line = re.compile(rf"^\s*{re.escape(key)}\s*=")
    header_line = re.compile(r"^\s*\[([^\[\]]+)\]")
    current, header, first = "", None, None
    for number, line in enumerate(text.splitlines(), start=1):
        if match := header_line.match(line):
            current = re.sub(r"\s+", "", match.group(1))
            if current == field_path.strip("[]"):
                header = number
        elif key_line.match(line):
            if current == table:
                return number
            first = first or number
    return header or first


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(float(value))


def to_toml_text(data: dict[str, Any]) -> str:
    """Format a room dict as a room file (the subset of TOML room files use)."""
    lines = [f"name = {_toml_value(data['name'])}"]
    if data.get("description"):
        lines.append(f"description = {_toml_value(data['description'])}")

    def table(title: str, items: dict[str, Any]) -> None:
        lines.append(f"\n[{title}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in items.items() if not isinstance(v, dict))
        for k, v in items.items():
            if isinstance(v, dict):
                table(f"{title}.{k}", v)

    for key in ("room", "source", "listener", "mix"):
        table(key, data[key])
    return "\n".join(lines) + "\n"
