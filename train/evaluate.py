"""Evaluate synthesizers against the converged reference: ``python -m train.evaluate``.

The truth is a held-out set from `train.datagen --runs 4 --ray-factor 8 --keep-rir` (rooms
never seen in training): metrics are averaged over the runs. Compared, on the same rooms:

- ``model``: the model evaluated (by default the shipped ONNX file, run as users run it);
- ``model_uncalibrated`` (a model calibrated to its T30 heads): the same model's envelopes as
  its FNO makes them (`rtverb.synth.calibrate` not applied, nor the C50 blend);
- ``model_no_c50_blend``: the model's envelopes rendered without moving the first 50 ms
  towards the encoder's C50 (`rtverb.synth.equalize.C50_BLEND`);
- ``model_not_equalized``: the same, and the late part's low bands left as the noise draw
  makes them (no `rtverb.synth.equalize`: how rtverb rendered before);
- ``heads`` (a model with a room encoder): its heads' T30, EDT and C50 as they are, no IR;
- ``calibrated_to_truth``: the model's envelopes calibrated to the truth's own T30 (what the
  calibration reaches when its target is right);
- ``heads_single_slope`` (a model with a room encoder): its T30 heads alone, rendered as the
  analytic envelope with each band's decay set to the head's T30 (a single slope);
- ``fno_without_encoder`` (``--baseline-fno FILE``): an FNO without the room encoder;
- ``sabine``: the Sabine/Eyring diffuse-field envelope with the same exact early part;
- ``gru``: a recurrent network trained like the FNO (the original design's baseline);
- ``oracle``: the simulator's own mean histogram through rtverb's renderer (the ceiling of
  the synthesis method: what a perfect envelope model would reach);
- ``one_run``: one more simulation of each room with the default rays, independent of the
  truth's runs (the simulator's own noise: the issue's "one default simulator run"). Run 0 of
  the truth itself would not do: it has 8x the rays and is a quarter of the mean it is scored
  against.

Every figure comes with a 95 % bootstrap interval over rooms (`BOOTSTRAP_DRAWS` resamples).
Writes ``docs/evaluation.md``, ``docs/evaluation.json`` and PNG figures; ``--stamp`` also
writes the headline figures into the model file's metadata.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from rtverb.analysis.acoustics import measure
from rtverb.room.params import BANDS_HZ
from rtverb.room.room import Room
from rtverb.synth import (
    MODEL_PATH,
    Synthesizer,
    features,
    render_ir,
    render_room,
    synthesize_analytic,
)
from rtverb.synth.calibrate import calibrate_t30
from rtverb.synth.early import DELAY_SAMPLES, early_ir
from rtverb.synth.late import add_late
from rtverb.synth.physics import RoomPhysics
from train.dataset import EnvelopeSet, load_shards

RATE_HZ = 48000
#: The truth's simulation (`train.datagen --runs 4 --ray-factor 8`), timed on a few rooms.
TRUTH_RUNS, TRUTH_RAY_FACTOR, CONVERGED_ROOMS = 4, 8.0, 3
#: Octave bands the targets are stated for (250-4000 Hz), as indices into BANDS_HZ.
TARGET_BANDS = [i for i, b in enumerate(BANDS_HZ) if 250 <= b <= 4000]
#: Seeds of the ``one_run`` simulations: ONE_RUN_SEED + room index. The truth's seeds are
#: drawn from 31 bits by `train.datagen`, so these runs are independent of its runs.
ONE_RUN_SEED = 10_000
#: Bootstrap resamples of the rooms for the 95 % intervals.
BOOTSTRAP_DRAWS = 1000


def metrics_of(irs: list[np.ndarray], data: EnvelopeSet) -> dict[str, np.ndarray]:
    out: dict[str, list] = {"T30_s": [], "EDT_s": [], "C50_db": [], "DRR_db": []}
    for ir, room in zip(irs, data.rooms, strict=True):
        m = measure(ir, RATE_HZ, room.distance_m, DELAY_SAMPLES)
        for key in out:
            out[key].append(getattr(m, key))
    return {k: np.array(v, dtype=np.float64) for k, v in out.items()}


def errors(pred: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per room and target band: relative T30/EDT errors, absolute C50 (dB); DRR per room."""
    b = TARGET_BANDS
    return {
        "T30": np.abs(pred["T30_s"][:, b] / truth["T30_s"][:, b] - 1),
        "EDT": np.abs(pred["EDT_s"][:, b] / truth["EDT_s"][:, b] - 1),
        "C50": np.abs(pred["C50_db"][:, b] - truth["C50_db"][:, b]),
        "DRR": np.abs(pred["DRR_db"] - truth["DRR_db"]),
    }


