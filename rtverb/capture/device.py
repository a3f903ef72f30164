"""Capture through a sound card: the sweep played and recorded with `sounddevice.playrec`.

One stream plays ``repeats`` sweeps back to back after `PRE_ROLL_S` of silence, so every
repetition has the same latency, unless the stream drops or repeats a block (an xrun): each
take's response is shifted to the median take's onset, and the takes' IRs average
sample-exactly (noise falls 3 dB per doubling); from 3 takes on, a take far from the median
one (a dropout, a door slam) is left out. The silence measures the noise floor: a recording
that clips or whose sweep is too little above the noise is refused with what to change. The
latency (interface plus any acoustic path) is the onset of the deconvolved response; the IR
starts `PRE_ONSET_S` before it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from rtverb.analysis.acoustics import onset_index
from rtverb.capture.chain import DEFAULT_LEVEL_DB, DEFAULT_MAX_IR_S, Capture, _check_args
from rtverb.capture.sweep import (
    PRE_ONSET_S,
    CaptureError,
    Sweep,
    deconvolve,
    linear_part,
    sweep_duration_s,
    trim_to_noise,
)

#: Silence recorded before the first sweep: the noise reference, and time for the stream (and
#: any connection made to it) to settle, seconds.
PRE_ROLL_S = 1.0
#: A recording whose peak reaches this is clipped (full scale 1.0).
CLIP_LEVEL = 0.999
#: Least sweep-to-noise ratio accepted (each recording, before averaging), dB.
MIN_SNR_DB = 20.0
#: With 3 or more repeats, a take whose IR differs from the median take by more than this many
#: times the typical take's difference is left out of the average.
OUTLIER_FACTOR = 10.0
#: The response to a sweep is looked for within this long of the sweep's start, seconds.
MAX_LATENCY_S = 0.5


def _device(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text.strip()


def parse_devices(text: str) -> tuple[int | str, int | str]:
    """``IN[,OUT]`` -> (input, output); names or numbers as `sounddevice` lists them."""
    parts = [p for p in text.split(",")]
    if not 1 <= len(parts) <= 2 or not all(p.strip() for p in parts):
        raise CaptureError(
            f"--device: expected IN or IN,OUT (names or numbers from `python -m sounddevice`), "
            f"got {text!r}"
        )
    return _device(parts[0]), _device(parts[-1])


def _channels(sd: Any, device: int | str, kind: str) -> int:
    try:
        info = sd.query_devices(device, kind)
    except (ValueError, sd.PortAudioError) as e:
        raise CaptureError(
            f"--device: no {kind} device {device!r} ({e}); see `python -m sounddevice`"
        ) from None
    channels = int(info[f"max_{kind}_channels"])
    if channels < 1:
        raise CaptureError(f"--device: {info['name']!r} has no {kind} channels")
    return min(channels, 2)


def record(
    signal: np.ndarray,
    sample_rate_hz: float,
    devices: tuple[int | str, int | str],
    progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Play ``signal`` (frames,) on up to 2 outputs, record up to 2 inputs: (channels, frames)."""
    try:
        import sounddevice as sd
    except OSError as e:  # the PortAudio library is missing
        raise CaptureError(
            f"--device: sound cards are unavailable ({e}); install PortAudio "
            "(Debian: apt-get install libportaudio2)"
        ) from None

    inputs, outputs = _channels(sd, devices[0], "input"), _channels(sd, devices[1], "output")
    play = np.repeat(signal.astype(np.float32)[:, None], outputs, axis=1)
    try:
        rec = sd.playrec(
            play, samplerate=sample_rate_hz, channels=inputs, device=devices, dtype="float32"
        )
        total_s = len(signal) / sample_rate_hz
        start = time.monotonic()
        while sd.get_stream().active:
            if progress:
                progress(min((time.monotonic() - start) / total_s, 1.0))
            sd.sleep(100)
        sd.wait()
    except (sd.PortAudioError, ValueError) as e:
        raise CaptureError(f"--device: cannot play and record ({e}); check --device") from None
    return np.asarray(rec, dtype=np.float64).T


