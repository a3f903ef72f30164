"""Impulse responses read from files and measured with checks (`rtverb analyze`, `rtverb plot`).

`read_ir` reads a file and names what is wrong with it; `analyze` measures one channel
(`rtverb.analysis.acoustics.measure`) after checking that it can be measured; `onset_warning`
says when a file's direct sound is far from where a given distance puts it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rtverb.analysis.acoustics import DIRECT_WINDOW_S, Metrics, measure, onset_index


class AnalyzeError(ValueError):
    """An impulse response file cannot be analyzed; the message names the problem and the fix."""


def read_ir(path: str | os.PathLike[str]) -> tuple[np.ndarray, float]:
    """Read an impulse response file: ((channels, frames) float32, sample rate in Hz).

    Raises:
        AnalyzeError: missing, not a file, unsupported, empty, unreadable, no frames, NaN/Inf.
    """
    from pedalboard.io import AudioFile, get_supported_read_formats

    path = Path(path)
    if not path.exists():
        raise AnalyzeError(f"{path}: no such file")
    if not path.is_file():
        raise AnalyzeError(f"{path}: not a file; give an impulse response audio file")
    formats = get_supported_read_formats()
    if path.suffix.lower() not in formats:
        raise AnalyzeError(
            f"{path}: unsupported file type {path.suffix or '(none)'!r}; "
            f"rtverb reads {', '.join(formats)}"
        )
    try:
        if path.stat().st_size == 0:
            raise AnalyzeError(f"{path}: the file is empty (0 bytes)")
        with AudioFile(str(path)) as f:
            if f.frames == 0:  # read(0) would refuse with a message about memory
                raise AnalyzeError(f"{path}: the file holds no audio frames")
            sample_rate_hz = float(f.samplerate)
            ir = np.asarray(f.read(f.frames), dtype=np.float32)
    except AnalyzeError:
        raise
    except (ValueError, RuntimeError, OSError) as e:
        raise AnalyzeError(
            f"{path}: not a readable audio file (corrupt, truncated or not audio?): {e}"
        ) from None
    if not np.all(np.isfinite(ir)):
        raise AnalyzeError(f"{path}: the file contains NaN or Inf samples")
    return ir.reshape(-1, ir.shape[-1]), sample_rate_hz


def analyze(
    ir: np.ndarray,
    sample_rate_hz: float,
    distance_m: float | None = None,
    delay_samples: int = 0,
) -> Metrics:
    """Measure one channel (``(frames,)``); `AnalyzeError` if silent or the onset is impossible."""
    if not np.any(ir):
        raise AnalyzeError("is silent (all samples are zero)")
    if distance_m is not None:
        onset = onset_index(ir, sample_rate_hz, distance_m, delay_samples)
        if onset >= len(ir):
            raise AnalyzeError(
                f"the direct path at {distance_m:g} m arrives at {1e3 * onset / sample_rate_hz:.1f}"
                f" ms, after the end of the file ({1e3 * len(ir) / sample_rate_hz:.1f} ms); "
                "check --distance-m and --delay-samples"
            )
    return measure(ir, sample_rate_hz, distance_m, delay_samples)


def onset_warning(
    ir: np.ndarray, sample_rate_hz: float, distance_m: float, delay_samples: int
) -> str | None:
    """A warning when the file's direct sound is far from where the distance puts it."""
    geometric = onset_index(ir, sample_rate_hz, distance_m, delay_samples)
    detected = onset_index(ir, sample_rate_hz)
    if abs(geometric - detected) <= DIRECT_WINDOW_S * sample_rate_hz:
        return None
    return (
        f"the direct sound is detected at {1e3 * detected / sample_rate_hz:.1f} ms but "
        f"--distance-m {distance_m:g} puts it at {1e3 * geometric / sample_rate_hz:.1f} ms; "
        "C50, D50 and DRR use the geometric onset (omit --distance-m to use the detected one, "
        "or set --delay-samples to the file's latency)"
    )


def read_channel(path: Path, channel: int) -> tuple[np.ndarray, float]:
    """One channel (1 = first) of an impulse response file: ((frames,) float32, rate in Hz).

    Raises:
        AnalyzeError: as `read_ir`, or the channel does not exist or is silent.
    """
    ir, sample_rate_hz = read_ir(path)
    if not 1 <= channel <= ir.shape[0]:
        raise AnalyzeError(
            f"{path}: --channel {channel} does not exist; the file has {ir.shape[0]} channel(s)"
        )
    if not np.any(ir[channel - 1]):
        raise AnalyzeError(f"{path}: channel {channel} is silent (all samples are zero)")
    return ir[channel - 1], sample_rate_hz
