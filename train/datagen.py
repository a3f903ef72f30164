"""Generate simulated rooms: ``python -m train.datagen --rooms N --seed S --out DIR``.

Rooms are sampled uniformly from the model domain (`sample_room`), simulated with the
reference simulator (`train.simulate`) in parallel, and written in shards.

Shard format (``DIR/shard_00012.npz``, numpy ``savez``; shard k holds rooms
``k*shard_size ... (k+1)*shard_size - 1``; a room the simulator rejects is logged and absent):

- ``index`` (n,) int: room index; room i is sampled from ``default_rng([seed, i])``
- ``room_json`` (n,) str: the room as the room file's structure (`rtverb.Room.to_dict`)
- ``hist`` (n, bands, 1000) float32: what the model learns from: the ray-tracing energy
  histogram per octave band (125 Hz-16 kHz at 48 kHz) in 4 ms bins, without air absorption,
  averaged over ``runs`` simulations
- ``T30_s``, ``EDT_s``, ``C50_db``, ``C80_db``, ``D50`` (n, runs, 7): metrics measured on each
  simulated 48 kHz RIR (`rtverb.analysis.acoustics.measure`, bands 125-8000 Hz);
  ``DRR_db``, ``C50_broadband_db`` (n, runs)
- ``n_rays`` (n,) int, ``sim_s`` (n,) float: rays per run and simulation time
- ``rir`` (n, samples) float32, only with ``--keep-rir``: the first run's RIR, zero-padded

A shard is written to a temporary file and renamed when complete, so a rerun skips finished
shards and never sees a half-written one.
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread per process, set before numpy loads: the pool runs one process per core.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import logging
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rtverb.analysis.acoustics import measure
from rtverb.room.params import AXES, DOMAIN_CLEARANCE_M, PARAMS_BY_NAME, SURFACES
from rtverb.room.room import Room, RoomError, Surfaces, materials_db

log = logging.getLogger("train.datagen")

METRIC_KEYS = ("T30_s", "EDT_s", "C50_db", "C80_db", "D50")
SCALAR_METRIC_KEYS = ("DRR_db", "C50_broadband_db")
#: Fraction of surfaces given a database material (the rest get free coefficients).
DATABASE_MATERIAL_FRACTION = 0.5


def _free_coefficients(rng: np.random.Generator) -> tuple[float, ...]:
    """A smooth random absorption curve: log-uniform level with a random spectral tilt."""
    level = np.exp(rng.uniform(np.log(0.01), np.log(0.9)))
    tilt = rng.uniform(-0.6, 0.6)  # natural-log change per octave
    curve = level * np.exp(tilt * (np.arange(7) - 3))
    return tuple(float(round(c, 4)) for c in np.clip(curve, 0.01, 1.0))


def sample_room(rng: np.random.Generator, max_tries: int = 1000) -> Room:
    """A room drawn uniformly from the model domain (rejection sampling on its bounds)."""
    names = sorted(materials_db())
    for _ in range(max_tries):
        size = []
        for axis in AXES:
            spec = PARAMS_BY_NAME[f"room/size/{axis}"]
            size.append(
                float(np.exp(rng.uniform(np.log(spec.domain_min), np.log(spec.domain_max))))
            )
        surfaces = {
            s: (
                names[rng.integers(len(names))]
                if rng.uniform() < DATABASE_MATERIAL_FRACTION
                else _free_coefficients(rng)
            )
            for s in SURFACES
        }
        margin = DOMAIN_CLEARANCE_M
        src, lst = (tuple(float(rng.uniform(margin, s - margin)) for s in size) for _ in range(2))
        try:
            room = Room(
                size_m=tuple(round(s, 3) for s in size),  # type: ignore[arg-type]
                surfaces=Surfaces(**surfaces),
                source_position_m=tuple(round(v, 3) for v in src),  # type: ignore[arg-type]
                listener_position_m=tuple(round(v, 3) for v in lst),  # type: ignore[arg-type]
                scattering=round(float(rng.uniform(0.0, 0.5)), 3),
                name="sampled room",
            )
        except RoomError:
            continue
        if not room.domain_warnings():
            return room
    raise RuntimeError("could not sample a room inside the domain; is the domain empty?")


def _simulate_room(
    index: int, seed: int, runs: int, ray_factor: float, keep_rir: bool
) -> dict | None:
    from train.simulate import SIM_DELAY_SAMPLES, SIM_RATE_HZ, simulate

    room = sample_room(np.random.default_rng([seed, index]))
    t0 = time.perf_counter()
    try:
        hists, metrics, rir, n_rays = [], [], None, 0
        for run in range(runs):
            sim = simulate(
                room,
                seed=int(np.random.default_rng([seed, index, run]).integers(2**31)),
                ray_factor=ray_factor,
            )
            assert sim.rir is not None
            hists.append(sim.hist)
            metrics.append(measure(sim.rir, SIM_RATE_HZ, room.distance_m, SIM_DELAY_SAMPLES))
            n_rays = sim.n_rays
            if run == 0 and keep_rir:
                rir = sim.rir
    except Exception:  # a room the simulator rejects must not end a long run
        log.error("room %d skipped: the simulator failed:\n%s", index, traceback.format_exc())
        return None
    out = {
        "index": index,
        "room_json": json.dumps(room.to_dict()),
        "hist": np.mean(hists, axis=0).astype(np.float32),
        "n_rays": n_rays,
        "sim_s": time.perf_counter() - t0,
        "rir": rir,
    }
    for key in METRIC_KEYS + SCALAR_METRIC_KEYS:
        out[key] = np.array([getattr(m, key) for m in metrics], dtype=np.float32)
    return out


def shard_path(out: Path, shard: int) -> Path:
    return out / f"shard_{shard:05d}.npz"


def run_shard(
    out: str,
    shard: int,
    shard_size: int,
    n_rooms: int,
    seed: int,
    runs: int,
    ray_factor: float,
    keep_rir: bool,
) -> int:
    """Simulate one shard and write it atomically; returns the number of rooms written."""
    os.environ["OMP_NUM_THREADS"] = "1"
    path = shard_path(Path(out), shard)
    if path.exists():
        return 0
    rows = [
        r
        for i in range(shard * shard_size, min((shard + 1) * shard_size, n_rooms))
        if (r := _simulate_room(i, seed, runs, ray_factor, keep_rir)) is not None
    ]
    arrays: dict[str, np.ndarray] = {}
    for key in ("index", "room_json", "hist", "n_rays", "sim_s", *METRIC_KEYS, *SCALAR_METRIC_KEYS):
        arrays[key] = np.array([r[key] for r in rows])
    if keep_rir and rows:
        length = max(len(r["rir"]) for r in rows)
        arrays["rir"] = np.stack([np.pad(r["rir"], (0, length - len(r["rir"]))) for r in rows])
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{path.stem}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return len(rows)


def _pending(out: Path, n_shards: int) -> list[int]:
    return [k for k in range(n_shards) if not shard_path(out, k).exists()]


def _completed(args: argparse.Namespace, shards: list[int]) -> Iterator[int]:
    """Run shards on a process pool or a dask cluster, yielding rooms written per finished shard."""
    job = (
        str(args.out),
        args.shard_size,
        args.rooms,
        args.seed,
        args.runs,
        args.ray_factor,
        args.keep_rir,
    )
    if args.scheduler:
        from distributed import Client, as_completed

        with Client(args.scheduler) as client:
            futures = [client.submit(run_shard, job[0], k, *job[1:], pure=False) for k in shards]
            for future in as_completed(futures):
                yield future.result()
        return
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures import as_completed as done

    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(run_shard, job[0], k, *job[1:]) for k in shards]
        for future in done(futures):
            yield future.result()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.datagen", description=__doc__.split("\n")[0])
    p.add_argument("--rooms", type=int, required=True, help="number of rooms")
    p.add_argument("--seed", type=int, required=True, help="seed of the whole set")
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    p.add_argument("--scheduler", help="dask.distributed scheduler address, instead of processes")
    p.add_argument("--shard-size", type=int, default=20)
    p.add_argument("--runs", type=int, default=1, help="simulations per room (averaged)")
    p.add_argument("--ray-factor", type=float, default=2.0, help="rays x pyroomacoustics' default")
    p.add_argument("--keep-rir", action="store_true", help="store the first run's RIR")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.rooms <= 0 or args.shard_size <= 0 or args.runs <= 0 or args.workers <= 0:
        p.error("--rooms, --shard-size, --runs and --workers must be positive")
    args.out.mkdir(parents=True, exist_ok=True)
    n_shards = -(-args.rooms // args.shard_size)
    shards = _pending(args.out, n_shards)
    done_rooms = min(args.rooms, (n_shards - len(shards)) * args.shard_size)
    log.info("%d of %d shards to simulate in %s", len(shards), n_shards, args.out)

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    start = time.perf_counter()
    written = 0
    with Progress(
        TextColumn("rooms"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not sys.stderr.isatty(),
    ) as progress:
        task = progress.add_task("rooms", total=args.rooms, completed=done_rooms, rate="")
        for n in _completed(args, shards):
            written += n
            rate = written / (time.perf_counter() - start) * 60
            progress.update(task, advance=args.shard_size, rate=f"{rate:.1f} rooms/min")
            if not sys.stderr.isatty():
                log.info("%d rooms written, %.1f rooms/min", written, rate)
    log.info("done: %d rooms in %.0f s", written, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
