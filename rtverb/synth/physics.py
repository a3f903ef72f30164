"""What physics says about a room, resolved once per room change: `RoomPhysics.of(room)`.

One record (materials resolved to band absorption, areas, volume, mean absorption, decay
times, clarity) made from a `Room` and handed down to the early part (`rtverb.synth.early`),
the model input (`rtverb.synth.features`) and the renderer, so nothing downstream resolves it
again. Decay times include air absorption unless named otherwise:

- Sabine and Eyring (diffuse field, the room's mean absorption; `rtverb.room.room`);
- Fitzroy: the area-weighted mean of each axis's Eyring time (its pair of opposite surfaces'
  mean absorption over the whole surface), for absorption that differs between axes;
- Arau-Puchades: the area-weighted geometric mean of the same per-axis times;
- Barron's revised theory for C50 (direct + early reflected over late energy), and the
  source-listener distance over the critical distance.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from rtverb.room.params import BANDS_HZ
from rtverb.room.room import (
    SPEED_OF_SOUND_M_S,
    Room,
    eyring_rt60_s,
    mean_absorption,
    sabine_rt60_s,
)

#: Octave bands of the model and of synthesis: the room's 7 bands plus 16 kHz (at 48 kHz the
#: simulator has 8 bands; coefficients for 16 kHz are extrapolated as it does).
MODEL_BANDS_HZ: tuple[float, ...] = (*BANDS_HZ, 16000.0)
#: Air absorption, 1/m on energy (pyroomacoustics' 20 C, 30-50 % table; 16 kHz extrapolated
#: linearly in log-frequency, as pyroomacoustics does).
AIR_ABSORPTION_PER_M = np.array([0.1, 0.3, 0.6, 1.0, 1.9, 5.8, 20.3, 34.8]) * 1e-3
#: The surfaces facing each axis, as indices into `SURFACES` (x: east/west, y: north/south,
#: z: floor/ceiling).
AXIS_SURFACES = ((2, 3), (4, 5), (0, 1))
#: Barron's revised theory: 50 ms after the direct sound, as energy decay exponent 13.82 t.
_BARRON_EARLY_S = 0.05


def band_absorption(room: Room) -> np.ndarray:
    """Absorption per surface and model band, (6, 8): 16 kHz extrapolated and clipped to [0, 1]."""
    alpha = room.absorption()
    log_f = np.log2(BANDS_HZ)
    slope = (alpha[:, -1] - alpha[:, -2]) / (log_f[-1] - log_f[-2])
    extra = alpha[:, -1] + slope * (np.log2(MODEL_BANDS_HZ[-1]) - log_f[-1])
    return np.concatenate([alpha, np.clip(extra, 0.0, 1.0)[:, None]], axis=1)


@dataclass(frozen=True, eq=False)
class RoomPhysics:
    """A room's derived acoustics per model band (`MODEL_BANDS_HZ`); its arrays are read-only."""

    room: Room
    absorption: np.ndarray  # (6 surfaces, 8 bands), `band_absorption`
    areas_m2: np.ndarray  # (6,) in `SURFACES` order
    surface_m2: float
    volume_m3: float
    mean_absorption: np.ndarray  # (8,) area-weighted, `rtverb.room.room.mean_absorption`
    eyring_s: np.ndarray  # (8,) Eyring reverberation time with air absorption
    eyring_no_air_s: np.ndarray  # (8,) the same without air (the simulator's histograms)
    sabine_s: np.ndarray  # (8,)
    axis_absorption: np.ndarray  # (3 axes, 8) mean absorption of the two surfaces facing each
    fitzroy_s: np.ndarray  # (8,)
    arau_s: np.ndarray  # (8,)
    barron_c50_db: np.ndarray  # (8,) from the Eyring time
    critical_distance_m: np.ndarray  # (8,) where direct and diffuse energy are equal (Eyring)
    distance_m: float  # source to listener
    mean_free_path_m: float  # 4 V / S

    @classmethod
    def of(cls, room: Room) -> RoomPhysics:
        absorption = band_absorption(room)
        areas = room.surface_areas_m2()
        surface, volume = float(areas.sum()), room.volume_m3
        alpha = mean_absorption(areas, absorption)
        eyring = eyring_rt60_s(volume, surface, alpha, AIR_ABSORPTION_PER_M)
        pairs = [list(pair) for pair in AXIS_SURFACES]
        axis_alpha = np.stack([mean_absorption(areas[i], absorption[i]) for i in pairs])
        axis_area = np.array([areas[i].sum() for i in pairs])[:, None] / surface
        axis_s = eyring_rt60_s(volume, surface, axis_alpha, AIR_ABSORPTION_PER_M)
        distance = room.distance_m
        absorption_area = 0.161 * volume / eyring  # the equivalent (Eyring, air) area
        return cls(
            room=room,
            absorption=absorption,
            areas_m2=areas,
            surface_m2=surface,
            volume_m3=volume,
            mean_absorption=alpha,
            eyring_s=eyring,
            eyring_no_air_s=eyring_rt60_s(volume, surface, alpha),
            sabine_s=sabine_rt60_s(volume, surface, alpha, AIR_ABSORPTION_PER_M),
            axis_absorption=axis_alpha,
            fitzroy_s=(axis_area * axis_s).sum(axis=0),
            arau_s=np.exp((axis_area * np.log(axis_s)).sum(axis=0)),
            barron_c50_db=_barron_c50_db(eyring, volume, distance),
            critical_distance_m=np.sqrt(absorption_area / (16 * np.pi)),
            distance_m=distance,
            mean_free_path_m=4 * volume / surface,
        )

    def moved(self, room: Room) -> RoomPhysics:
        """The physics of ``room``, this room with its source or listener moved: only the
        distance and what depends on it are computed again."""
        distance = room.distance_m
        return dataclasses.replace(
            self,
            room=room,
            distance_m=distance,
            barron_c50_db=_barron_c50_db(self.eyring_s, self.volume_m3, distance),
        )

    def __post_init__(self) -> None:
        for value in vars(self).values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False  # shared by every stage of one room change

    @property
    def direct_s(self) -> float:
        """Arrival time of the direct sound, seconds."""
        return self.distance_m / SPEED_OF_SOUND_M_S


def _barron_c50_db(eyring_s: np.ndarray, volume_m3: float, distance_m: float) -> np.ndarray:
    """Barron's revised theory: direct 100 / r^2; reflected (31200 T / V) e^(-13.82 r / (c T)),
    split at 50 ms."""
    reflected = (
        31200 * eyring_s / volume_m3 * np.exp(-13.82 * distance_m / (SPEED_OF_SOUND_M_S * eyring_s))
    )
    late = reflected * np.exp(-13.82 * _BARRON_EARLY_S / eyring_s)
    result: np.ndarray = 10 * np.log10((100 / distance_m**2 + reflected - late) / late)
    return result
