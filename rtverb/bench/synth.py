"""Room change -> ready IR, stage by stage: ``python -m rtverb.bench.synth``.

Times ``render_room(room, synthesizer, rate)`` (`RoomPhysics.of(room)`, the model on one
thread, then the rendering: what `rtverb.synth.synthesize` runs) on the built-in presets
and the 12 regression rooms (``tests/data/regression_rooms.json``), and each stage of it in the
order it runs:

- ``physics``: `rtverb.synth.physics.RoomPhysics.of` (materials, areas, decay times: once per room);
- ``model_input``: `Synthesizer.feeds` (`rtverb.synth.features.model_input`: the model input
  and the analytic envelope; `physics_features` for a model with a room encoder);
- ``onnx_run``: ONNX Runtime on the envelope model (one thread);
- ``envelope``: the network's fields to the envelope, calibrated to the T30 heads where the model
  asks (`Synthesizer.envelope_db`'s last step);
- ``early_ir``: image sources, arrivals and the 10 Hz high-pass (`rtverb.synth.early.early_ir`);
- ``late_mix``: the late part from the envelope, its bands up to 1 kHz equalized
  (`rtverb.synth.equalize`), added to the early part.

Stereo rows time the same room heard by an ORTF pair facing the source (``pair``: two
early parts, two late parts, one model run) and with the source spread (``true_stereo``: one
model run on a batch of the two source positions, four paths; 1 m wide, less where the room
is too narrow), as `rtverb.synth.synthesize` makes them (`rtverb.synth.render_room`).

Figures are p50/p90 over rooms x repetitions of thread CPU time (`time.thread_time`: what this
thread used, which other processes on a shared machine disturb least) and of wall time, for
all rooms and for IRs of 2.5 s or longer. Targets: total p50 <= 5 ms (issue 4); a pair
<= 1.5x and true stereo <= 2.5x the mono total, both p50 <= 5 ms (issue 16).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnxruntime
import scipy

from rtverb import synth
from rtverb.room.presets import PRESETS_DIR
from rtverb.room.room import Room, RoomError
from rtverb.synth import early as ism
from rtverb.synth import late
from rtverb.synth.physics import RoomPhysics

TARGET_P50_MS = 5.0
LONG_IR_S = 2.5
REGRESSION_ROOMS = PRESETS_DIR.parent / "tests" / "data" / "regression_rooms.json"
STAGES = ("physics", "model_input", "onnx_run", "envelope", "early_ir", "late_mix")
TOTAL = "total"
#: The stereo rows and their targets: at most this many times the mono total (p50).
STEREO = {"pair": 1.5, "true_stereo": 2.5}
#: The true-stereo rows' source spread, and narrower ones tried where it does not fit.
SPREADS_M = (1.0, 0.5, 0.2)

T = TypeVar("T")


def bench_rooms() -> list[Room]:
    """The built-in presets, then the regression rooms where the repository has them."""
    rooms = [Room.from_toml(p) for p in sorted(PRESETS_DIR.glob("*.toml"))]
    if REGRESSION_ROOMS.is_file():
        entries = json.loads(REGRESSION_ROOMS.read_text())["rooms"]
        rooms += [Room.from_dict(e["room"]) for e in entries]
    return rooms


class _Clock:
    """Thread CPU and wall time per stage, ms: ``times[stage]`` is a list of (cpu, wall)."""

    def __init__(self) -> None:
        self.times: dict[str, list[tuple[float, float]]] = {}

    def run(self, stage: str, f: Callable[[], T]) -> T:
        cpu, wall = time.thread_time(), time.perf_counter()
        out = f()
        took = (1e3 * (time.thread_time() - cpu), 1e3 * (time.perf_counter() - wall))
        self.times.setdefault(stage, []).append(took)
        return out


def _room_change(clock: _Clock, s: synth.Synthesizer, room: Room, fs: float) -> None:
    """One room change, timed stage by stage as `rtverb.synth.synthesize` runs it."""
    physics = clock.run("physics", lambda: RoomPhysics.of(room))
    feeds, baseline = clock.run("model_input", lambda: s.feeds(physics))
    fields, heads = clock.run("onnx_run", lambda: s._outputs(feeds))
    x = feeds[s._input][0]

    def envelope() -> np.ndarray:
        env = s._envelope_db(physics, x, baseline[0], fields[0])
        return env if heads is None else s._calibrated([physics], [env], heads[0])[0]

    env = clock.run("envelope", envelope)
    early = clock.run("early_ir", lambda: ism.early_ir(physics, fs))
    onset = ism.onset_sample(room.source_position_m, room.listener_position_m, fs)
    c50 = None if heads is None else heads[0, 2]
    clock.run("late_mix", lambda: late.add_late(early, env, fs, onset, c50))


def stereo_rooms(room: Room) -> dict[str, Room]:
    """The room heard by an ORTF pair facing the source, and with its source spread."""
    dx, dy = np.subtract(room.source_position_m, room.listener_position_m)[:2]
    pair = dataclasses.replace(
        room, pair="ortf", azimuth_deg=math.degrees(math.atan2(dy, dx)), spread_m=0.0
    )
    for spread in SPREADS_M:
        try:
            return {"pair": pair, "true_stereo": dataclasses.replace(pair, spread_m=spread)}
        except RoomError:  # the spread's points would leave the room
            continue
    raise RoomError(f"{room.name}: no spread of {SPREADS_M} m fits")


def _stereo(clock: _Clock, s: synth.Synthesizer, room: Room, fs: float) -> None:
    """The pair and the true-stereo room changes, as `rtverb.synth.synthesize` makes them."""
    for name, stereo in stereo_rooms(room).items():
        clock.run(name, partial(synth.render_room, stereo, s, fs))


def _whole(clock: _Clock, s: synth.Synthesizer, room: Room, fs: float) -> None:
    """One room change in one call, as `rtverb.synth.synthesize` makes it."""

    clock.run(TOTAL, partial(synth.render_room, room, s, fs))


def measure(
    rooms: list[Room], rate_hz: int, reps: int, model: Path = synth.MODEL_PATH
) -> dict[str, Any]:
    """Per room: IR length (s) and (cpu, wall) ms of every stage and of the whole, per rep."""
    s = synth.Synthesizer(model)
    fs = float(rate_hz)
    out: dict[str, Any] = {"ir_s": [], "times": []}
    gc.collect()
    gc.freeze()
    gc.disable()  # as live streams run (rtverb.bench.engine does the same)
    try:
        for room in rooms:
            ir = synth.render_room(room, s, fs)  # warms per-rate tables
            _stereo(_Clock(), s, room, fs)  # and the stereo ones (four noise tables)
            clock = _Clock()
            for rep in range(reps):  # rotate the order: none always runs after another
                order = (_room_change, _whole, _stereo)
                for f in order[rep % 3 :] + order[: rep % 3]:
                    # a room change brings a new Room object: nothing cached for it yet
                    f(clock, s, dataclasses.replace(room), fs)
            out["ir_s"].append(len(ir) / rate_hz)
            out["times"].append(clock.times)
    finally:
        gc.enable()
        gc.unfreeze()
    return out


def summary(data: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """p50/p90 of cpu and wall ms per stage (and "sum", "total"), for "all" and "long" IRs."""
    long = [s >= LONG_IR_S for s in data["ir_s"]]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for group, keep in (("all", [True] * len(long)), ("long", long)):
        per_stage: dict[str, np.ndarray] = {}
        for stage in (*STAGES, TOTAL, *STEREO):
            per_stage[stage] = np.concatenate(
                [np.array(t[stage]) for t, k in zip(data["times"], keep, strict=True) if k]
                or [np.full((1, 2), np.nan)]
            )
        per_stage["sum"] = np.sum([per_stage[s] for s in STAGES], axis=0)  # per room change
        out[group] = {
            stage: {
                f"{what}_{q}_ms": float(np.percentile(t[:, i], p))
                for i, what in enumerate(("cpu", "wall"))
                for q, p in (("p50", 50), ("p90", 90))
            }
            for stage, t in per_stage.items()
        }
    return out


def report(rooms: list[Room], data: dict[str, Any], rate_hz: int, reps: int) -> str:
    """The setup, then one line per stage: cpu/wall p50 and p90 for all and for long IRs."""
    figures = summary(data)
    n_long = sum(s >= LONG_IR_S for s in data["ir_s"])
    load = os.getloadavg()[0]
    lines = [
        f"rtverb synth_bench: room change -> ready IR at {rate_hz} Hz, {len(rooms)} rooms "
        f"(presets and regression rooms; IR median {np.median(data['ir_s']):.2f} s, "
        f"{n_long} of {LONG_IR_S:g} s or longer), {reps} repetitions each",
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load:.1f}"
        + (" (other work was running: wall times are pessimistic)" if load > 0.5 else ""),
        f"versions: numpy {np.__version__}, scipy {scipy.__version__}, onnxruntime "
        f"{onnxruntime.__version__}; ONNX Runtime on 1 thread; garbage collector paused",
        "ms, thread CPU / wall; p50 and p90 over rooms x repetitions",
        "",
        f"{'stage':<12}{'all p50':>15}{'all p90':>15}{'long p50':>15}{'long p90':>15}",
    ]
    for stage in (*STAGES, "sum", TOTAL, *STEREO):
        row = f"{stage:<12}"
        for group in ("all", "long"):
            f = figures[group][stage]
            for q in ("p50", "p90"):
                row += f"{f[f'cpu_{q}_ms']:>8.3f}/{f[f'wall_{q}_ms']:<6.3f}"
        lines.append(row)
    p50 = figures["all"][TOTAL]["cpu_p50_ms"]
    verdict = "met" if p50 <= TARGET_P50_MS else "NOT met"
    lines += ["", f"target: total p50 <= {TARGET_P50_MS:g} ms (thread CPU): {verdict}"]
    for name, most in STEREO.items():
        stereo_p50 = figures["all"][name]["cpu_p50_ms"]
        ok = stereo_p50 <= most * p50 and stereo_p50 <= TARGET_P50_MS
        lines.append(
            f"target: {name} p50 <= {most:g}x mono and <= {TARGET_P50_MS:g} ms: "
            f"{stereo_p50 / p50:.2f}x, {stereo_p50:.2f} ms: {'met' if ok else 'NOT met'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtverb.bench.synth", description=__doc__)
    parser.add_argument("--reps", type=int, default=30, help="repetitions per room (30)")
    parser.add_argument("--rate-hz", type=int, default=48000)
    parser.add_argument("--rooms", type=int, help="only the first N rooms")
    parser.add_argument("--json", action="store_true", help="print the figures as one object")
    parser.add_argument("--model", type=Path, default=synth.MODEL_PATH, help="the ONNX model")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    rooms = bench_rooms()[: args.rooms]
    data = measure(rooms, args.rate_hz, args.reps, args.model)
    if args.json:
        figures = {  # no IR long enough: null, not NaN
            group: {k: {q: None if np.isnan(v) else v for q, v in f.items()} for k, f in g.items()}
            for group, g in summary(data).items()
        }
        print(json.dumps({"ir_s": data["ir_s"], "figures": figures}))
    else:
        print(report(rooms, data, args.rate_hz, args.reps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
