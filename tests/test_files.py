"""Bad files and failing disks (issue 14): every command that writes says why in one line,
exits non-zero and leaves no partial file; inputs that lie about their length are refused."""

from __future__ import annotations

import errno
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pedalboard.io import AudioFile

from rtverb import cli, files
from rtverb.offline import audio_io
from rtverb.offline.audio_io import AudioFileError, check_input
from rtverb.offline.render import RenderError, render_array

RATE = 48000
#: pedalboard.io's whole message when a write fails for lack of space (0.9.26).
PEDALBOARD_FULL = "Unable to write data to audio file."


def write_wav(path: Path, frames: int, channels: int = 1) -> Path:
    with AudioFile(str(path), "w", RATE, channels, bit_depth=16) as f:
        f.write(np.full((channels, frames), 0.1, np.float32))
    return path


def lying_wav(path: Path, declared_bytes: int = 2_000_000_000) -> Path:
    """A 2 kB WAV whose header declares 2 GB of data (RIFF and data chunk sizes patched)."""
    data = bytearray(write_wav(path, 1000).read_bytes())
    at = data.find(b"data")
    struct.pack_into("<I", data, at + 4, declared_bytes)
    struct.pack_into("<I", data, 4, declared_bytes + at)
    path.write_bytes(bytes(data))
    return path


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def one_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"rtverb {command}: error: "), err
    return err


# ---- inputs -------------------------------------------------------------------------------


def test_a_wav_declaring_more_data_than_it_holds_is_an_error_naming_it(tmp_path, capsys):
    bad = lying_wav(tmp_path / "in.wav")
    with pytest.raises(AudioFileError, match=r"in\.wav: its header declares 1000000000 frames"):
        check_input(bad)
    assert cli.main(["render", str(bad), str(tmp_path / "out.wav"), "--quiet"]) != 0
    assert "in.wav: its header declares" in one_error_line(capsys, "render")
    out = tmp_path / "out"
    out.mkdir()
    assert cli.main(["render", str(tmp_path), str(out), "--quiet"]) != 0  # folder mode
    assert listing(out) == []


def test_an_honest_wav_passes(tmp_path):
    assert check_input(write_wav(tmp_path / "in.wav", 1000, 2)).frames == 1000


def test_an_ir_with_other_channels_than_the_output_says_so_in_command_line_terms():
    with pytest.raises(RenderError, match="the IR has 3 channels but the output has 2.*--channels"):
        render_array(np.zeros((2, 100), np.float32), RATE, np.zeros((3, 64), np.float32))


# ---- outputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error, fragment",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "the disk filled up"),
        (OSError(errno.EROFS, "Read-only file system"), "read-only or no permission"),
        (PermissionError(errno.EACCES, "Permission denied"), "read-only or no permission"),
        (OSError(errno.EIO, "Input/output error"), "could not write (Input/output error)"),
    ],
)
def test_write_failures_are_one_line_naming_the_file(tmp_path, error, fragment):
    text = files.write_failure(tmp_path / "x.wav", error)
    assert text.startswith(f"{tmp_path / 'x.wav'}: ") and fragment in text
    assert "\n" not in text


def test_a_writer_error_on_a_nearly_full_disk_is_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, 0))
    text = files.write_failure(tmp_path / "x.wav", RuntimeError(PEDALBOARD_FULL))
    assert "the disk filled up" in text


@pytest.fixture
def read_only(monkeypatch) -> None:
    """Every temporary file fails as in a read-only folder (root ignores chmod)."""

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)


@pytest.fixture
def full_disk(monkeypatch) -> None:
    """pedalboard's writer fails as it does on a full disk, and the disk shows no space."""
    real_open = audio_io._open_writer

    class Full:
        def __init__(self, inner):
            self.inner = inner

        def write(self, block):
            raise RuntimeError(PEDALBOARD_FULL)

        def close(self):
            self.inner.close()

    monkeypatch.setattr(audio_io, "_open_writer", lambda *a: Full(real_open(*a)))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, 0))


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    wav = write_wav(tmp_path / "in.wav", 4800)
    return {
        "render": ["render", str(wav), str(tmp_path / "out" / "o.wav"), "--quiet"],
        "rir": ["rir", "vocal_booth", "-o", str(tmp_path / "out" / "o.wav")],
        "plot": ["plot", "room", "vocal_booth", "-o", str(tmp_path / "out" / "o.png")],
    }


@pytest.mark.parametrize("command", ["render", "rir", "plot"])
@pytest.mark.parametrize("failure", ["read_only", "missing", "full_disk"])
def test_every_writing_command_fails_in_one_line_and_writes_nothing(
    command, failure, tmp_path, capsys, request
):
    if failure == "full_disk" and command == "plot":
        pytest.skip("plot writes PNG through matplotlib: covered by the tmpfs test below")
    argv = _commands(tmp_path)[command]
    if failure != "missing":
        (tmp_path / "out").mkdir()
        request.getfixturevalue(failure)
    assert cli.main(argv) != 0
    line = one_error_line(capsys, command)
    expected = {
        "read_only": "read-only or no permission",
        "missing": "does not exist; create it first",
        "full_disk": "the disk filled up while writing; nothing was written",
    }[failure]
    assert expected in line
    if failure != "missing":
        assert listing(tmp_path / "out") == []


def test_bench_plot_into_a_missing_folder_fails_before_measuring(tmp_path, capsys):
    argv = ["bench", "--sweep", "--plot", str(tmp_path / "no" / "b.png"), "--seconds", "0.1"]
    assert cli.main(argv) != 0
    assert "does not exist" in one_error_line(capsys, "bench")


