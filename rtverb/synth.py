"""Room in, impulse response out: `synthesize(room, sample_rate_hz)`.

The IR is built the way the reference simulator builds it, with the one hard part learned:

- direct sound and image sources up to order 3 come from exact shoebox geometry
  (`rtverb.ism.early_ir`);
- the late part is fixed-seed noise, split into octave bands and shaped per band by the energy
  envelope the Fourier Neural Operator predicts (`rtverb/models/rir_fno.onnx`, run by ONNX
  Runtime with one thread), with air absorption applied per band.

The result is on pyroomacoustics' scale (the direct sound has amplitude 1 / distance_m), so
level and direct-to-reverberant ratio differ between rooms as they really do. It is
deterministic for a given room and sample rate, and works at any rate from 8 kHz up.
"""

from __future__ import annotations

import json
import threading
import warnings
from functools import cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy import ndimage, signal

from rtverb import features
from rtverb.ism import (
    DELAY_SAMPLES,
    MODEL_BANDS_HZ,
    band_count,
    band_filters,
    early_ir,
)
from rtverb.params import SCHEMA_VERSION, table_hash
from rtverb.room import Room

MODEL_PATH = Path(__file__).parent / "models" / "rir_fno.onnx"
#: The late part ends where every band is this far below the envelope's peak.
TAIL_FLOOR_DB = -90.0
_NOISE_SEED = 20261121
#: ONNX metadata a model must carry, with the values this runtime expects.
FEATURE_VERSION = 3


class ModelError(RuntimeError):
    """The model file is missing, unreadable or does not match this version of rtverb."""


def expected_metadata() -> dict[str, str]:
    """Metadata keys whose values must match between a model file and this runtime."""
    return {
        "rtverb.schema_version": str(SCHEMA_VERSION),
        "rtverb.table_hash": table_hash(),
        "rtverb.feature_version": str(FEATURE_VERSION),
        "rtverb.n_frames": str(features.N_FRAMES),
        "rtverb.frame_s": str(features.FRAME_S),
        "rtverb.bands_hz": json.dumps(list(MODEL_BANDS_HZ)),
        "rtverb.n_input_channels": str(features.N_INPUT_CHANNELS),
    }


