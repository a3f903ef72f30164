"""Pictures (PNG): a room in 3D, an IR's waveform and spectrogram, two IRs' decay curves.

The functions take arrays and rooms, so training code calls them too; ``rtverb plot``
(`rtverb.cli.plot`) wraps them for files.

matplotlib is an optional extra (``pip install rtverb[plot]``), imported only here and only
when a picture is drawn. No pyplot: figures are plain objects, so drawing has no global state.
A PNG is written to a temporary file and renamed into place: complete or absent.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rtverb.analysis.acoustics import (
    BANDS_HZ,
    band_decays_db,
    decay_time_s,
    energy_decay_db,
    onset_index,
)
from rtverb.files import atomic_output
from rtverb.room.room import Room

#: Lowest level drawn in decay curves and spectrograms, dB.
FLOOR_DB = -90.0
#: Spectrogram frame, s (10.7 ms at 48 kHz: 512 samples) and hop (a quarter frame).
FRAME_S = 512 / 48000


def _figure(width_in: float, height_in: float) -> Any:
    """A matplotlib Figure (not pyplot); ImportError naming the extra if matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("rtverb's pictures need matplotlib: pip install 'rtverb[plot]'") from None
    return Figure(figsize=(width_in, height_in), layout="constrained")


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as PNG atomically (temporary file in the same folder, then renamed).

    Raises:
        OutputError: missing or read-only folder, full disk (one line; no file left behind).
    """
    with atomic_output(path) as f:
        fig.savefig(f, format="png", dpi=110)
    return Path(path)


def _check_ir(ir: np.ndarray, name: str = "ir") -> np.ndarray:
    ir = np.asarray(ir, dtype=np.float64)
    if ir.ndim == 2 and ir.shape[0] == 1:
        ir = ir[0]
    if ir.ndim != 1 or ir.size == 0 or not np.all(np.isfinite(ir)) or not np.any(ir):
        raise ValueError(
            f"{name}: expected a non-silent, finite (taps,) impulse response, got shape "
            f"{ir.shape}; pick one channel"
        )
    return ir


def _band_label(band_hz: float) -> str:
    return f"{band_hz / 1000:g} kHz" if band_hz >= 1000 else f"{band_hz:g} Hz"


# ---- the room ------------------------------------------------------------------------------


def plot_room(room: Room, path: str | os.PathLike[str]) -> Path:
    """The shoebox in 3D with the source, the listener and the direct path; materials listed.

    A microphone pair's capsules are drawn with their axes (arrows), a spread source's two
    points beside the source.
    """
    fig = _figure(11.0, 6.0)
    import mpl_toolkits.mplot3d  # noqa: F401  (registers the 3d projection)

    grid = fig.add_gridspec(1, 2, width_ratios=(3, 1))
    ax = fig.add_subplot(grid[0], projection="3d")
    x, y, z = room.size_m
    corners = np.array([[i * x, j * y, k * z] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    for a in range(8):
        for b in range(a + 1, 8):
            if np.count_nonzero(corners[a] != corners[b]) == 1:  # an edge of the box
                ax.plot(*zip(corners[a], corners[b], strict=True), color="0.4", lw=1.0)
    ax.plot_surface(*np.meshgrid([0, x], [0, y]), np.zeros((2, 2)), color="tan", alpha=0.25)
    src, lst = np.array(room.source_position_m), np.array(room.listener_position_m)
    ax.plot(*zip(src, lst, strict=True), "--", color="0.3", lw=1.0)
    ax.scatter(*src, s=90, c="tab:red", marker="^", depthshade=False, label="source")
    ax.scatter(*lst, s=70, c="tab:blue", marker="o", depthshade=False, label="listener")
    for point, color in ((src, "tab:red"), (lst, "tab:blue")):
        ax.plot([point[0]] * 2, [point[1]] * 2, [0, point[2]], ":", color=color, lw=1.0)
    ax.text(*(src + lst) / 2, f" {room.distance_m:.2f} m", color="0.2", fontsize=9)
    if room.pair != "mono":
        arrow_m = 0.06 * max(x, y)
        for capsule, color in zip(room.capsules(), ("tab:green", "tab:purple"), strict=True):
            ax.scatter(*capsule.position_m, s=25, c=color, depthshade=False)
            ax.quiver(*capsule.position_m, *(arrow_m * np.array(capsule.axis)), color=color)
        if room.true_stereo:
            points = np.array(room.sources())
            ax.scatter(*points.T, s=40, c="tab:orange", marker="^", depthshade=False,
                       label="spread source")  # fmt: skip
    for name, where in (
        ("west", (0, y / 2, 0)),
        ("east", (x, y / 2, 0)),
        ("south", (x / 2, 0, 0)),
        ("north", (x / 2, y, 0)),
    ):
        ax.text(*where, name, color="0.45", fontsize=8, ha="center")
    ax.set_box_aspect((x, y, z))
    ax.set(xlabel="x (m): west → east", ylabel="y (m): south → north", zlabel="z (m)")
    ax.view_init(elev=22, azim=-58)
    ax.legend(loc="upper left")
    rt = room.sabine_rt60_s()
    fig.suptitle(
        f"{room.name}: {x:g} × {y:g} × {z:g} m, {room.volume_m3:.0f} m³, Sabine RT60 "
        f"{(rt[2] + rt[3]) / 2:.2f} s (500 Hz-1 kHz)"
    )
    absorption = room.absorption()
    lines = ["surface: material", "  (mean α 500 Hz-1 kHz)", ""]
    for i, surface in enumerate(("floor", "ceiling", "east", "west", "north", "south")):
        material = room.surfaces[surface]
        label = material if isinstance(material, str) else "coefficients"
        lines += [f"{surface}: {label}", f"  ({absorption[i, 2:4].mean():.2f})"]
    lines += ["", f"scattering: {room.scattering:g}", ""]
    if room.pair == "mono":
        lines += ["listener: one omni"]
    else:
        lines += [
            f"listener: {room.pair} pair",
            f"  {room.pair_spacing_m():g} m, ±{room.pair_angle_deg():g}°,",
            f"  facing {room.azimuth_deg:g}° (0 = east)",
            "  (green: left, purple: right)",
        ]
        if room.true_stereo:
            lines += [f"source: spread {room.spread_m:g} m"]
    side = fig.add_subplot(grid[1])
    side.axis("off")
    side.text(0, 0.5, "\n".join(lines), fontsize=8, family="monospace", va="center")
    return _save(fig, path)


# ---- one impulse response ------------------------------------------------------------------


def plot_ir(
    ir: np.ndarray,
    sample_rate_hz: float,
    path: str | os.PathLike[str],
    title: str = "",
    with_edc: bool = False,
) -> Path:
    """Waveform (linear, above) and spectrogram (dB, log frequency, below) of a (taps,) IR.

    ``with_edc`` adds a third panel: each octave band's energy decay curve (as `measure` fits).
    """
    from scipy import signal

    ir = _check_ir(ir)
    fs = float(sample_rate_hz)
    fig = _figure(9.0, 9.0 if with_edc else 6.0)
    rows = (1, 1.6, 1.4) if with_edc else (1, 1.6)
    grid = fig.add_gridspec(len(rows), 2, height_ratios=rows, width_ratios=(40, 1))
    wave = fig.add_subplot(grid[0, 0])
    spec = fig.add_subplot(grid[1, 0], sharex=wave)
    t = np.arange(len(ir)) / fs
    wave.plot(t, ir, lw=0.5, color="tab:blue")
    wave.set(ylabel="amplitude", title=title or f"{len(ir) / fs:.2f} s at {fs:g} Hz")
    wave.grid(alpha=0.3)
    frame = min(int(round(FRAME_S * fs)), len(ir))
    freqs, times, power = signal.spectrogram(
        ir, fs, window="hann", nperseg=frame, noverlap=frame - max(frame // 4, 1), mode="psd"
    )
    with np.errstate(divide="ignore"):
        level = 10 * np.log10(power / power.max())
    keep = freqs >= min(50.0, fs / 8)
    mesh = spec.pcolormesh(
        times, freqs[keep], level[keep], vmin=FLOOR_DB, vmax=0, cmap="magma", shading="auto"
    )
    spec.set(yscale="log", ylabel="frequency (Hz)", xlabel="time (s)", xlim=(0, t[-1]))
    fig.colorbar(mesh, cax=fig.add_subplot(grid[1, 1]), label="dB re max")
    if with_edc:
        decays = fig.add_subplot(grid[2, 0])
        for band, edc in zip(BANDS_HZ, band_decays_db(ir, fs), strict=True):
            if edc is not None:
                shown = edc >= FLOOR_DB
                decays.plot(np.arange(len(edc))[shown] / fs, edc[shown], lw=1,
                            label=_band_label(band))  # fmt: skip
        decays.set(xlabel="time after onset (s)", ylabel="energy decay (dB)", ylim=(-70, 2))
        decays.legend(fontsize=7, ncol=4, loc="upper right")
        decays.grid(alpha=0.3)
    return _save(fig, path)


# ---- two impulse responses' decays -----------------------------------------------------------


def plot_edc_overlay(
    ir_a: np.ndarray,
    ir_b: np.ndarray,
    sample_rate_hz: float,
    path: str | os.PathLike[str],
    labels: Sequence[str] = ("prediction", "truth"),
    sample_rate_b_hz: float | None = None,
    distance_m: float | None = None,
    delay_samples: int = 0,
) -> Path:
    """Energy decay curves of two IRs per octave band (one panel each) and broadband, overlaid.

    Curves start at each IR's onset (geometric with ``distance_m``, else detected) and have
    the noise floor removed, as `acoustics.measure` fits them; each panel gives both T30s.
    ``sample_rate_b_hz`` is ``ir_b``'s rate when it differs.
    """
    if len(labels) != 2:
        raise ValueError(f"labels: give two names, one per IR, got {list(labels)}")
    irs = (_check_ir(ir_a, "ir_a"), _check_ir(ir_b, "ir_b"))
    rates = (float(sample_rate_hz), float(sample_rate_b_hz or sample_rate_hz))
    curves = []
    for ir, fs in zip(irs, rates, strict=True):
        bands = band_decays_db(ir, fs, distance_m, delay_samples)
        onset = min(onset_index(ir, fs, distance_m, delay_samples), len(ir) - 1)
        curves.append([*bands, energy_decay_db(ir[onset:], fs)])
    names = [_band_label(b) for b in BANDS_HZ] + ["broadband"]
    fig = _figure(12.0, 6.0)
    axes = fig.subplots(2, 4, sharey=True).ravel()
    styles = ({"color": "tab:orange", "lw": 1.4}, {"color": "0.15", "lw": 1.0, "ls": "--"})
    end_s = 0.0
    for ax, name, *pair in zip(axes, names, *curves, strict=True):
        t30 = []
        for edc, fs, label, style in zip(pair, rates, labels, styles, strict=True):
            if edc is None:
                t30.append("-")
                continue
            shown = edc >= FLOOR_DB
            ax.plot(np.arange(len(edc))[shown] / fs, edc[shown], label=label, **style)
            below = np.nonzero(edc <= -65.0)[0]
            end_s = max(end_s, (below[0] if len(below) else len(edc)) / fs)
            value = decay_time_s(edc, fs, -5.0, -35.0)
            t30.append("-" if np.isnan(value) else f"{value:.2f}")
        ax.set_title(f"{name}   T30 {t30[0]} / {t30[1]} s", fontsize=9)
        ax.axhspan(-35, -5, color="0.9", zorder=0)  # the T30 fit range
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.set_xlim(0, end_s * 1.05)
        ax.set_ylim(-70, 2)
    for ax in axes[4:]:
        ax.set_xlabel("time after onset (s)")
    for ax in axes[::4]:
        ax.set_ylabel("energy decay (dB)")
    axes[0].legend(loc="upper right", fontsize=8)
    fig.suptitle(f"Energy decay curves: {labels[0]} vs {labels[1]} (shaded: T30 fit range)")
    return _save(fig, path)