def check_levels(recording: np.ndarray, pre_roll: int, sweep_frames: int, period: int) -> float:
    """Refuse a clipped or noisy recording; returns the worst sweep-to-noise ratio, dB."""
    peak = float(np.max(np.abs(recording)))
    if peak >= CLIP_LEVEL:
        raise CaptureError(
            f"the recording clips (peak {20 * math.log10(peak):.1f} dBFS); lower --level-db or "
            "the interface's input gain"
        )
    if peak == 0:
        raise CaptureError(
            "the recording is silent: nothing came back; check the cables, the routing and "
            "--device IN,OUT"
        )
    noise = float(np.mean(np.square(recording[:, : pre_roll - 1])))
    snrs = []
    for start in range(pre_roll, recording.shape[-1] - sweep_frames + 1, period):
        power = float(np.mean(np.square(recording[:, start : start + sweep_frames])))
        snrs.append(10 * math.log10(power / noise) if noise > 0 else math.inf)
    snr = min(snrs)
    if snr < MIN_SNR_DB:
        raise CaptureError(
            f"the sweep is only {snr:.1f} dB above the noise (at least {MIN_SNR_DB:g} dB "
            "needed); raise --level-db or the gain, or move closer"
        )
    return snr


def _aligned(windows: np.ndarray, sample_rate_hz: float) -> np.ndarray:
    """The takes' responses (takes, channels, samples) shifted so that their onsets meet the
    median take's: a stream that drops or repeats a block (an xrun) delays every later take by
    it, and averaging takes a block apart would comb-filter the IR."""
    onsets = [onset_index(np.abs(w).max(axis=0), sample_rate_hz) for w in windows]
    reference = int(np.median(onsets))
    out = np.zeros_like(windows)
    for take, (w, onset) in enumerate(zip(windows, onsets, strict=True)):
        shift = reference - onset
        if shift >= 0:
            out[take, :, shift:] = w[:, : w.shape[1] - shift]
        else:
            out[take, :, :shift] = w[:, -shift:]
    return out


def _steady_takes(windows: np.ndarray) -> np.ndarray:
    """Indices of the takes to average: all but those far from the median take (a dropout or
    a door slam during one sweep), found when there are at least 3 takes."""
    if len(windows) < 3:
        return np.arange(len(windows))
    median = np.median(windows, axis=0)
    deviation = np.sum((windows - median) ** 2, axis=(1, 2))
    return np.nonzero(deviation <= OUTLIER_FACTOR * np.median(deviation))[0]


def capture_device(
    devices: tuple[int | str, int | str],
    sample_rate_hz: float = 48000.0,
    max_ir_s: float = DEFAULT_MAX_IR_S,
    sweep_s: float | None = None,
    level_db: float = DEFAULT_LEVEL_DB,
    repeats: int = 1,
    progress: Callable[[float], None] | None = None,
    recorder: Callable[..., np.ndarray] = record,
    pre_roll_s: float = PRE_ROLL_S,
) -> Capture:
    """The impulse response from a sound card's outputs back to its inputs, (inputs, taps).

    ``recorder`` plays and records (`record`; tests replace it). ``pre_roll_s`` of silence
    come first (the noise reference; time to route the stream's ports).

    Raises:
        CaptureError: bad arguments or devices, clipping, too little signal over the noise,
            no response found.
    """
    _check_args(sample_rate_hz, max_ir_s, level_db)
    if not 1 <= repeats <= 100:
        raise CaptureError(f"--repeats must be 1-100, got {repeats}")
    window_s = max_ir_s + MAX_LATENCY_S
    sweep = Sweep(sample_rate_hz, sweep_s or sweep_duration_s(window_s, sample_rate_hz))
    x = sweep.signal() * 10 ** (level_db / 20)
    pre_roll = int(round(pre_roll_s * sample_rate_hz))
    period = len(x) + int(round(window_s * sample_rate_hz))
    signal = np.zeros(pre_roll + repeats * period)
    for k in range(repeats):
        signal[pre_roll + k * period : pre_roll + k * period + len(x)] = x
    recording = recorder(signal, sample_rate_hz, devices, progress)
    check_levels(recording, pre_roll, len(x), period)
    takes = recording[:, pre_roll:].reshape(recording.shape[0], repeats, period)
    windows = np.stack(
        [linear_part(deconvolve(takes[:, k], x), sweep, window_s) for k in range(repeats)]
    )
    windows = _aligned(windows, sample_rate_hz)
    window = windows[_steady_takes(windows)].mean(axis=0)
    onset = onset_index(np.abs(window).max(axis=0), sample_rate_hz)  # over all channels
    if onset >= int(MAX_LATENCY_S * sample_rate_hz):
        raise CaptureError(
            f"the response starts {onset / sample_rate_hz:.2f} s after the sweep (more than "
            f"{MAX_LATENCY_S:g} s of latency): is the output really routed to the input?"
        )
    start = max(onset - int(round(PRE_ONSET_S * sample_rate_hz)), 0)
    ir, pnr_db = trim_to_noise(
        window[:, : start + int(round(max_ir_s * sample_rate_hz))], sample_rate_hz, start
    )
    return Capture(ir.astype(np.float32), float(sample_rate_hz), pnr_db, start / sample_rate_hz)