def summary(err: dict[str, np.ndarray]) -> dict[str, float]:
    """Medians (and T30's p90) over rooms x target bands of `errors`."""
    return {
        "T30_median": float(np.nanmedian(err["T30"])),
        "T30_p90": float(np.nanpercentile(err["T30"], 90)),
        "EDT_median": float(np.nanmedian(err["EDT"])),
        "C50_median_db": float(np.nanmedian(err["C50"])),
        "C50_worst_band_median_db": float(np.nanmax(np.nanmedian(err["C50"], axis=0))),
        "DRR_median_db": float(np.nanmedian(err["DRR"]))
        if np.isfinite(err["DRR"]).any()
        else np.nan,
    }


def bootstrap(err: dict[str, np.ndarray], seed: int = 0) -> dict[str, list[float]]:
    """95 % intervals of each `summary` figure over ``BOOTSTRAP_DRAWS`` resamples of the rooms."""
    rng = np.random.default_rng(seed)
    n = len(err["DRR"])
    draws = [
        summary({k: v[idx] for k, v in err.items()})
        for idx in (rng.integers(n, size=n) for _ in range(BOOTSTRAP_DRAWS))
    ]
    return {
        key: [float(np.percentile([d[key] for d in draws], q)) for q in (2.5, 97.5)]
        for key in draws[0]
    }


def single_slope_envelope_db(physics: RoomPhysics, t30_s: np.ndarray) -> np.ndarray:
    """The analytic envelope with each band's decay set to ``t30_s`` (with air absorption).

    The renderer adds air absorption, so the decay rate without it is 60 / T30 minus the air's
    (60 / Eyring's time with air minus 60 / without), relative to the analytic envelope's.
    """
    analytic = features.analytic_envelope_db(physics)
    rate = 1 / t30_s - 1 / physics.eyring_s + 1 / physics.eyring_no_air_s
    scale = np.maximum(rate * physics.eyring_no_air_s, 0.1)[:, None]
    on = analytic > features.FLOOR_DB
    start = np.where(on, analytic, -np.inf).max(axis=1, keepdims=True)
    shaped = start + scale * (analytic - start)
    return np.where(on, np.maximum(shaped, features.FLOOR_DB), features.FLOOR_DB)


def _render(synth: Synthesizer, room: Room) -> np.ndarray:
    """The room's IR at `RATE_HZ` with ``synth``'s envelope, as `rtverb.synth.synthesize` does."""
    return render_room(room, synth, RATE_HZ)


def one_default_run(data: EnvelopeSet) -> tuple[dict[str, np.ndarray], list[float]]:
    """Each room simulated once more with the default rays, measured as the renders are (the
    simulator's rate and delay are `RATE_HZ` and `DELAY_SAMPLES`): the error one reference
    simulation makes. Also each simulation's time, s (`timing`'s reference)."""
    from train.simulate import simulate

    rirs, seconds = [], []
    for i, room in enumerate(data.rooms):
        t0 = time.perf_counter()
        rirs.append(simulate(room, seed=ONE_RUN_SEED + i).rir)
        seconds.append(time.perf_counter() - t0)
    return metrics_of(rirs, data), seconds


