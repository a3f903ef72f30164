"""rtverb rooms inside pedalboard: `to_pedalboard` turns a `Room` into plugins.

pedalboard's `Convolution` rescales every impulse response it is given to a gain of
``0.125 / ||ir||_2`` (for a stereo IR, the larger channel norm; no switch turns it off), so
scaling the IR array cannot set the level: the normalization undoes it. `to_pedalboard`
therefore returns a two-plugin `pedalboard.Pedalboard` (itself a plugin: it nests in any other
Pedalboard)::

    Pedalboard([Convolution(ir, mix=m, sample_rate=rate), Gain(gain_db=g_db)])

with ``m`` and ``g`` chosen so that the output equals rtverb's own render exactly in gain::

    y = dry * x + wet * (x * ir)          (* = convolution; wet, dry = the room's mix in dB)
    c = 0.125 / ||ir||_2                  pedalboard's normalization (measured, 0.9.26)
    m = wet / (dry * c + wet)             Convolution's mix: (1 - m) * x + m * c * (x * ir)
    g = dry + wet / c                     Gain after it (linear); g * (1 - m) = dry, g * m * c = wet

The room's pre-delay is zeros prepended to the IR (pedalboard keeps leading silence). The
result has no latency. A microphone pair gives a stereo IR (2, taps): one per channel, as
pedalboard convolves it. A true-stereo room (a pair and a spread source) is refused: its 2 x 2
matrix mixes the input channels, and pedalboard's plugins cannot route one channel into the
other (there is no channel swap or matrix among them). Like any pedalboard plugin it returns
as many frames as it is given: pad the input with the IR's length to keep the tail.
"""

from __future__ import annotations

import math

import numpy as np
import pedalboard

from rtverb.room.params import PARAMS_BY_NAME
from rtverb.room.room import Room

#: pedalboard.Convolution's output gain is this / ||ir||_2 (stereo: the larger channel's norm).
PEDALBOARD_IR_NORM = 0.125


#: Why a true-stereo room or IR has no pedalboard equivalent, and what to do instead.
TRUE_STEREO_REFUSAL = (
    "a true-stereo IR (2 sources x 2 capsules) mixes the input channels, which pedalboard's "
    "plugins cannot route; set source spread_m = 0 for a stereo IR pedalboard can take, or "
    "render the room with rtverb (rtverb render, rtverb.Engine)"
)


def _gain(db: float) -> float:
    from rtverb.dsp.engine import db_to_gain  # the engine's rule: SILENT_DB or below is silence

    return db_to_gain(db)


def ir_to_pedalboard(
    ir: np.ndarray,
    sample_rate_hz: float,
    *,
    wet_db: float = PARAMS_BY_NAME["mix/wet_db"].default,
    dry_db: float = PARAMS_BY_NAME["mix/dry_db"].default,
    predelay_ms: float = PARAMS_BY_NAME["mix/predelay_ms"].default,
) -> pedalboard.Pedalboard:
    """``Pedalboard([Convolution, Gain])`` giving ``dry * x + wet * (x * ir)`` at unity IR gain.

    ``ir``: (taps,) or (2, taps) float32 at ``sample_rate_hz`` (pedalboard scales both channels
    of a stereo IR by the larger channel norm; the compensation does too); a (2, 2, taps)
    true-stereo IR raises ValueError (see the module docstring, also for the gains).
    """
    ir = np.asarray(ir, dtype=np.float32)
    if ir.ndim == 3:
        raise ValueError(TRUE_STEREO_REFUSAL)
    if ir.ndim not in (1, 2) or ir.shape[-1] == 0 or (ir.ndim == 2 and ir.shape[0] not in (1, 2)):
        raise ValueError(f"ir: expected (taps,) or (2, taps) float32, got shape {ir.shape}")
    if not np.all(np.isfinite(ir)):
        raise ValueError("ir: holds NaN or Inf")
    norm = float(np.max(np.linalg.norm(np.atleast_2d(ir), axis=1)))
    if norm == 0.0:
        raise ValueError("ir: is all zeros; pedalboard cannot normalize a silent IR")
    if not 0.0 <= predelay_ms:
        raise ValueError(f"predelay_ms: expected >= 0, got {predelay_ms!r}")
    frames = round(predelay_ms * sample_rate_hz / 1000.0)
    if frames:
        ir = np.pad(ir, [(0, 0)] * (ir.ndim - 1) + [(frames, 0)])
    wet, dry = _gain(wet_db), _gain(dry_db)
    c = PEDALBOARD_IR_NORM / norm
    mix = wet / (dry * c + wet) if wet > 0 else 0.0
    gain = dry + wet / c
    conv = pedalboard.Convolution(np.ascontiguousarray(ir), mix=mix, sample_rate=sample_rate_hz)
    gain_db = 20.0 * math.log10(gain) if gain > 0 else -math.inf
    return pedalboard.Pedalboard([conv, pedalboard.Gain(gain_db=gain_db)])


def to_pedalboard(
    room: Room,
    sample_rate_hz: float = 48000.0,
    *,
    wet_db: float | None = None,
    dry_db: float | None = None,
    predelay_ms: float | None = None,
) -> pedalboard.Pedalboard:
    """The room as ``Pedalboard([Convolution, Gain])``: the IR synthesized at ``sample_rate_hz``
    with the room's mix (or the given overrides), level-matched to ``rtverb render``.

    Use it at ``sample_rate_hz`` (pedalboard resamples the IR at another rate). ``board[0]``
    is the `pedalboard.Convolution` carrying the IR; ``board[1]`` the compensating `Gain`.
    """
    from rtverb.synth import synthesize

    if room.true_stereo:
        raise ValueError(f"{room.name}: {TRUE_STEREO_REFUSAL}")
    ir = synthesize(room, sample_rate_hz=round(sample_rate_hz))
    return ir_to_pedalboard(
        ir,
        sample_rate_hz,
        wet_db=room.wet_db if wet_db is None else wet_db,
        dry_db=room.dry_db if dry_db is None else dry_db,
        predelay_ms=room.predelay_ms if predelay_ms is None else predelay_ms,
    )
