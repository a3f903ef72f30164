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
from rtverb.synth.early import early_ir, onset_sample
from rtverb.synth.late import add_late
from rtverb.synth.model import ModelError, Synthesizer, default_synthesizer
from rtverb.synth.physics import RoomPhysics
from rtverb.synth.stereo import render_stereo_ir


def synthesize(room: Room, sample_rate_hz: int = 48000) -> np.ndarray:
    """The room's impulse response, float32 on pyroomacoustics' scale.

    Its shape follows the listener's pair and the source's spread: (taps,) for ``mono``,
    (2 capsules, taps) for a pair, (2 sources, 2 capsules, taps) for a pair and a spread
    source (true stereo: inputs, outputs, taps). The model predicts one envelope per source
    position (all in one run), heard at the pair's centre. Warns (`UserWarning`) with every
    model-domain bound the room exceeds; it still synthesizes.

    Raises:
        ModelError: the model cannot be loaded, or the IR is not finite (never returned).
    """
    _check_rate(sample_rate_hz)
    for message in room.domain_warnings():
        warnings.warn(f"{room.name}: {message}; the IR is extrapolated", stacklevel=2)
    return _finite(render_room(room, default_synthesizer(), sample_rate_hz), room)


def render_room(room: Room, synthesizer: Synthesizer, sample_rate_hz: float) -> np.ndarray:
    """`synthesize` with ``synthesizer``'s envelopes, without its checks and warnings."""
    physics = RoomPhysics.of(room)  # resolved once, for the model and the early part
    envelopes, c50_db = synthesizer.envelopes_and_c50_db(per_source(physics))
    return _render(physics, envelopes, sample_rate_hz, c50_db)


def synthesize_analytic(room: Room, sample_rate_hz: int = 48000) -> np.ndarray:
    """The Sabine/Eyring baseline: the same exact early part, a diffuse-field late envelope."""
    _check_rate(sample_rate_hz)
    physics = RoomPhysics.of(room)
    envelopes = [features.analytic_envelope_db(p) for p in per_source(physics)]
    return _finite(_render(physics, envelopes, sample_rate_hz), room)


def _render(
    physics: RoomPhysics,
    envelopes_db: list[np.ndarray],
    sample_rate_hz: float,
    c50_db: np.ndarray | None = None,
) -> np.ndarray:
    """The IR from each point source's late envelope (`per_source`; ``c50_db``: the encoder's
    C50 per source and band, or None): mono or through the pair."""
    if physics.room.pair == "mono":
        return render_ir(
            physics, envelopes_db[0], sample_rate_hz, None if c50_db is None else c50_db[0]
        )
    return render_stereo_ir(physics, envelopes_db, sample_rate_hz, c50_db)


def per_source(physics: RoomPhysics) -> list[RoomPhysics]:
    """The room's physics once per point source of its (spread) source: what the model sees."""
    rooms = physics.room.point_sources()
    if len(rooms) == 1:
        return [physics]
    return [physics.moved(r) for r in rooms]


def _finite(ir: np.ndarray, room: Room) -> np.ndarray:
    bad = int(np.count_nonzero(~np.isfinite(ir)))
    if bad:
        raise ModelError(
            f"{room.name}: the synthesized IR has {bad} NaN or infinite samples; nothing was "
            "used or written (check the room, or the model file with --synth analytic)"
        )
    return ir


def _check_rate(sample_rate_hz: float) -> None:
    if not 8000 <= sample_rate_hz <= 384000:
        raise ValueError(f"sample_rate_hz must be 8000-384000, got {sample_rate_hz}")


def render_ir(
    physics: RoomPhysics,
    envelope_db: np.ndarray,
    sample_rate_hz: float,
    c50_db: np.ndarray | None = None,
) -> np.ndarray:
    """Exact early part plus the late part shaped by ``envelope_db`` (8, N_FRAMES), its low
    bands equalized (`rtverb.synth.equalize`; ``c50_db``: the room encoder's C50 per band)."""
    fs = float(sample_rate_hz)
    room = physics.room
    onset = onset_sample(room.source_position_m, room.listener_position_m, fs)
    return add_late(early_ir(physics, fs), envelope_db, fs, onset, c50_db)
