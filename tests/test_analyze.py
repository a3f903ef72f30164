"""`rtverb analyze`: the JSON and table outputs, multi-channel files, and bad files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from pedalboard.io import AudioFile

from rtverb import cli
from rtverb.analysis.acoustics import BANDS_HZ, SPEED_OF_SOUND_M_S
from rtverb.analysis.ir_file import AnalyzeError, read_ir
from rtverb.cli.analyze import JSON_KEYS

FS = 48000
#: The issue's T30 accuracy on a synthetic decay of known T60.
T30_TOLERANCE = 0.02
#: Float-to-24-bit and back; what a file round trip may change in a measured level, dB.
QUANTIZATION_DB = 0.01


def decay(t60_s: float, length_s: float = 1.0, fs: int = FS) -> np.ndarray:
    """One sine per octave band below Nyquist, decaying 60 dB in ``t60_s``; 5 ms of silence."""
    t = np.arange(int(length_s * fs)) / fs
    tones = sum(np.sin(2 * np.pi * f * t + k) for k, f in enumerate(BANDS_HZ) if f < fs / 2.5)
    x = 0.1 * tones * 10 ** (-3 * t / t60_s)
    return np.concatenate([np.zeros(fs // 200), x]).astype(np.float32)


def write(path: Path, audio: np.ndarray, fs: int = FS, **kwargs: int) -> Path:
    audio = np.atleast_2d(audio).astype(np.float32)
    with AudioFile(str(path), "w", fs, audio.shape[0], **kwargs) as f:
        f.write(audio)
    return path


def analyze(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = cli.main(["analyze", *args])
    out, err = capsys.readouterr()
    return rc, out, err


# ---- output --------------------------------------------------------------------------------


def test_json_has_exactly_the_issue_keys_and_measures_the_decay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "ir.wav", decay(0.6), bit_depth=32)
    rc, out, err = analyze(capsys, str(path), "--json")
    assert rc == 0 and err == ""
    data = json.loads(out)
    assert list(data) == list(JSON_KEYS)
    assert data["bands_hz"] == list(BANDS_HZ)
    np.testing.assert_array_less(np.abs(np.array(data["T30_s"]) / 0.6 - 1), T30_TOLERANCE)
    assert all(isinstance(data[k], float) for k in ("C50_broadband_db", "DRR_db"))


def test_json_writes_null_where_not_measurable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "ir16k.flac", decay(0.6, fs=16000), fs=16000, bit_depth=24)
    rc, out, _ = analyze(capsys, str(path), "--json")
    assert rc == 0
    data = json.loads(out)  # strict JSON: no NaN tokens
    assert data["T30_s"][-1] is None  # the 8 kHz band is above a 16 kHz file's Nyquist
    assert None not in data["T30_s"][:-1]


def test_table_has_bands_as_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "ir.wav", decay(0.6))
    rc, out, _ = analyze(capsys, str(path))
    assert rc == 0
    header = next(line for line in out.splitlines() if "125 Hz" in line)
    assert re.findall(r"\d+ k?Hz", header) == [
        "125 Hz", "250 Hz", "500 Hz", "1 kHz", "2 kHz", "4 kHz", "8 kHz"
    ]  # fmt: skip
    t30_row = next(line for line in out.splitlines() if "T30 (s)" in line)
    assert re.findall(r"\d\.\d\d", t30_row) == ["0.60"] * 7
    for label in ("T20 (s)", "EDT (s)", "C50 (dB)", "C80 (dB)", "D50", "broadband: C50"):
        assert label in out


# ---- multi-channel files -------------------------------------------------------------------


def stereo(tmp_path: Path) -> Path:
    return write(tmp_path / "stereo.wav", np.stack([decay(0.4), decay(1.2)]), bit_depth=32)


def test_every_channel_is_analyzed_by_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = stereo(tmp_path)
    rc, out, _ = analyze(capsys, str(path), "--json")
    assert rc == 0
    data = json.loads(out)
    assert [d["channel"] for d in data] == [1, 2]
    # a 2-channel file is a microphone pair: each channel also carries the pair's coherence
    assert all(list(d)[1:] == [*JSON_KEYS, "coherence"] for d in data)
    assert np.median(data[0]["T30_s"]) == pytest.approx(0.4, rel=T30_TOLERANCE)
    assert np.median(data[1]["T30_s"]) == pytest.approx(1.2, rel=T30_TOLERANCE)
    rc, out, _ = analyze(capsys, str(path))
    assert out.count(f"{path} channel 1:") == 1 and out.count(f"{path} channel 2:") == 1


def test_true_stereo_coherence_rows_name_the_source_in_rir_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps a row label in a narrow terminal
    paths = np.stack([decay(0.4), decay(0.5), decay(0.6), decay(0.7)])  # LL, LR, RL, RR
    rc, out, _ = analyze(capsys, str(write(tmp_path / "ts.wav", paths, bit_depth=32)))
    assert rc == 0
    rows = [line for line in out.splitlines() if "source" in line]
    assert [row.split("│")[1].strip() for row in rows] == [
        "left source LL-LR (1-2)",
        "right source RL-RR (3-4)",
    ]


def test_channel_picks_one_and_gives_one_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = stereo(tmp_path)
    _, out, _ = analyze(capsys, str(path), "--json")
    both = json.loads(out)
    rc, out, _ = analyze(capsys, str(path), "--json", "--channel", "2")
    assert rc == 0
    assert json.loads(out) == {
        k: v for k, v in both[1].items() if k not in ("channel", "coherence")
    }


# ---- the onset -----------------------------------------------------------------------------


def test_distance_gives_the_geometric_onset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Direct sound at 2 m, a reflection of half its amplitude 20 ms later: DRR = 6.02 dB."""
    ir = np.zeros(FS // 2, dtype=np.float32)
    direct = int(round(2.0 / SPEED_OF_SOUND_M_S * FS))
    ir[direct], ir[direct + FS // 50] = 0.5, 0.25
    ir[direct + FS // 50 :] += (0.01 * decay(0.3))[: len(ir) - direct - FS // 50]
    path = write(tmp_path / "ir.wav", ir, bit_depth=32)
    _, out, _ = analyze(capsys, str(path), "--json")
    detected = json.loads(out)["DRR_db"]
    rc, out, err = analyze(capsys, str(path), "--json", "--distance-m", "2")
    assert rc == 0 and err == ""
    assert json.loads(out)["DRR_db"] == pytest.approx(detected, abs=QUANTIZATION_DB)
    late = np.sum(np.square(ir[direct + 121 :], dtype=np.float64))  # after the 2.5 ms window
    assert detected == pytest.approx(10 * np.log10(0.25 / late), abs=QUANTIZATION_DB)
    # A distance that contradicts the file is used, with a warning that says how to fix it.
    rc, out, err = analyze(capsys, str(path), "--json", "--distance-m", "6")
    assert rc == 0 and "warning" in err and "--delay-samples" in err
    assert json.loads(out)["DRR_db"] != pytest.approx(detected, abs=1.0)


# ---- bad input: a clear error on stderr, exit status 2, nothing on stdout -----------------


def bad_files(tmp_path: Path) -> list[tuple[list[str], str]]:
    (tmp_path / "folder.wav").mkdir()
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF" + bytes(range(256)) * 4)
    silent = write(tmp_path / "silent.wav", np.zeros(FS, dtype=np.float32))
    half = write(tmp_path / "half.wav", np.stack([decay(0.5), np.zeros(FS + FS // 200)]))
    nan = write(tmp_path / "nan.wav", np.full(100, np.nan, dtype=np.float32), bit_depth=32)
    good = write(tmp_path / "good.wav", decay(0.5))
    no_frames = write(tmp_path / "no_frames.wav", np.zeros((2, 0), dtype=np.float32))
    return [
        ([str(tmp_path / "absent.wav")], "absent.wav: no such file"),
        ([str(tmp_path / "folder.wav")], "not a file"),
        ([str(tmp_path / "empty.wav")], "the file is empty (0 bytes)"),
        ([str(tmp_path / "notes.txt")], "unsupported file type '.txt'; rtverb reads"),
        ([str(tmp_path / "corrupt.wav")], "not a readable audio file"),
        ([str(no_frames)], "no_frames.wav: the file holds no audio frames"),
        ([str(silent)], "silent.wav: is silent (all samples are zero)"),
        ([str(half)], "half.wav channel 2: is silent (all samples are zero); pick another"),
        ([str(nan)], "contains NaN or Inf"),
        ([str(good), "--channel", "2"], "--channel 2 does not exist; the file has 1 channel(s)"),
        ([str(good), "--channel", "0"], "numbered 1-1"),
        ([str(good), "--distance-m", "-1"], "--distance-m must be a positive distance in metres"),
        ([str(good), "--distance-m", "500"], "after the end of the file"),
        ([str(good), "--delay-samples", "-3"], "--delay-samples must be 0 or more"),
    ]  # fmt: skip


def test_bad_files_get_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in bad_files(tmp_path):
        rc, out, err = analyze(capsys, *args, "--json")
        assert rc == 2, args
        assert out == "", args  # no half-printed result
        assert err.startswith("rtverb analyze: error: "), err
        assert message in err, (message, err)


def test_a_silent_channel_can_be_skipped_with_channel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "half.wav", np.stack([decay(0.5), np.zeros(FS + FS // 200)]))
    rc, out, _ = analyze(capsys, str(path), "--json", "--channel", "1")
    assert rc == 0 and json.loads(out)["T30_s"][3] == pytest.approx(0.5, rel=T30_TOLERANCE)


def test_read_ir_returns_channels_by_frames(tmp_path: Path) -> None:
    path = stereo(tmp_path)
    ir, fs = read_ir(path)
    assert ir.shape == (2, len(decay(0.4))) and ir.dtype == np.float32 and fs == FS
    with pytest.raises(AnalyzeError, match="no such file"):
        read_ir(tmp_path / "absent.wav")