def timing(synth: Synthesizer, data: EnvelopeSet, reference_s: list[float]) -> dict[str, float]:
    """Room change -> ready IR (model + rendering, one thread) vs the reference simulation,
    which took ``reference_s`` on the first rooms (`one_default_run`)."""
    from train.simulate import simulate

    synth_s, lengths = [], []
    for room in data.rooms:
        _render(synth, room)  # warm caches for this rate
        for _ in range(3):
            fresh = dataclasses.replace(room)  # a new Room, as a room change brings: no reuse
            t0 = time.perf_counter()
            ir = _render(synth, fresh)
            synth_s.append(time.perf_counter() - t0)
        lengths.append(len(ir) / RATE_HZ)
    ratios = [ref / np.median(synth_s[3 * i : 3 * i + 3]) for i, ref in enumerate(reference_s)]
    converged = []  # the truth's configuration: TRUTH_RUNS runs with TRUTH_RAY_FACTOR x rays
    for i, room in enumerate(data.rooms[:CONVERGED_ROOMS]):
        t0 = time.perf_counter()
        for run in range(TRUTH_RUNS):
            simulate(room, seed=run, ray_factor=TRUTH_RAY_FACTOR)
        converged.append((time.perf_counter() - t0) / np.median(synth_s[3 * i : 3 * i + 3]))
    long_rooms = [i for i, s in enumerate(lengths) if s >= 2.5]
    long_ms = [1e3 * synth_s[3 * i + k] for i in long_rooms for k in range(3)]
    return {
        "synth_p50_ms": 1e3 * float(np.median(synth_s)),
        "synth_p90_ms": 1e3 * float(np.percentile(synth_s, 90)),
        "synth_p50_ms_ir_over_2_5_s": float(np.median(long_ms)) if long_ms else float("nan"),
        "ir_length_median_s": float(np.median(lengths)),
        "reference_p50_s": float(np.median(reference_s)),
        "speedup_median": float(np.median(ratios)),
        "speedup_min": float(np.min(ratios)),
        "speedup_vs_converged_median": float(np.median(converged)),
    }


