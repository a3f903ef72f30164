"""The bundled dry demo clip, synthesized in code: clicks, a drum pattern, plucked strings and
(when espeak-ng is installed at generation time) a spoken line.

The clip is generated once and committed as ``rtverb/offline/demo.wav`` (mono, 48 kHz, 16-bit);
regenerate it on purpose with ``python -m rtverb.offline.demo`` (seeded: the same code and espeak-ng
version give the same file). `rtverb render` with no IN renders it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from pedalboard.io import AudioFile
from scipy.signal import butter, lfilter, resample_poly, sosfilt

from rtverb.offline.audio_io import SafeWriter

RATE_HZ = 48000
SEED = 6
#: Output path of the committed clip.
DEMO_PATH = Path(__file__).parent / "demo.wav"
#: Peak level of the clip, dBFS (room for the reverb's build-up on top).
PEAK_DBFS = -3.0
TEMPO_BPM = 128.0
SPEECH = "rtverb: a neural room, in real time."


def click(rate: int = RATE_HZ) -> np.ndarray:
    """A 1 ms raised-cosine click: the closest thing to an impulse, to hear the room itself."""
    n = round(1e-3 * rate)
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)


def pluck(freq_hz: float, seconds: float, rng: np.random.Generator, rate: int = RATE_HZ,
          decay: float = 0.996) -> np.ndarray:  # fmt: skip
    """Karplus-Strong plucked string: a noise burst circulating in a damped, averaging delay
    line, y[n] = x[n] + decay * (y[n-P] + y[n-P-1]) / 2."""
    period = max(2, round(rate / freq_hz))
    burst = np.zeros(round(seconds * rate))
    burst[:period] = rng.uniform(-1, 1, period)
    burst[:period] -= burst[:period].mean()
    feedback = np.zeros(period + 2)
    feedback[0], feedback[period], feedback[period + 1] = 1.0, -0.5 * decay, -0.5 * decay
    return lfilter([1.0], feedback, burst).astype(np.float32)


def kick(rate: int = RATE_HZ) -> np.ndarray:
    """A sine sweeping 150 -> 45 Hz with a fast decay."""
    t = np.arange(round(0.35 * rate)) / rate
    freq = 45 + 105 * np.exp(-t / 0.04)
    phase = 2 * np.pi * np.cumsum(freq) / rate
    return (np.sin(phase) * np.exp(-t / 0.12)).astype(np.float32)


def snare(rng: np.random.Generator, rate: int = RATE_HZ) -> np.ndarray:
    """Band-passed noise plus a 190 Hz body."""
    t = np.arange(round(0.2 * rate)) / rate
    sos = butter(2, [1200, 7000], btype="bandpass", fs=rate, output="sos")
    noise = sosfilt(sos, rng.standard_normal(t.size)) * np.exp(-t / 0.05)
    body = 0.6 * np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.03)
    return (noise / np.abs(noise).max() + body).astype(np.float32)


def hihat(rng: np.random.Generator, rate: int = RATE_HZ) -> np.ndarray:
    """High-passed noise, 40 ms."""
    t = np.arange(round(0.04 * rate)) / rate
    sos = butter(4, 7000, btype="highpass", fs=rate, output="sos")
    return (0.35 * sosfilt(sos, rng.standard_normal(t.size)) * np.exp(-t / 0.012)).astype(
        np.float32
    )


def speech(text: str = SPEECH, rate: int = RATE_HZ) -> np.ndarray | None:
    """``text`` spoken by espeak-ng at ``rate`` (None when espeak-ng is not installed)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "speech.wav")
        subprocess.run([exe, "-v", "en-us", "-s", "160", "-w", path, text], check=True)
        with AudioFile(path) as f:
            voice, voice_rate = f.read(f.frames)[0], int(f.samplerate)
    gcd = np.gcd(rate, voice_rate)
    return resample_poly(voice, rate // gcd, voice_rate // gcd).astype(np.float32)


def _add(track: np.ndarray, sound: np.ndarray, at_s: float, gain: float = 1.0) -> None:
    start = round(at_s * RATE_HZ)
    end = min(track.size, start + sound.size)
    track[start:end] += gain * sound[: end - start]


def generate(with_speech: bool = True) -> np.ndarray:
    """The demo clip: (1, frames) float32 at `RATE_HZ`, peak `PEAK_DBFS`."""
    rng = np.random.default_rng(SEED)
    beat = 60.0 / TEMPO_BPM
    voice = speech() if with_speech else None
    music_start = 1.2  # four clicks first
    bars = 2
    music_end = music_start + bars * 4 * beat
    length_s = music_end + 0.3 + (voice.size / RATE_HZ + 0.2 if voice is not None else 0.0)
    track = np.zeros(round(length_s * RATE_HZ), dtype=np.float32)
    for i in range(4):
        _add(track, click(), 0.1 + 0.25 * i, 0.9)
    # Drums: kick on 1 and 3, snare on 2 and 4, eighth-note hi-hats.
    for bar in range(bars):
        t0 = music_start + bar * 4 * beat
        for b in range(4):
            _add(track, kick() if b % 2 == 0 else snare(rng), t0 + b * beat, 0.8 if b % 2 else 0.9)
        for e in range(8):
            _add(track, hihat(rng), t0 + e * beat / 2, 0.5 if e % 2 else 0.7)
    # Plucks: an arpeggio over A minor - F - C - G, one chord per half bar.
    chords = [(220.0, 261.63, 329.63), (174.61, 220.0, 261.63),
              (261.63, 329.63, 392.0), (196.0, 246.94, 293.66)]  # fmt: skip
    for c, chord in enumerate(chords):
        for k in range(4):
            freq = chord[k % 3] * (2 if k == 3 else 1)
            _add(track, pluck(freq, 0.9, rng), music_start + (c * 4 + k) * beat / 2, 0.35)
    if voice is not None:
        _add(track, voice / np.abs(voice).max(), music_end + 0.3, 0.8)
    track *= 10 ** (PEAK_DBFS / 20) / np.abs(track).max()
    return track[None, :]


def write(path: Path = DEMO_PATH, with_speech: bool = True) -> Path:
    """Generate the clip and write it as 16-bit WAV (atomically)."""
    audio = generate(with_speech)
    with SafeWriter(path, RATE_HZ, 1, 16) as writer:
        writer.write(audio)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtverb.offline.demo", description=__doc__)
    parser.add_argument("out", nargs="?", type=Path, default=DEMO_PATH)
    parser.add_argument("--no-speech", action="store_true", help="leave out the espeak-ng line")
    args = parser.parse_args(argv)
    path = write(args.out, not args.no_speech)
    with AudioFile(str(path)) as f:
        print(f"wrote {path} ({f.frames / f.samplerate:.2f} s, {path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
