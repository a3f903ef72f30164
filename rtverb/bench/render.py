"""Offline render benchmark: ``python -m rtverb.bench.render``.

Renders a stereo noise file (60 s by default) through a decaying-noise IR (3 s) at 48 kHz with
`render.render_file`, as ``rtverb render`` does, and prints the setup, the speed (x real
time, per engine block size) and the error against a `scipy.signal.fftconvolve` reference
(target: >= 100x real time, error <= 1e-5 of peak). It also times the signal path alone
(`render_array`, no file I/O) and the pre/post chains given with ``--pre``/``--post``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from pedalboard.io import AudioFile
from scipy.signal import fftconvolve

from rtverb.offline.chain import parse_chain
from rtverb.offline.render import OFFLINE_BLOCK_SIZE, render_array, render_file

TARGET_REALTIME = 100.0
TARGET_ERROR = 1e-5


def bench_ir(seconds: float, rate_hz: int, seed: int = 0) -> np.ndarray:
    """A 3 s room-like IR stand-in: unit direct sound, noise decaying 60 dB over ``seconds``."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate_hz)) / rate_hz
    ir = 0.3 * rng.standard_normal(t.size) * 10.0 ** (-3.0 * t / seconds)
    ir[0] = 1.0
    return ir.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtverb.bench.render", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="input length (60)")
    parser.add_argument("--ir-s", type=float, default=3.0, help="IR length (3)")
    parser.add_argument("--rate-hz", type=int, default=48000)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--block-sizes", default=f"1024,4096,{OFFLINE_BLOCK_SIZE},16384")
    parser.add_argument("--repeats", type=int, default=3, help="best of N (3)")
    parser.add_argument("--pre", metavar="CHAIN")
    parser.add_argument("--post", metavar="CHAIN")
    args = parser.parse_args(argv)

    rate, ch = args.rate_hz, args.channels
    rng = np.random.default_rng(1)
    audio = (0.25 * rng.standard_normal((ch, round(args.seconds * rate)))).astype(np.float32)
    ir = bench_ir(args.ir_s, rate)
    print(
        f"setup: {args.seconds:g} s x {ch} ch at {rate} Hz, IR {args.ir_s:g} s "
        f"({ir.size} taps), wet 0 dB, dry 0 dB, tail {args.ir_s:g} s; best of {args.repeats}\n"
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} (other work slows the figures), "
        f"numpy {np.__version__}"
    )
    mix = {"wet_db": 0.0, "dry_db": 0.0, "tail_s": args.ir_s}
    ref = np.stack([fftconvolve(c.astype(np.float64), ir.astype(np.float64)) for c in audio])
    ref[:, : audio.shape[1]] += audio
    ref = np.pad(ref, ((0, 0), (0, audio.shape[1] + ir.size - ref.shape[1])))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.wav"
        with AudioFile(str(src), "w", rate, ch, bit_depth=32) as f:
            f.write(audio)
        print(f"{'block':>6} {'file render s':>14} {'x real time':>12} {'in memory s':>12} "
              f"{'x real time':>12} {'max error / peak':>17}")  # fmt: skip
        for block in (int(b) for b in args.block_sizes.split(",")):
            file_s, mem_s = [], []
            for _ in range(args.repeats):
                out = Path(tmp) / "out.wav"
                result = render_file(src, out, ir, block_size=block, overwrite=True, **mix)
                file_s.append(result.wall_s)
                started = time.perf_counter()
                rendered = render_array(audio, rate, ir, block_size=block, **mix)
                mem_s.append(time.perf_counter() - started)
            with AudioFile(str(out)) as f:
                written = f.read(f.frames)
            np.testing.assert_array_equal(written, rendered)
            error = float(np.abs(rendered - ref).max() / np.abs(ref).max())
            print(
                f"{block:>6} {min(file_s):>14.3f} {args.seconds / min(file_s):>12.0f} "
                f"{min(mem_s):>12.3f} {args.seconds / min(mem_s):>12.0f} {error:>17.2e}"
            )
    print(f"targets: >= {TARGET_REALTIME:g}x real time, error <= {TARGET_ERROR:g} of peak")
    if args.pre or args.post:
        _bench_chains(audio, rate, args.pre, args.post)
    return 0


def _bench_chains(audio: np.ndarray, rate: int, pre: str | None, post: str | None) -> None:
    for name, text in (("pre", pre), ("post", post)):
        if not text:
            continue
        board = parse_chain(text)
        started = time.perf_counter()
        board.process(audio, rate, buffer_size=OFFLINE_BLOCK_SIZE, reset=False)
        took = time.perf_counter() - started
        print(f"--{name} {text!r}: {took:.3f} s, {audio.shape[1] / rate / took:.0f}x real time")


if __name__ == "__main__":
    raise SystemExit(main())