def _plots(out: Path, truth_data: EnvelopeSet, irs: list[np.ndarray], err: dict) -> list[str]:
    try:
        from rtverb.analysis.plot import plot_edc_overlay
    except ImportError:
        return []
    assert truth_data.rir is not None
    score = np.nanmean(err["T30"], axis=1)
    order = np.argsort(score)
    names = []
    for label, i in (("best", order[0]), ("median", order[len(order) // 2]), ("worst", order[-1])):
        path = out / f"edc_{label}.png"
        plot_edc_overlay(
            irs[i], truth_data.rir[i], RATE_HZ, path, labels=("rtverb FNO", "reference run")
        )
        names.append(path.name)
    return names


def _bar_chart(out: Path, per_band: dict[str, dict[str, list[float]]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    bands = [int(BANDS_HZ[i]) for i in TARGET_BANDS]
    width = 0.8 / len(per_band)
    for ax, (key, unit) in zip(axes, (("T30", "%"), ("EDT", "%"), ("C50", "dB")), strict=True):
        for j, (method, values) in enumerate(per_band.items()):
            scale = 100 if unit == "%" else 1
            ax.bar(
                np.arange(len(bands)) + j * width,
                np.array(values[key]) * scale,
                width,
                label=method,
            )
        ax.set_xticks(np.arange(len(bands)) + 0.4 - width / 2, [str(b) for b in bands])
        ax.set_xlabel("octave band (Hz)")
        ax.set_title(f"median |Δ{key}| ({unit})")
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "errors_per_band.png", dpi=110)
    plt.close(fig)
    return "errors_per_band.png"


def evaluate(
    truth_dir: str, out: Path, model: Path, baseline_fno: Path | None, gru: Path | None, n_ref: int
) -> dict:
    data = load_shards(truth_dir, with_rir=True)
    truth = {k: np.nanmean(data.metrics[k], axis=1) for k in ("T30_s", "EDT_s", "C50_db", "DRR_db")}
    physics = [RoomPhysics.of(r) for r in data.rooms]
    synth = Synthesizer(model)
    irs_model = [_render(synth, r) for r in data.rooms]
    methods = {"model": metrics_of(irs_model, data)}
    envelopes = [synth.envelope_db(p) for p in physics]
    methods["model_no_c50_blend"] = metrics_of(
        [render_ir(p, e, RATE_HZ) for p, e in zip(physics, envelopes, strict=True)], data
    )
    methods["model_not_equalized"] = metrics_of(
        [
            add_late(early_ir(p, RATE_HZ), e, RATE_HZ)
            for p, e in zip(physics, envelopes, strict=True)
        ],
        data,
    )
    if synth.encoded:
        calibrate, synth.calibrate = synth.calibrate, False
        plain = [synth.envelope_db(p) for p in physics]  # the FNO's envelopes, not calibrated
        synth.calibrate = calibrate
        if calibrate:  # the same model, its envelopes not calibrated to its T30 heads
            methods["model_uncalibrated"] = metrics_of(
                [render_ir(p, e, RATE_HZ) for p, e in zip(physics, plain, strict=True)], data
            )
        heads = np.stack([synth.heads(p) for p in physics])  # (rooms, 3, 8)
        bands = len(BANDS_HZ)
        methods["heads"] = {
            "T30_s": heads[:, 0, :bands],
            "EDT_s": heads[:, 1, :bands],
            "C50_db": heads[:, 2, :bands],
            "DRR_db": np.full(len(physics), np.nan),
        }
        targets = np.pad(truth["T30_s"], ((0, 0), (0, 1)), constant_values=np.nan)  # no 16 kHz
        irs = [
            render_ir(p, calibrate_t30(e, features.early_energy(p), t), RATE_HZ)
            for p, e, t in zip(physics, plain, targets, strict=True)
        ]
        methods["calibrated_to_truth"] = metrics_of(irs, data)
        irs = [
            render_ir(p, single_slope_envelope_db(p, h[0]), RATE_HZ)
            for p, h in zip(physics, heads, strict=True)
        ]
        methods["heads_single_slope"] = metrics_of(irs, data)
    for name, path in (("fno_without_encoder", baseline_fno), ("gru", gru)):
        if path is not None and path.exists():
            other = Synthesizer(path)
            methods[name] = metrics_of([_render(other, r) for r in data.rooms], data)
    methods["sabine"] = metrics_of([synthesize_analytic(r, RATE_HZ) for r in data.rooms], data)
    methods["oracle"] = metrics_of(
        [render_ir(p, t, RATE_HZ) for p, t in zip(physics, data.target_db, strict=True)], data
    )
    methods["one_run"], reference_s = one_default_run(data)
    errs = {name: errors(m, truth) for name, m in methods.items()}
    report = {
        "rooms": len(data),
        "runs_per_room": int(data.metrics["T30_s"].shape[1]),
        "model_file": model.name,
        "summary": {name: summary(e) for name, e in errs.items()},
        "interval_95": {name: bootstrap(e) for name, e in errs.items()},
        "per_band_median": {
            name: {k: np.nanmedian(e[k], axis=0).tolist() for k in ("T30", "EDT", "C50")}
            for name, e in errs.items()
        },
        "bands_hz": [BANDS_HZ[i] for i in TARGET_BANDS],
        "timing": timing(synth, data, reference_s[:n_ref]),
    }
    model_t30, sab_t30 = (
        report["summary"]["model"]["T30_median"],
        report["summary"]["sabine"]["T30_median"],
    )
    report["t30_improvement_over_sabine"] = sab_t30 / model_t30
    out.mkdir(parents=True, exist_ok=True)
    report["figures"] = _plots(out, data, irs_model, errs["model"]) + [
        _bar_chart(out, report["per_band_median"])
    ]
    (out / "evaluation.json").write_text(json.dumps(report, indent=1))
    (out / "evaluation.md").write_text(markdown(report))
    return report


def markdown(r: dict) -> str:
    lines = [
        "# rtverb synthesizer evaluation",
        "",
        f"{r['rooms']} held-out rooms from the model domain; truth = mean of {r['runs_per_room']} "
        "reference simulations with 8x the default rays, 48 kHz. Errors are medians over rooms "
        "and the octave bands 250-4000 Hz (p90 = 90th percentile); in brackets the 95 % "
        f"bootstrap interval over rooms ({BOOTSTRAP_DRAWS} resamples). `model` is "
        f"`{r['model_file']}`.",
        "Reproduce: `python -m train.evaluate` (see README).",
        "",
        "| method | median abs dT30 | p90 abs dT30 | median abs dEDT | median abs dC50 "
        "| worst band median abs dC50 | median abs dDRR |",
        "|---|---|---|---|---|---|---|",
    ]
    columns = (
        ("T30_median", 100, "%"),
        ("T30_p90", 100, "%"),
        ("EDT_median", 100, "%"),
        ("C50_median_db", 1, "dB"),
        ("C50_worst_band_median_db", 1, "dB"),
        ("DRR_median_db", 1, "dB"),
    )
    for name, s in r["summary"].items():
        cells = []
        for key, scale, unit in columns:
            lo, hi = r["interval_95"][name][key]
            digits = 1 if unit == "%" else 2
            if not np.isfinite(s[key]):  # the heads have no DRR
                cells.append("–")
                continue
            cells.append(
                f"{scale * s[key]:.{digits}f} {unit} "
                f"[{scale * lo:.{digits}f}, {scale * hi:.{digits}f}]"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"T30 error of the Sabine/Eyring baseline / model: {r['t30_improvement_over_sabine']:.1f}x",
        "",
    ]
    lines += [
        "## Per band (median)",
        "",
        "| method | quantity | " + " | ".join(f"{b:g} Hz" for b in r["bands_hz"]) + " |",
        "|---|---|" + "---|" * len(r["bands_hz"]),
    ]
    for name, per in r["per_band_median"].items():
        for key in ("T30", "EDT", "C50"):
            scale, unit = (100, "%") if key != "C50" else (1, "dB")
            lines.append(
                f"| {name} | {key} | "
                + " | ".join(f"{scale * v:.1f} {unit}" for v in per[key])
                + " |"
            )
    t = r["timing"]
    lines += [
        "",
        "## Speed (one thread)",
        "",
        f"- room change to ready IR (model + rendering, 48 kHz): p50 {t['synth_p50_ms']:.2f} ms, "
        f"p90 {t['synth_p90_ms']:.2f} ms; IRs of 2.5 s or longer: "
        f"p50 {t['synth_p50_ms_ir_over_2_5_s']:.2f} ms "
        f"(median IR length {t['ir_length_median_s']:.2f} s)",
        "- reference simulation of the same rooms (default rays, one run): "
        f"p50 {t['reference_p50_s']:.2f} s",
        f"- speed-up over the reference: median {t['speedup_median']:.0f}x, "
        f"minimum {t['speedup_min']:.0f}x; over the converged reference the truth comes from "
        f"({TRUTH_RUNS} runs, {TRUTH_RAY_FACTOR:g}x rays; {CONVERGED_ROOMS} rooms): median "
        f"{t['speedup_vs_converged_median']:.0f}x",
        "",
        "## Figures",
        "",
    ]
    lines += [f"![{f}]({f})" for f in r["figures"]]
    return "\n".join(lines) + "\n"


def write_regression_set(truth_dir: str, path: Path, n: int) -> None:
    """A small fixed set for the shipped model's regression test: rooms and truth metrics."""
    data = load_shards(truth_dir)
    rooms = []
    for i in range(min(n, len(data))):
        truth = {
            k: np.nanmean(data.metrics[k][i], axis=0).tolist()
            for k in ("T30_s", "EDT_s", "C50_db", "DRR_db")
        }
        rooms.append({"room": data.rooms[i].to_dict(), "truth": truth})
    path.write_text(
        json.dumps(
            {
                "source": f"{truth_dir} (train.datagen --seed 2 --runs 4 "
                "--ray-factor 8), first rooms",
                "rooms": rooms,
            },
            indent=1,
        )
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--truth", default="data/truth")
    p.add_argument("--model", type=Path, default=MODEL_PATH)
    p.add_argument("--gru", type=Path, default=Path("runs/gru/gru.onnx"))
    p.add_argument("--baseline-fno", type=Path, help="an FNO without the room encoder, for its row")
    p.add_argument("--out", type=Path, default=Path("docs"))
    p.add_argument("--reference-rooms", type=int, default=12, help="rooms timed on the simulator")
    p.add_argument("--stamp", action="store_true", help="write the figures into the model file")
    p.add_argument("--write-regression", type=Path, help="write the regression test's room set")
    args = p.parse_args(argv)
    if args.write_regression:
        write_regression_set(args.truth, args.write_regression, 12)
        return 0
    report = evaluate(
        args.truth, args.out, args.model, args.baseline_fno, args.gru, args.reference_rooms
    )
    print((args.out / "evaluation.md").read_text())
    if args.stamp:
        from train.export import set_metadata

        set_metadata(
            args.model,
            {
                "rtverb.evaluation": json.dumps(
                    {
                        "summary": report["summary"]["model"],
                        "timing": report["timing"],
                        "rooms": report["rooms"],
                    }
                )
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
