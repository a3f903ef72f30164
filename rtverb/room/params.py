"""The one table of room parameters.

Every parameter a user, a preset, an OSC controller or the model sees is declared here once,
with its unit, its accepted range, its default and the range the model was trained on
(``domain``). Validation (`room`), OSC routing and range checks (`rtverb.osc`) and model
input normalization (`rtverb.synth`) are all derived from this table.

Names are paths: ``room/size/x`` is also the OSC address ``/rtverb/room/size/x``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

#: Octave-band centres of the absorption coefficients and of the model's outputs.
BANDS_HZ: tuple[float, ...] = (125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0)
#: Surfaces of a shoebox room, named as pyroomacoustics names them.
#: west: x = 0, east: x = size x, south: y = 0, north: y = size y,
#: floor: z = 0, ceiling: z = size z.
SURFACES: tuple[str, ...] = ("floor", "ceiling", "east", "west", "north", "south")
AXES: tuple[str, ...] = ("x", "y", "z")

#: Bumped whenever the table changes meaning; models record it and are refused on mismatch.
SCHEMA_VERSION = 1

#: The model domain's bound on the Sabine reverberation time, checked in bands 250-4000 Hz.
DOMAIN_RT60_S = (0.1, 3.0)
DOMAIN_RT60_BANDS_HZ = (250.0, 500.0, 1000.0, 2000.0, 4000.0)
#: Source and listener stay this far from every surface and from each other in the domain.
DOMAIN_CLEARANCE_M = 0.5


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its name (an OSC-style path), unit, accepted range, default, model domain.

    ``min``/``max`` bound what rtverb accepts (OSC values outside them are refused).
    ``domain_min`` / ``domain_max`` bound the rooms the model was trained on: outside, rtverb
    runs and warns. Positions (``relative_to_size``) are in metres but bounded by the room:
    their ``max`` is the room's size on that axis, and the model sees them as a fraction of it.
    """

    name: str
    unit: str
    min: float
    max: float
    default: float
    domain_min: float
    domain_max: float
    doc: str
    relative_to_size: bool = False
    size: int = 1  # vector length: 7 for a surface's octave-band absorption

    def normalize(self, value: float) -> float:
        """Map a value in the model domain to [0, 1]."""
        return (value - self.domain_min) / (self.domain_max - self.domain_min)

    def denormalize(self, unit_value: float) -> float:
        """Map a fader position in [0, 1] onto the accepted range ``[min, max]``."""
        return self.min + min(max(unit_value, 0.0), 1.0) * (self.max - self.min)


def _size(axis: str, lo: float, default: float) -> ParamSpec:
    return ParamSpec(
        f"room/size/{axis}",
        "m",
        1.0,
        50.0,
        default,
        lo,
        20.0 if axis != "z" else 8.0,
        f"room size along {axis}",
    )


def _position(who: str, axis: str, default: float) -> ParamSpec:
    return ParamSpec(
        f"{who}/position/{axis}",
        "m",
        0.0,
        50.0,
        default,
        DOMAIN_CLEARANCE_M,
        20.0,
        f"{who} position along {axis}, metres from the west/south/floor corner",
        relative_to_size=True,
    )


PARAMS: tuple[ParamSpec, ...] = (
    _size("x", 2.0, 7.0),
    _size("y", 2.0, 5.0),
    _size("z", 2.2, 3.0),
    ParamSpec("room/scattering", "", 0.0, 1.0, 0.1, 0.0, 0.5, "scattering of all surfaces"),
    *(
        ParamSpec(
            f"room/surface/{s}",
            "",
            0.01,
            1.0,
            0.1,
            0.01,
            1.0,
            f"{s} absorption per octave band {int(BANDS_HZ[0])}-{int(BANDS_HZ[-1])} Hz",
            size=len(BANDS_HZ),
        )
        for s in SURFACES
    ),
    _position("source", "x", 2.0),
    _position("source", "y", 2.0),
    _position("source", "z", 1.5),
    _position("listener", "x", 5.0),
    _position("listener", "y", 3.0),
    _position("listener", "z", 1.2),
    ParamSpec("mix/wet_db", "dB", -70.0, 12.0, -6.0, -70.0, 12.0, "reverb (wet) level"),
    ParamSpec("mix/dry_db", "dB", -70.0, 12.0, 0.0, -70.0, 12.0, "direct (dry) level"),
    ParamSpec("mix/predelay_ms", "ms", 0.0, 200.0, 0.0, 0.0, 200.0, "delay before the reverb"),
)

PARAMS_BY_NAME: dict[str, ParamSpec] = {p.name: p for p in PARAMS}

#: Gains at or below this many dB are silence (the dB faders' floor).
SILENT_DB = -70.0


def table_hash() -> str:
    """A short hash of the table and bands; a model records it and must match."""
    blob = json.dumps(
        {"params": [asdict(p) for p in PARAMS], "bands": BANDS_HZ, "version": SCHEMA_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
