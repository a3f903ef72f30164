"""Stereo rooms: the room heard by a microphone pair, from one source or a spread pair of them.

Each path (source -> capsule) gets its own exact early part: every image source arrives at the
capsule's position and is weighted by the capsule's first-order pattern for its direction.
The late part is the model's envelope for that source (one prediction per source position, at
the pair's centre), scaled by each capsule's diffuse-field power, rendered from independent
fixed-seed noise per path and mixed per octave band so that the two capsules are as coherent
as a diffuse field makes them (`diffuse_coherence`). ``mix/width`` then narrows the pair as
mid/side: 0 makes both channels the mid.

A spread source's two points share the source's power (each path is scaled by 1/sqrt(2)):
the same signal on both inputs then gives the room the level of the point source, so moving
``source/spread_m`` from 0 does not make a mono or centred sound 3 dB louder.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np
from scipy import special

from rtverb.room.mics import Capsule
from rtverb.room.room import SPEED_OF_SOUND_M_S
from rtverb.synth.early import band_filters, early_ir, onset_sample
from rtverb.synth.late import add_late_pairs
from rtverb.synth.physics import RoomPhysics

#: FFT length of the band weights that average the coherence over each octave band.
_BAND_FFT = 8192


def diffuse_coherence(left: Capsule, right: Capsule, freqs_hz: np.ndarray) -> np.ndarray:
    """Real part of the two capsules' coherence in a diffuse field, at ``freqs_hz``.

    The integral over the sphere of both patterns with the spacing's phase,
    (1/4pi) Int g_l(n) g_r(n) exp(i k n.d) dn / sqrt(P_l P_r), in closed form for first-order
    patterns g = a + b (u.n): a_l a_r j0(kd) + b_l b_r (u_l.u_r j1(kd)/kd - (u_l.e)(u_r.e) j2(kd)),
    e = d/|d| (the odd terms are imaginary). Spaced omnis give sin(kd)/kd; coincident capsules
    (a_l a_r + b_l b_r u_l.u_r / 3) / sqrt(P_l P_r).
    """
    d = np.subtract(left.position_m, right.position_m)
    dist = float(np.linalg.norm(d))
    e = d / dist if dist > 0 else np.zeros(3)
    x = 2 * np.pi * np.asarray(freqs_hz, dtype=np.float64) / SPEED_OF_SOUND_M_S * dist
    j0 = special.spherical_jn(0, x)
    j1_over_x = np.divide(special.spherical_jn(1, x), x, out=np.full_like(x, 1 / 3), where=x > 0)
    j2 = special.spherical_jn(2, x)
    a_l, a_r = left.omni_weight, right.omni_weight
    b_l, b_r = 1 - a_l, 1 - a_r
    u_l, u_r = np.array(left.axis), np.array(right.axis)
    cross = a_l * a_r * j0 + b_l * b_r * (u_l @ u_r * j1_over_x - (u_l @ e) * (u_r @ e) * j2)
    result: np.ndarray = cross / np.sqrt(left.diffuse_power * right.diffuse_power)
    return result


@cache
def _band_weights(sample_rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies (f,) and each octave filter's power over them, normalized (bands, f)."""
    power = np.abs(np.fft.rfft(band_filters(sample_rate_hz), n=_BAND_FFT, axis=-1)) ** 2
    return np.fft.rfftfreq(_BAND_FFT, 1 / sample_rate_hz), power / power.sum(axis=1)[:, None]


@lru_cache(maxsize=64)
def band_coherence(left: Capsule, right: Capsule, sample_rate_hz: float) -> np.ndarray:
    """`diffuse_coherence` averaged over each octave band's power, (bands,).

    Cached: most room changes keep the pair (0.3 ms to compute).
    """
    freqs, weights = _band_weights(float(sample_rate_hz))
    out: np.ndarray = weights @ diffuse_coherence(left, right, freqs)
    return out


def render_stereo_ir(
    physics: RoomPhysics,
    envelopes_db: list[np.ndarray],
    sample_rate_hz: float,
    c50_db: np.ndarray | None = None,
) -> np.ndarray:
    """The room through its pair: (2, taps) from one source, (2, 2, taps) from a spread one.

    ``envelopes_db``: the late envelope (8, N_FRAMES) of each of ``room.sources()``;
    ``c50_db``: the room encoder's C50 per source and band (or None).
    """
    fs = float(sample_rate_hz)
    room = physics.room
    left, right = room.capsules()
    coherence = band_coherence(left, right, fs)
    powers = (left.diffuse_power, right.diffuse_power)
    sources = room.sources()
    early = [
        [early_ir(physics, fs, source, capsule) for capsule in (left, right)] for source in sources
    ]
    onsets = [[onset_sample(source, c.position_m, fs) for c in (left, right)] for source in sources]
    ir = add_late_pairs(early, envelopes_db, fs, powers, coherence, onsets, c50_db)
    if len(sources) > 1:
        ir *= np.float32(1 / np.sqrt(len(sources)))  # the points share the source's power
    if room.width != 1.0:  # mid/side: L' = M + w S, R' = M - w S
        mid = 0.5 * (ir[:, 0] + ir[:, 1])
        side = 0.5 * room.width * (ir[:, 0] - ir[:, 1])
        ir[:, 0], ir[:, 1] = mid + side, mid - side
    return ir[0] if len(sources) == 1 else ir
