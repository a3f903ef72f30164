"""rtverb.analysis.plot and `rtverb plot`: pictures hold what they claim, files are whole."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.image import imread  # noqa: E402
from pedalboard.io import AudioFile  # noqa: E402

from rtverb import cli
from rtverb.analysis import plot  # noqa: E402
from rtverb.analysis.acoustics import BANDS_HZ, measure  # noqa: E402
from rtverb.room.presets import load_preset  # noqa: E402

FS = 48000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def decay(t60_s: float, seed: int = 0, length_s: float = 1.0) -> np.ndarray:
    """Exponentially decaying noise after 5 ms of silence."""
    t = np.arange(int(length_s * FS)) / FS
    noise = np.random.default_rng(seed).standard_normal(len(t)) * 10 ** (-3 * t / t60_s)
    return np.concatenate([np.zeros(FS // 200), 0.1 * noise]).astype(np.float32)


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures the plot functions save, to inspect what they drew."""
    saved: list[Any] = []
    real_save = plot._save

    def keep(fig: Any, path: Any) -> Path:
        saved.append(fig)
        return real_save(fig, path)

    monkeypatch.setattr(plot, "_save", keep)
    return saved


def assert_picture(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    pixels = imread(path)
    assert pixels.shape[0] > 400 and pixels.shape[1] > 700
    assert pixels[..., :3].std() > 0.05  # not a blank page


def test_room_picture_shows_the_room_source_and_listener(tmp_path: Path, figures: list) -> None:
    room = load_preset("studio_live_room")
    path = plot.plot_room(room, tmp_path / "room.png")
    assert_picture(path)
    fig = figures[0]
    assert room.name in fig.get_suptitle() and "7.5 × 5.8 × 3.2 m" in fig.get_suptitle()
    ax = fig.axes[0]
    points = {
        c.get_label(): np.array(c._offsets3d).ravel()
        for c in ax.collections[1:]
        if hasattr(c, "_offsets3d")  # not the capsules' axes (arrows)
    }
    np.testing.assert_allclose(points["source"], room.source_position_m)
    np.testing.assert_allclose(points["listener"], room.listener_position_m)
    np.testing.assert_allclose(
        ax.get_box_aspect() / ax.get_box_aspect()[0], np.array(room.size_m) / 7.5
    )
    text = fig.axes[1].texts[0].get_text()
    assert all(f"{s}: " in text for s in ("floor", "ceiling", "east", "west", "north", "south"))


def test_ir_picture_has_waveform_and_spectrogram(tmp_path: Path, figures: list) -> None:
    ir = decay(0.5)
    assert_picture(plot.plot_ir(ir, FS, tmp_path / "ir.png", title="test IR"))
    wave, spec, colorbar = figures[0].axes
    np.testing.assert_array_equal(wave.lines[0].get_ydata(), ir)
    assert wave.get_title() == "test IR"
    assert spec.get_yscale() == "log" and spec.get_xlim()[1] == pytest.approx(
        len(ir) / FS, rel=1e-3
    )
    assert colorbar.get_ylabel() == "dB re max"


def test_edc_overlay_has_a_panel_per_band_with_both_t30s(tmp_path: Path, figures: list) -> None:
    a, b = decay(0.4, seed=1), decay(0.9, seed=2)
    path = plot.plot_edc_overlay(a, b, FS, tmp_path / "edc.png", labels=("pred", "truth"))
    assert_picture(path)
    axes = figures[0].axes
    assert len(axes) == len(BANDS_HZ) + 1
    t30_a, t30_b = measure(a, FS).T30_s, measure(b, FS).T30_s
    for ax, band, ta, tb in zip(axes, BANDS_HZ, t30_a, t30_b, strict=False):
        assert ax.get_title().startswith(
            ("125 Hz", "250 Hz", "500 Hz", "1 kHz", "2 kHz", "4 kHz", "8 kHz")
        )
        assert ax.get_title().endswith(f"T30 {ta:.2f} / {tb:.2f} s"), (band, ax.get_title())
        assert [line.get_label() for line in ax.lines] == ["pred", "truth"]
    assert axes[-1].get_title().startswith("broadband")


def test_edc_overlay_accepts_two_sample_rates(tmp_path: Path, figures: list) -> None:
    a = decay(0.5)
    plot.plot_edc_overlay(a, a[::3], FS, tmp_path / "edc.png", sample_rate_b_hz=FS / 3)
    title = figures[0].axes[3].get_title()  # 1 kHz: both rates resolve it
    t30 = title.split("T30 ")[1].rstrip(" s").split(" / ")
    assert float(t30[0]) == pytest.approx(float(t30[1]), rel=0.05)
    assert figures[0].axes[6].get_title().endswith("/ - s")  # 8 kHz: above 16 kHz's Nyquist


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: plot.plot_ir(np.zeros((2, 100)), FS, p), "pick one channel"),
        (lambda p: plot.plot_ir(np.zeros(100), FS, p), "non-silent"),
        (lambda p: plot.plot_ir(np.array([1.0, np.nan]), FS, p), "finite"),
        (
            lambda p: plot.plot_edc_overlay(decay(0.3), decay(0.3), FS, p, labels=("a",)),
            "two names",
        ),
    ],
)
def test_bad_arrays_are_refused(tmp_path: Path, call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_save_leaves_the_old_picture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ir.png"
    path.write_bytes(b"old picture")
    from matplotlib.figure import Figure

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plot.plot_ir(decay(0.3), FS, path)
    assert path.read_bytes() == b"old picture"
    assert [p.name for p in tmp_path.iterdir()] == ["ir.png"]
    with pytest.raises(OSError, match="does not exist; create it first"):
        plot.plot_ir(decay(0.3), FS, tmp_path / "absent" / "ir.png")


def test_missing_matplotlib_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'rtverb\[plot\]'"):
        plot.plot_ir(decay(0.3), FS, tmp_path / "ir.png")


# ---- the command ---------------------------------------------------------------------------


def wav(path: Path, audio: np.ndarray) -> Path:
    audio = np.atleast_2d(audio)
    with AudioFile(str(path), "w", FS, audio.shape[0], bit_depth=32) as f:
        f.write(audio)
    return path


def test_plot_command_draws_all_three(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = wav(tmp_path / "a.wav", decay(0.4)), wav(tmp_path / "b.wav", np.stack([decay(0.6)] * 2))
    for args in (
        ["room", "studio_live_room", "-o", str(tmp_path / "room.png")],
        ["ir", str(b), "--channel", "2", "-o", str(tmp_path / "ir.png")],
        ["edc", str(a), str(b), "--labels", "pred,truth", "-o", str(tmp_path / "edc.png")],
    ):
        assert cli.main(["plot", *args]) == 0, capsys.readouterr().err
        assert f"wrote {args[-1]}" in capsys.readouterr().out
        assert_picture(Path(args[-1]))


def test_plot_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = wav(tmp_path / "good.wav", decay(0.4))
    silent = wav(tmp_path / "silent.wav", np.zeros(FS, dtype=np.float32))
    existing = tmp_path / "exists.png"
    existing.write_bytes(b"keep me")
    out = str(tmp_path / "x.png")
    for args, message in [
        (["ir", str(good), "-o", str(tmp_path / "x.wav")], "pictures are PNG files"),
        (["ir", str(good), "-o", str(existing)], "already exists; pass --overwrite"),
        (["ir", str(silent), "-o", out], "silent"),
        (["ir", str(good), "--channel", "2", "-o", out], "--channel 2 does not exist"),
        (["ir", str(tmp_path / "absent.wav"), "-o", out], "no such file"),
        (["edc", str(good), str(good), "--labels", "one", "-o", out], "--labels: give two names"),
        (["room", "no_such_room", "-o", out], "no_such_room"),
    ]:
        assert cli.main(["plot", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("rtverb plot: error: ") and message in err, (message, err)
    assert existing.read_bytes() == b"keep me"
    assert not Path(out).exists()


def test_room_picture_draws_the_pairs_capsules_and_axes(tmp_path: Path, figures: list) -> None:
    room = load_preset("concert_hall")  # an ORTF pair and a spread source
    assert_picture(plot.plot_room(room, tmp_path / "room.png"))
    ax = figures[0].axes[0]
    drawn = [np.array(c._offsets3d).T for c in ax.collections[1:] if hasattr(c, "_offsets3d")]
    for capsule in room.capsules():
        assert any(np.allclose(p, capsule.position_m) for points in drawn for p in points)
    spread = [c for c in ax.collections if c.get_label() == "spread source"]
    np.testing.assert_allclose(np.array(spread[0]._offsets3d).T, room.sources())
    arrows = [c for c in ax.collections if type(c).__name__ == "Line3DCollection"]
    assert len(arrows) == 2  # one axis per capsule
    assert "ortf pair" in figures[0].axes[1].texts[0].get_text()
