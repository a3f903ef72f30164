"""Room in, impulse response out: `synthesize(room, sample_rate_hz)`.

The IR is built the way the reference simulator builds it, with the one hard part learned:

- direct sound and image sources up to order 3 come from exact shoebox geometry
  (`rtverb.synth.early.early_ir`);
- the late part is fixed-seed noise, split into octave bands and shaped per band by the energy
  envelope the Fourier Neural Operator predicts (`rtverb/synth/models/rir_fno.onnx`, run by ONNX
  Runtime with one thread), with air absorption applied per band.

The result is on pyroomacoustics' scale (the direct sound has amplitude 1 / distance_m), so
level and direct-to-reverberant ratio differ between rooms as they really do. It is
deterministic for a given room and sample rate, and works at any rate from 8 kHz up.
"""

from __future__ import annotations

import warnings

import numpy as np

from rtverb.room.room import Room
from rtverb.synth import features
from rtverb.synth.early import early_ir
from rtverb.synth.late import add_late
from rtverb.synth.model import default_synthesizer
from rtverb.synth.physics import RoomPhysics


def synthesize(room: Room, sample_rate_hz: int = 48000) -> np.ndarray:
    """The room's impulse response, mono (taps,) float32 on pyroomacoustics' scale.

    Warns (`UserWarning`) with every model-domain bound the room exceeds; it still synthesizes.
    """
    _check_rate(sample_rate_hz)
    for message in room.domain_warnings():
        warnings.warn(f"{room.name}: {message}; the IR is extrapolated", stacklevel=2)
    physics = RoomPhysics.of(room)  # resolved once, for the model and the early part
    return render_ir(physics, default_synthesizer().envelope_db(physics), sample_rate_hz)


def synthesize_analytic(room: Room, sample_rate_hz: int = 48000) -> np.ndarray:
    """The Sabine/Eyring baseline: the same exact early part, a diffuse-field late envelope."""
    _check_rate(sample_rate_hz)
    physics = RoomPhysics.of(room)
    return render_ir(physics, features.analytic_envelope_db(physics), sample_rate_hz)


def _check_rate(sample_rate_hz: float) -> None:
    if not 8000 <= sample_rate_hz <= 384000:
        raise ValueError(f"sample_rate_hz must be 8000-384000, got {sample_rate_hz}")


def render_ir(physics: RoomPhysics, envelope_db: np.ndarray, sample_rate_hz: float) -> np.ndarray:
    """Exact early part plus the late part shaped by ``envelope_db`` (8, N_FRAMES)."""
    fs = float(sample_rate_hz)
    return add_late(early_ir(physics, fs), envelope_db, fs)
