"""The one table of room parameters.

Every parameter a user, a preset, an OSC controller or the model sees is declared here once,
with its unit, its accepted range, its default and the range the model was trained on
(``domain``). Validation (`room`), OSC routing and range checks (`rtverb.osc`) and model
input normalization (`rtverb.synth`) are all derived from this table.

Names are paths: ``room/size/x`` is also the OSC address ``/rtverb/room/size/x``. Each
parameter names the `rtverb.room.room.Room` attribute that holds it (``field``, and ``item``
within a vector or the surfaces) and the stage that uses it (``stage``): the model's inputs,
what shapes the impulse response after the model (the microphone pair, the source's spread,
the width), or the mix the engine applies. Only the model's inputs are in `table_hash`.
Adding a parameter is one `ParamSpec` line in `PARAMS`; an enum lists its ``choices``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from rtverb.room.mics import PAIRS

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
    #: The `Room` attribute holding the value; the name's last part when left empty.
    field: str = ""
    #: The axis (``x``) of a vector field, or the surface of ``surfaces``; None for a scalar.
    item: str | None = None
    #: Who uses it: ``model`` (a model input), ``ir`` (shapes the IR after the model) or
    #: ``engine`` (the mix: no new IR).
    stage: str = "model"
    #: An enum's names (its value is a string; min, max and default index them).
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.field:
            object.__setattr__(self, "field", self.name.rpartition("/")[2])

    @property
    def is_mix(self) -> bool:
        """A mix setting (the engine applies it), not a property of the room's IR."""
        return self.stage == "engine"

    @property
    def kind(self) -> str:
        """``enum`` (a string from `choices`) or ``number``."""
        return "enum" if self.choices else "number"

    def domain_fraction(self, value: float) -> float:
        """Where ``value`` lies in the model domain: 0 at ``domain_min``, 1 at ``domain_max``."""
        return (value - self.domain_min) / (self.domain_max - self.domain_min)

    def from_fader(self, position: float) -> float:
        """The value of a fader at ``position`` in [0, 1] (clamped) over ``[min, max]``."""
        return self.min + min(max(position, 0.0), 1.0) * (self.max - self.min)

    def to_fader(self, value: float) -> float:
        """The fader position of ``value`` over ``[min, max]``; the inverse of `from_fader`."""
        return (value - self.min) / (self.max - self.min)


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
        field="size_m",
        item=axis,
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
        field=f"{who}_position_m",
        item=axis,
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
            field="surfaces",
            item=s,
        )
        for s in SURFACES
    ),
    _position("source", "x", 2.0),
    _position("source", "y", 2.0),
    _position("source", "z", 1.5),
    _position("listener", "x", 5.0),
    _position("listener", "y", 3.0),
    _position("listener", "z", 1.2),
    *(
        ParamSpec(name, unit, lo, hi, default, lo, hi, doc, stage="engine")
        for name, unit, lo, hi, default, doc in (
            ("mix/wet_db", "dB", -70.0, 12.0, -6.0, "reverb (wet) level"),
            ("mix/dry_db", "dB", -70.0, 12.0, 0.0, "direct (dry) level"),
            ("mix/predelay_ms", "ms", 0.0, 200.0, 0.0, "delay before the reverb"),
        )
    ),
    # the listener's pair, the source's spread and the width (rtverb.room.mics): they shape
    # the IR after the model; defaults are the default room's (mono: spacing and angle 0)
    ParamSpec(
        "listener/pair", "", 0, len(PAIRS) - 1, 0, 0, len(PAIRS) - 1,
        f"microphone arrangement: {', '.join(PAIRS)}", stage="ir", choices=tuple(PAIRS),
    ),
    ParamSpec(
        "listener/spacing_m", "m", 0.0, 4.0, 0.0, 0.0, 4.0,
        "distance between the capsules (unset: the pair's own)", stage="ir",
    ),
    ParamSpec(
        "listener/azimuth_deg", "deg", -180.0, 180.0, 0.0, -180.0, 180.0,
        "where the pair faces: 0 = +x (east), 90 = +y (north)", stage="ir",
    ),
    ParamSpec(
        "listener/angle_deg", "deg", 0.0, 90.0, 0.0, 0.0, 90.0,
        "each capsule's turn off the pair's axis (unset: the pair's own)", stage="ir",
    ),
    ParamSpec(
        "source/spread_m", "m", 0.0, 20.0, 0.0, 0.0, 20.0,
        "a stereo source: two point sources this far apart (0: one)", stage="ir",
    ),
    ParamSpec(
        "mix/width", "", 0.0, 1.0, 1.0, 0.0, 1.0,
        "mid/side width of the wet pair (0: mono)", stage="ir",
    ),
)  # fmt: skip

PARAMS_BY_NAME: dict[str, ParamSpec] = {p.name: p for p in PARAMS}
#: The mix settings (``mix/``), in table order.
MIX_PARAMS: tuple[ParamSpec, ...] = tuple(p for p in PARAMS if p.is_mix)


def axis_defaults(field: str) -> tuple[float, float, float]:
    """The defaults of a per-axis field, e.g. ``size_m`` -> (7.0, 5.0, 3.0)."""
    x, y, z = (p.default for p in PARAMS if p.field == field)
    return (x, y, z)


#: Gains at or below this many dB are silence (the dB faders' floor).
SILENT_DB = -70.0


def table_hash() -> str:
    """A short hash of the model's inputs in the table, and the bands; a model records it and
    must match.

    Parameters the model does not see (``stage`` ``ir`` or ``engine``) and where a value lives
    in `Room` (``field``, ``item``) are not part of it: adding them keeps the model valid.
    """
    skip = ("field", "item", "stage", "choices")
    params = [
        {k: v for k, v in asdict(p).items() if k not in skip} for p in PARAMS if p.stage == "model"
    ]
    blob = json.dumps(
        {"params": params, "bands": BANDS_HZ, "version": SCHEMA_VERSION}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
