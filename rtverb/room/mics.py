"""The listener's microphone pair and the source's spread, as geometry.

A pair sits centred on the listener position. ``azimuth_deg`` is where it faces in the
horizontal plane: 0 deg faces +x (east), 90 deg faces +y (north), counter-clockwise seen from
above. Its left capsule sits ``spacing_m / 2`` to the left of the centre (seen facing
``azimuth_deg``) and points ``angle_deg`` to the left of it; the right capsule mirrors it.

A stereo source (``spread_m > 0``) is two point sources ``spread_m`` apart, centred on the
source position, on the horizontal line perpendicular to the source-listener line; the left
one is on the listener's left when the listener faces the source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: A first-order pattern a + (1 - a) cos(theta), by its omni weight a.
PATTERNS: dict[str, float] = {"omni": 1.0, "cardioid": 0.5, "figure8": 0.0}


@dataclass(frozen=True)
class PairKind:
    """A named arrangement: the capsules' pattern and its default spacing and half-angle."""

    pattern: str
    spacing_m: float
    angle_deg: float
    doc: str


#: The arrangements ``listener/pair`` accepts; ``mono`` is one omni capsule.
PAIRS: dict[str, PairKind] = {
    "mono": PairKind("omni", 0.0, 0.0, "one omni capsule (one channel)"),
    "ab": PairKind("omni", 0.4, 0.0, "two spaced omnis"),
    "ortf": PairKind("cardioid", 0.17, 55.0, "cardioids 17 cm apart at +-55 deg"),
    "xy": PairKind("cardioid", 0.0, 45.0, "coincident cardioids at +-45 deg"),
    "blumlein": PairKind("figure8", 0.0, 45.0, "coincident figure-eights at +-45 deg"),
}

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Capsule:
    """One capsule: where it is, the unit vector it points along, its pattern's omni weight."""

    position_m: Vec3
    axis: Vec3
    omni_weight: float

    @property
    def diffuse_power(self) -> float:
        """Its diffuse-field power response relative to an omni: a^2 + (1 - a)^2 / 3."""
        a = self.omni_weight
        return a * a + (1 - a) ** 2 / 3


def capsules(
    centre_m: Vec3, pair: str, spacing_m: float, azimuth_deg: float, angle_deg: float
) -> tuple[Capsule, ...]:
    """The pair's capsules, left first (one for ``mono``, at the centre)."""
    kind = PAIRS[pair]
    a = PATTERNS[kind.pattern]
    if pair == "mono":
        return (Capsule(centre_m, (1.0, 0.0, 0.0), a),)
    az = math.radians(azimuth_deg)
    left = (-math.sin(az), math.cos(az), 0.0)  # the facing direction turned 90 deg left
    out = []
    for side in (1.0, -1.0):
        turn = az + side * math.radians(angle_deg)
        position = tuple(
            c + side * 0.5 * spacing_m * v for c, v in zip(centre_m, left, strict=True)
        )
        out.append(Capsule(position, (math.cos(turn), math.sin(turn), 0.0), a))  # type: ignore[arg-type]
    return tuple(out)


def sources(source_m: Vec3, listener_m: Vec3, spread_m: float) -> tuple[Vec3, ...]:
    """The point sources of a source spread ``spread_m`` wide, left first (one if 0)."""
    if spread_m == 0:
        return (source_m,)
    dx, dy = source_m[0] - listener_m[0], source_m[1] - listener_m[1]
    norm = math.hypot(dx, dy)
    # facing the source, the left is the facing direction turned 90 deg counter-clockwise;
    # straight above or below the listener there is no facing direction: take +y's left (-x)
    left = (-dy / norm, dx / norm) if norm > 0 else (-1.0, 0.0)
    half = 0.5 * spread_m
    return tuple(
        (source_m[0] + s * half * left[0], source_m[1] + s * half * left[1], source_m[2])
        for s in (1.0, -1.0)
    )
