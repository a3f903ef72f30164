"""How exact `rtverb capture` is: ``python -m rtverb.bench.capture``.

Prints three figures of the issue:

1. the IR of `pedalboard.Convolution` with a known IR (the ``studio_live_room`` preset's),
   captured by the sweep: the largest error re the IR's peak, after pedalboard's own gain
   ``0.125 / ||ir||`` (it normalizes every IR);
2. the same with `Distortion` before it: the linear part (the captured IR against the known one
   times the least-squares gain the distortion gives a sine) at a few drives and levels;
3. ``--dry/--wet`` on a pair rendered by ``rtverb render`` (the bundled demo clip, padded with
   3 s of silence, through the preset with the dry path muted) with white noise 60 dB below
   the wet's RMS: T30 and C50 per band against the preset's synthesized IR.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np
import pedalboard
from pedalboard.io import AudioFile

from rtverb.analysis.acoustics import measure
from rtverb.capture import capture_chain, capture_dry_wet
from rtverb.offline.render import render_file
from rtverb.room.params import BANDS_HZ
from rtverb.room.presets import load_preset
from rtverb.synth import synthesize

SR = 48000
PRESET = "studio_live_room"
#: Noise added to the wet recording, dB re its RMS.
WET_NOISE_DB = -60.0
#: (drive_db, sweep level dBFS) of the distortion runs.
DISTORTIONS = ((3.0, -6.0), (10.0, -20.0), (10.0, -6.0), (25.0, -20.0), (25.0, -6.0))
DEMO_WAV = Path(__file__).resolve().parent.parent / "offline" / "demo.wav"


def error_db(got: np.ndarray, want: np.ndarray) -> float:
    """Largest sample error re the known IR's peak, dB (the shorter one is zero-padded)."""
    n = max(len(got), len(want))
    diff = np.pad(got, (0, n - len(got))) - np.pad(want, (0, n - len(want)))
    return float(20 * np.log10(np.max(np.abs(diff)) / np.max(np.abs(want))))


def convolution_figures(known: np.ndarray) -> None:
    want = known * 0.125 / np.linalg.norm(known)
    board = pedalboard.Pedalboard([pedalboard.Convolution(known, sample_rate=SR)])
    max_ir_s = len(known) / SR + 0.1
    got = capture_chain(board, SR, max_ir_s=max_ir_s).first_channel()
    print(
        f"1. Convolution({len(known) / SR:.2f} s {PRESET} IR): error {error_db(got, want):.1f} "
        "dB re peak (target <= -60)"
    )
    print("2. Distortion -> Convolution, linear part (least-squares gain removed):")
    for drive_db, level_db in DISTORTIONS:
        board = pedalboard.Pedalboard(
            [
                pedalboard.Distortion(drive_db=drive_db),
                pedalboard.Convolution(known, sample_rate=SR),
            ]
        )
        got = capture_chain(board, SR, max_ir_s=max_ir_s, level_db=level_db).first_channel()
        got = np.pad(got, (0, max(len(want) - len(got), 0)))[: len(want)]
        gain = float(np.dot(got, want) / np.dot(want, want))
        print(
            f"   drive {drive_db:4g} dB, sweep {level_db:4g} dBFS: gain {gain:.2f}, error "
            f"{error_db(got, gain * want):.1f} dB re peak (target <= -40)"
        )


def dry_wet_figures(known: np.ndarray) -> None:
    room = dataclasses.replace(load_preset(PRESET), dry_db=-70.0, wet_db=0.0, pair="mono")
    with AudioFile(str(DEMO_WAV)) as f:
        demo = f.read(f.frames).mean(axis=0, keepdims=True)
        fs = int(f.samplerate)
    dry = np.pad(demo, ((0, 0), (0, 3 * fs))).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        dry_path, wet_path = os.path.join(tmp, "dry.wav"), os.path.join(tmp, "wet.wav")
        with AudioFile(dry_path, "w", fs, 1, bit_depth=32) as f:
            f.write(dry)
        render_file(dry_path, wet_path, room, tail_s=0.0, bit_depth=32, channels=1)
        with AudioFile(wet_path) as f:
            wet = f.read(f.frames)
    rng = np.random.default_rng(0)
    rms = float(np.sqrt(np.mean(wet**2)))
    noisy = wet + rng.standard_normal(wet.shape) * rms * 10 ** (WET_NOISE_DB / 20)
    capture = capture_dry_wet(dry, noisy, fs)
    got, want = measure(capture.first_channel(), fs), measure(known, fs)
    print(
        f"3. --dry/--wet ({dry.shape[-1] / fs:.1f} s demo through {PRESET}, noise "
        f"{WET_NOISE_DB:g} dB re the wet's RMS): captured vs known IR per band"
    )
    print("   band Hz      " + "".join(f"{b:>8g}" for b in BANDS_HZ))
    t30 = 100 * (np.array(got.T30_s) / want.T30_s - 1)
    c50 = np.array(got.C50_db) - want.C50_db
    print("   T30 error %  " + "".join(f"{v:8.2f}" for v in t30) + "   (target |x| <= 3)")
    print("   C50 error dB " + "".join(f"{v:8.2f}" for v in c50) + "   (target |x| <= 0.5)")


def main() -> int:
    print(f"rtverb capture accuracy at {SR} Hz (load average {os.getloadavg()[0]:.2f})")
    known = synthesize(dataclasses.replace(load_preset(PRESET), pair="mono"), SR)
    convolution_figures(known)
    dry_wet_figures(known)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