def test_live_record_into_a_read_only_folder_fails_in_one_line(tmp_path, read_only, capsys):
    argv = ["live", "--no-osc", "--synth", "analytic", "--record", str(tmp_path / "r.wav")]
    assert cli.main(argv) != 0
    err = capsys.readouterr().err
    assert "--record:" in err and "read-only or no permission" in err and "Traceback" not in err


def test_rir_plot_keeps_an_existing_picture_without_overwrite(tmp_path, capsys):
    picture = tmp_path / "ir.png"
    picture.write_bytes(b"the user's picture")
    argv = ["rir", "vocal_booth", "-o", str(tmp_path / "ir.wav"), "--plot"]
    assert cli.main(argv) != 0
    assert "ir.png: already exists; pass --overwrite" in one_error_line(capsys, "rir")
    assert picture.read_bytes() == b"the user's picture" and listing(tmp_path) == ["ir.png"]
    assert cli.main([*argv, "--overwrite"]) == 0
    assert picture.read_bytes().startswith(b"\x89PNG")


def test_live_summary_json_into_a_missing_folder_fails_before_running(tmp_path, capsys):
    summary = tmp_path / "no" / "s.json"
    argv = ["live", "--no-osc", "--synth", "analytic", "--seconds", "0.5", "--summary-json"]
    assert cli.main([*argv, str(summary)]) != 0
    err = capsys.readouterr().err
    assert "--summary-json" in err and "does not exist; create it first" in err, err
    assert "Traceback" not in err


def test_live_summary_json_on_a_full_disk_is_one_line_and_no_file(tmp_path, monkeypatch):
    from rtverb.live.report import write_json_atomic

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", no_space)
    with pytest.raises(files.OutputError, match="s.json: the disk filled up"):
        write_json_atomic(tmp_path / "s.json", {"seconds": 1.0})
    assert listing(tmp_path) == []


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 64 kB tmpfs: a disk that fills up (needs root and mount; skipped otherwise)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("command", ["render", "rir", "plot"])
def test_a_really_full_disk(command, tiny_tmpfs, tmp_path, capsys):
    wav = write_wav(tmp_path / "in.wav", 2 * RATE, 2)  # 384 kB: does not fit in 64 kB
    (tiny_tmpfs / "fill").write_bytes(bytes(40 * 1024))
    argv = {
        "render": ["render", str(wav), str(tiny_tmpfs / "o.wav"), "--quiet"],
        "rir": ["rir", "stone_church", "-o", str(tiny_tmpfs / "o.wav")],
        "plot": ["plot", "room", "stone_church", "-o", str(tiny_tmpfs / "o.png")],
    }[command]
    assert cli.main(argv) != 0
    assert "the disk filled up" in one_error_line(capsys, command)
    assert listing(tiny_tmpfs) == ["fill"]


class _FakeJack:
    """A stand-in for the JACK server process `live_storm` starts."""

    def send_signal(self, sig: int) -> None:
        pass

    def wait(self, timeout: float) -> int:
        return 0


def test_live_storm_json_is_atomic_and_fails_in_one_line(tmp_path, monkeypatch, capsys):
    from rtverb.bench import live_storm

    counts = ["xruns", "late_callbacks", "trivial_xruns", "callback_exceptions", "changes_sent"]
    figures: dict = dict.fromkeys(counts, 0)
    figures |= dict.fromkeys(["worst_callback_ms", "block_ms", "get_p99_ms"], 1.0)
    figures |= {"get_p50_ms": float("nan"), "knob_to_ear_p50_ms": None}
    monkeypatch.setattr(live_storm, "_jack", lambda name: (_FakeJack(), {}))
    monkeypatch.setattr(live_storm, "run_scenario", lambda *a: dict(figures))
    with pytest.raises(SystemExit):  # before any run
        live_storm.main(["--seconds", "1", "--json", str(tmp_path / "no" / "s.json")])
    assert "the folder does not exist; create it first" in capsys.readouterr().err

    assert live_storm.main(["--seconds", "1", "--json", str(tmp_path / "s.json")]) == 0
    assert '"get_p50_ms": null' in (tmp_path / "s.json").read_text()  # JSON has no NaN

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", no_space)
    assert live_storm.main(["--seconds", "1", "--json", str(tmp_path / "t.json")]) == 2
    err = capsys.readouterr().err
    assert "t.json: the disk filled up" in err and "Traceback" not in err
    assert listing(tmp_path) == ["s.json"]


def test_mp3_for_more_than_two_channels_names_the_formats_that_take_them(tmp_path, capsys):
    with pytest.raises(ValueError, match="Unable to create MP3 writer"):  # pedalboard's limit
        AudioFile(str(tmp_path / "probe.mp3"), "w", RATE, 3)
    assert audio_io.MOST_CHANNELS[".mp3"] == 2
    with pytest.raises(AudioFileError) as e:
        audio_io.SafeWriter(tmp_path / "ir.mp3", RATE, 4, 32)
    assert str(e.value) == (
        f"{tmp_path / 'ir.mp3'}: .mp3 holds at most 2 channels, this has 4; "
        "write .aiff, .flac, .ogg or .wav (up to 8 channels)"
    )
    assert listing(tmp_path) == []
    audio_io.SafeWriter(tmp_path / "ir.mp3", RATE, 2, 32).__exit__(None)  # two channels fit
    assert listing(tmp_path) == ["ir.mp3"]