class Synthesizer:
    """An ONNX Runtime session on the envelope model; load once, call from any one thread.

    Raises:
        ModelError: the file is missing, corrupt, or was made for another parameter table,
            feature set or time grid (the message names the file and the mismatch).
    """

    def __init__(self, model_path: str | Path = MODEL_PATH) -> None:
        import onnxruntime as ort

        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelError(
                f"{self.path}: model file not found; reinstall rtverb or export one with "
                "`python -m train.export`"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # leave the other core to the audio thread
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises several private exception types
            raise ModelError(f"{self.path}: not a readable ONNX model ({e})") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        for key, want in expected_metadata().items():
            got = self.metadata.get(key)
            if got != want:
                raise ModelError(
                    f"{self.path}: model does not match this rtverb: {key} is {got!r}, "
                    f"expected {want!r}; export a model with this version "
                    "(`python -m train.export`)"
                )
        self._input = self.session.get_inputs()[0].name

    def envelope_db(self, room: Room) -> np.ndarray:
        """Predicted late energy envelope, (8 bands, N_FRAMES) dB per 4 ms bin."""
        x, baseline = features.model_input(room)
        return self._envelope_db(room, x, baseline, self._fields(x))

    def _fields(self, x: np.ndarray) -> np.ndarray:
        """The network's output fields (16, N_FRAMES) for one model input (C, N_FRAMES)."""
        fields: np.ndarray = self.session.run(None, {self._input: x[None]})[0][0]
        return fields

    def _envelope_db(
        self, room: Room, x: np.ndarray, baseline: np.ndarray, fields: np.ndarray
    ) -> np.ndarray:
        """`envelope_db` from the model input, the analytic envelope and the network's fields."""
        if not np.all(np.isfinite(fields)):  # inputs are finite and clipped: a broken file
            raise ModelError(f"{self.path}: the model returned NaN or Inf for {room.name!r}")
        correction = features.correction_db(fields, x)
        envelope = np.maximum(baseline + correction, features.FLOOR_DB)
        # nothing arrives before the direct sound (the analytic envelope is silent there too)
        envelope[:, baseline.max(axis=0) <= features.FLOOR_DB] = features.FLOOR_DB
        return envelope


_default: Synthesizer | None = None
_default_lock = threading.Lock()


def default_synthesizer() -> Synthesizer:
    """The shipped model, loaded once per process."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Synthesizer()
        return _default


def synthesize(room: Room, sample_rate_hz: int = 48000) -> np.ndarray:
    """The room's impulse response, mono (taps,) float32 on pyroomacoustics' scale.

    Warns (`UserWarning`) with every model-domain bound the room exceeds; it still synthesizes.
    """
    _check_rate(sample_rate_hz)
    for message in room.domain_warnings():
        warnings.warn(f"{room.name}: {message}; the IR is extrapolated", stacklevel=2)
    return render_ir(room, default_synthesizer().envelope_db(room), sample_rate_hz)


def synthesize_analytic(room: Room, sample_rate_hz: int = 48000) -> np.ndarray:
    """The Sabine/Eyring baseline: the same exact early part, a diffuse-field late envelope."""
    _check_rate(sample_rate_hz)
    return render_ir(room, features.analytic_envelope_db(room), sample_rate_hz)


def _check_rate(sample_rate_hz: float) -> None:
    if not 8000 <= sample_rate_hz <= 384000:
        raise ValueError(f"sample_rate_hz must be 8000-384000, got {sample_rate_hz}")


def render_ir(room: Room, envelope_db: np.ndarray, sample_rate_hz: float) -> np.ndarray:
    """Exact early part plus the late part shaped by ``envelope_db`` (8, N_FRAMES)."""
    fs = float(sample_rate_hz)
    return _with_late(early_ir(room, fs), envelope_db, fs)


def _with_late(early: np.ndarray, envelope_db: np.ndarray, fs: float) -> np.ndarray:
    """The early part plus the late part (`late_ir`) delayed by `DELAY_SAMPLES`, float32."""
    weights, n_bins = _late_weights(envelope_db, fs)
    hbss = _bin_samples(fs)
    n_late = n_bins * hbss
    length = max(len(early), DELAY_SAMPLES + n_late)
    # The late segments start half a bin before DELAY_SAMPLES (that half is silent) and run
    # past the late part's end: render them in place, in a buffer with room for both.
    half = hbss // 2
    lead = max(0, half - DELAY_SAMPLES)
    first = lead + DELAY_SAMPLES - half
    end = first + len(weights) * hbss
    buffer = np.empty(max(lead + length, end), dtype=np.float32)
    segments = buffer[first:end].reshape(len(weights), 1, hbss)
    np.matmul(weights, _noise_segments(fs, len(weights)), out=segments)
    buffer[: lead + DELAY_SAMPLES] = 0.0
    buffer[lead + DELAY_SAMPLES + n_late :] = 0.0
    out = buffer[lead : lead + length]
    out[: len(early)] += early
    return out


def _bin_samples(fs: float) -> int:
    return int(np.floor(fs * features.HIST_BIN_S))


@cache
def _noise_table(fs: float) -> np.ndarray:
    """Band-split fixed-seed noise in interpolation layout: (2 x bands, bins + 1, bin) float32.

    Segment s covers samples s*bin - bin/2 ... ; tables 0..bands-1 (T0) are weighted by (1 - w),
    tables bands.. (T1) by w, w rising 0 -> 1 across the segment, so a per-bin amplitude A gives
    linear interpolation between bin centres: late = sum_b T0[b] * A[b, s] + T1[b] * A[b, s + 1].
    """
    hbss = _bin_samples(fs)
    n_bins = int(np.ceil(2 * features.N_FRAMES * features.HIST_BIN_S * fs / hbss))
    half = hbss // 2
    rng = np.random.default_rng(_NOISE_SEED)
    white = rng.standard_normal((n_bins + 1) * hbss) / np.sqrt(hbss)  # unit energy per bin
    white[:half] = 0.0
    h = band_filters(fs)
    bands = np.stack([signal.fftconvolve(white, h[b], mode="same") for b in range(len(h))])
    # Flatten each band's envelope: band-limited noise fluctuates by about 1 / sqrt(bandwidth x
    # duration) (1.3 dB over 50 ms at 250 Hz), which would put one random draw into C50 and EDT.
    # Dividing by its smoothed Hilbert envelope keeps the spectrum and removes the fluctuation.
    envelope = ndimage.uniform_filter1d(np.abs(signal.hilbert(bands, axis=-1)), hbss // 2, axis=-1)
    flat = bands / np.maximum(envelope, 1e-12)
    flat[:, :half] = 0.0
    energy, flat_energy = (bands**2).sum(axis=-1), (flat**2).sum(axis=-1)
    # above ~200 kHz the 250 Hz band's filter has no FFT bin: that band is silent, not NaN
    gain = np.divide(energy, flat_energy, out=np.zeros_like(energy), where=flat_energy > 0)
    bands = flat * np.sqrt(gain)[:, None]
    seg = bands.reshape(len(h), n_bins + 1, hbss).astype(np.float32)
    w = (np.arange(hbss, dtype=np.float32) / hbss)[None, None, :]
    return np.concatenate([seg * (1 - w), seg * w])


def _noise_segments(fs: float, n: int) -> np.ndarray:
    """The first ``n`` segments of `_noise_table`, (n, 2 x bands, bin): a view, band-major.

    One batched product per segment against this view measured faster than against a
    segment-major copy of the table (and as fast as two products of 8 bands).
    """
    return _noise_table(fs)[:, :n].transpose(1, 0, 2)


class _LateGrid(NamedTuple):
    """Bin centres on the envelope's frame grid, for `np.interp`'s arithmetic on all bands."""

    centres_s: np.ndarray
    lower: np.ndarray  # the frame at or before each centre (clipped to the grid's inside)
    offset_s: np.ndarray  # centre minus that frame's time
    spacing_s: np.ndarray  # from each frame to the next
    n_before: int  # the first centres lie before the first frame: they take its value
    past: int  # centres from this one on lie at or past the last frame: they take its value
    air_db: np.ndarray  # air absorption at the centres, (bands, bins)


@cache
def _late_grid(fs: float) -> _LateGrid:
    hbss = _bin_samples(fs)
    centres = (np.arange(_noise_table(fs).shape[1] - 1) + 0.5) * (hbss / fs)
    frames = features.FRAME_TIMES_S
    j = np.searchsorted(frames, centres, side="right") - 1  # sorted: -1s first, then ...
    lower = np.clip(j, 0, len(frames) - 2)
    return _LateGrid(
        centres,
        lower,
        centres - frames[lower],
        np.diff(frames),
        int(np.count_nonzero(j < 0)),
        int(np.searchsorted(j, len(frames) - 1)),  # ... the last frame's index last
        features.air_db(centres)[: band_count(fs)],
    )


def _late_db(envelope_db: np.ndarray, fs: float) -> np.ndarray:
    """The envelope at every bin centre, with air absorption: (bands, bins) dB.

    ``np.interp(centres, FRAME_TIMES_S, envelope_db[b])`` for every band at once, with its
    arithmetic (a slope per frame, slope x offset + value; the end frames' values beyond them).
    """
    grid = _late_grid(fs)
    env = np.asarray(envelope_db, dtype=np.float64)[: len(grid.air_db)]
    with np.errstate(invalid="ignore"):  # infinite envelopes: see below
        slope = (env[:, 1:] - env[:, :-1]) / grid.spacing_s
        db = np.take(slope, grid.lower, axis=1) * grid.offset_s  # take: 3x faster than [:, i]
        db += np.take(env, grid.lower, axis=1)
    db[:, : grid.n_before] = env[:, :1]
    db[:, grid.past :] = env[:, -1:]
    if not np.all(np.isfinite(db)):  # np.interp has its own rules for infinite values
        db = np.stack([np.interp(grid.centres_s, features.FRAME_TIMES_S, e) for e in env])
    db += grid.air_db
    return db


def _late_weights(envelope_db: np.ndarray, fs: float) -> tuple[np.ndarray, int]:
    """Weights of `_noise_segments`, (segments, 1, 2 x bands) float32, and the length in bins.

    The late part ends where every band is `TAIL_FLOOR_DB` below the envelope's peak.
    """
    db = _late_db(envelope_db, fs)
    bands = len(db)
    audible = np.nonzero(db.max(axis=0) > db.max() + TAIL_FLOOR_DB)[0]
    n_bins = int(audible[-1]) + 1 if len(audible) else 1
    # amplitude sqrt(10^(dB/10) x bin ratio), with exp: 1.5x as fast as a power of ten
    scale = np.sqrt(_bin_samples(fs) / fs / features.HIST_BIN_S)
    amp = (np.exp(db[:, :n_bins] * (np.log(10.0) / 20)) * scale).astype(np.float32)
    ext = np.concatenate([amp[:, :1], amp, amp[:, -1:]], axis=1).T  # (n_bins + 2, bands)
    weights = np.empty((n_bins + 1, 1, 2 * bands), dtype=np.float32)
    weights[:, 0, :bands] = ext[:-1]  # T0: A[s]
    weights[:, 0, bands:] = ext[1:]  # T1: A[s + 1]
    return weights, n_bins


def late_ir(envelope_db: np.ndarray, sample_rate_hz: float) -> np.ndarray:
    """Late part from an envelope (8, N_FRAMES) in dB per 4 ms bin; starts at time zero."""
    fs = float(sample_rate_hz)
    weights, n_bins = _late_weights(envelope_db, fs)
    hbss = _bin_samples(fs)
    out = np.matmul(weights, _noise_segments(fs, len(weights)))
    half = hbss // 2
    return out.ravel()[half : half + n_bins * hbss]


__all__ = [
    "MODEL_BANDS_HZ",
    "ModelError",
    "Synthesizer",
    "default_synthesizer",
    "render_ir",
    "synthesize",
    "synthesize_analytic",
]
