"""Offline rendering: oracle against fftconvolve, block-size independence, tails, chains,
file safety and every kind of bad input."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import numpy as np
import pedalboard
import pytest
from conftest import convolve_reference, decaying_noise
from pedalboard.io import AudioFile

from rtverb.offline import audio_io, render
from rtverb.offline.audio_io import AudioFileError, check_input
from rtverb.offline.render import RenderError, render_array, render_file

RATE_HZ = 48000
SEED = 1234
#: float32 partitioned FFT convolution vs float64 fftconvolve, relative to the output peak.
ORACLE_TOLERANCE = 1e-5
#: Different engine block sizes round differently in float32; the issue's target.
BLOCK_SIZE_TOLERANCE = 1e-6


def _db(x: float) -> float:
    return 10.0 ** (x / 20.0)


def decaying_noise_ir(seconds: float, rt60_s: float = 0.6, seed: int = SEED) -> np.ndarray:
    """A stand-in room IR: a unit direct sound and an exponentially decaying noise tail."""
    taps = round(seconds * RATE_HZ)
    return decaying_noise(
        taps, rt60_s=rt60_s, sample_rate_hz=RATE_HZ, seed=seed, gain=0.3, direct=True
    )


def noise(channels: int, seconds: float, seed: int = SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.25 * rng.standard_normal((channels, round(seconds * RATE_HZ)))).astype(np.float32)


def reference(audio: np.ndarray, ir: np.ndarray, wet_db: float, dry_db: float) -> np.ndarray:
    return convolve_reference(audio, ir, wet_gain=_db(wet_db), dry_gain=_db(dry_db), full=True)


def test_matches_fftconvolve_within_1e5_of_peak() -> None:
    audio, ir = noise(2, 3.0), decaying_noise_ir(1.0)
    out = render_array(audio, RATE_HZ, ir, wet_db=-3.0, dry_db=0.0, tail_s=1.0)
    ref = reference(audio, ir, -3.0, 0.0)
    assert out.shape == (2, audio.shape[1] + RATE_HZ)
    ref = np.pad(ref, ((0, 0), (0, out.shape[1] - ref.shape[1])))
    np.testing.assert_allclose(out, ref, rtol=0, atol=ORACLE_TOLERANCE * np.abs(ref).max())


@pytest.mark.parametrize("block_size", [256, 1024, 8192])
def test_block_sizes_give_the_same_output(block_size: int) -> None:
    audio, ir = noise(2, 2.0), decaying_noise_ir(0.5)
    baseline = render_array(audio, RATE_HZ, ir, block_size=4096)
    out = render_array(audio, RATE_HZ, ir, block_size=block_size)
    assert out.shape == baseline.shape
    np.testing.assert_allclose(
        out, baseline, rtol=0, atol=BLOCK_SIZE_TOLERANCE * np.abs(baseline).max()
    )


def test_input_chunking_does_not_change_the_output() -> None:
    audio, ir = noise(1, 1.0), decaying_noise_ir(0.3)
    whole = render_array(audio, RATE_HZ, ir, block_size=512)
    cuts = [0, 1, 4, 700, 701, 9000, audio.shape[1]]
    chunks = [audio[:, a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    parts = np.concatenate(list(render.stream(chunks, ir, RATE_HZ, channels=1, block_size=512)), 1)
    np.testing.assert_array_equal(parts, whole)


def test_automatic_tail_stops_below_minus_90_db_of_peak() -> None:
    audio, ir = noise(1, 0.5), decaying_noise_ir(2.0, rt60_s=0.4)
    out = render_array(audio, RATE_HZ, ir, wet_db=0.0, dry_db=0.0)
    ref = reference(audio, ir, 0.0, 0.0)
    threshold = np.abs(ref).max() * _db(render.TAIL_THRESHOLD_DB)
    last_loud = np.flatnonzero(np.abs(ref).max(axis=0) > threshold)[-1]
    # The last loud frame of the reference is within a frame or two of where the render ends.
    assert abs(out.shape[1] - (last_loud + 1)) <= 2
    assert out.shape[1] < ref.shape[1]  # the quiet end of the IR was trimmed
    assert np.abs(out[:, -1]).max() > threshold * 0.5


def test_fixed_tail_and_predelay() -> None:
    audio, ir = noise(1, 0.5), decaying_noise_ir(0.2)
    out = render_array(audio, RATE_HZ, ir, tail_s=0.75, predelay_ms=20.0, wet_db=0.0, dry_db=0.0)
    assert out.shape == (1, audio.shape[1] + round(0.75 * RATE_HZ))
    delayed = np.concatenate([np.zeros(round(0.02 * RATE_HZ), np.float32), ir])
    ref = reference(audio, delayed, 0.0, 0.0)
    ref = np.pad(ref, ((0, 0), (0, out.shape[1] - ref.shape[1])))
    np.testing.assert_allclose(out, ref, atol=ORACLE_TOLERANCE * np.abs(ref).max())


@pytest.mark.parametrize("block_size", [256, 8192])
def test_zero_tail_gives_exactly_the_input_length(block_size: int) -> None:
    audio = noise(2, 0.3)
    parts = list(render.stream([audio], decaying_noise_ir(0.2), RATE_HZ, channels=2, tail_s=0.0,
                                block_size=block_size))  # fmt: skip
    assert sum(p.shape[1] for p in parts) == audio.shape[1]
    assert all(p.shape[1] for p in parts)  # no empty blocks


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"tail_s": -1.0}, "tail_s"),
        ({"tail_s": float("nan")}, "tail_s"),
        ({"block_size": 0}, "block"),
    ],
)
def test_bad_render_settings(kwargs, expected) -> None:
    with pytest.raises(RenderError, match=expected):
        render_array(noise(1, 0.1), RATE_HZ, decaying_noise_ir(0.1), **kwargs)


def test_silent_input_gives_silent_output_of_the_same_length() -> None:
    out = render_array(np.zeros((2, 1000), np.float32), RATE_HZ, decaying_noise_ir(0.1))
    assert out.shape == (2, 1000)
    assert not out.any()


def test_mono_in_stereo_out_copies_the_channel() -> None:
    audio, ir = noise(1, 0.5), decaying_noise_ir(0.2)
    out = render_array(audio, RATE_HZ, ir, channels=2, tail_s=0.1)
    assert out.shape[0] == 2
    np.testing.assert_array_equal(out[0], out[1])


def test_pre_and_post_chains_stream_like_whole_buffer_processing() -> None:
    audio, ir = noise(2, 1.0), decaying_noise_ir(0.3)
    pre = pedalboard.Pedalboard([pedalboard.HighpassFilter(cutoff_frequency_hz=200)])
    post = pedalboard.Pedalboard([pedalboard.Gain(gain_db=-6.0)])
    out = render_array(audio, RATE_HZ, ir, pre=pre, post=post, wet_db=0.0, dry_db=0.0,
                       tail_s=0.5, block_size=1024)  # fmt: skip
    filtered = pedalboard.HighpassFilter(cutoff_frequency_hz=200)(
        np.pad(audio, ((0, 0), (0, round(0.5 * RATE_HZ)))), RATE_HZ
    )
    ref = _db(-6.0) * reference(filtered, ir, 0.0, 0.0)[:, : out.shape[1]]
    np.testing.assert_allclose(out, ref, atol=1e-4 * np.abs(ref).max())


# ---- files -------------------------------------------------------------------------------


def write_wav(path: Path, audio: np.ndarray, bit_depth: int = 32, rate: float = RATE_HZ) -> Path:
    with AudioFile(str(path), "w", rate, audio.shape[0], bit_depth=bit_depth) as f:
        f.write(audio)
    return path


def read(path: Path) -> tuple[np.ndarray, float]:
    with AudioFile(str(path)) as f:
        return f.read(f.frames), f.samplerate


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_render_file_matches_render_array_and_keeps_the_rate(tmp_path: Path) -> None:
    audio, ir = noise(2, 1.0), decaying_noise_ir(0.3)
    src = write_wav(tmp_path / "in.wav", audio, rate=44100)
    result = render_file(src, tmp_path / "out.wav", ir, tail_s=0.2, wet_db=-6, dry_db=0)
    out, rate = read(tmp_path / "out.wav")
    assert rate == 44100
    expected = render_array(audio, 44100, ir, tail_s=0.2, wet_db=-6, dry_db=0)
    np.testing.assert_array_equal(out, expected)  # 32-bit float: bit-exact
    assert result.output_frames == out.shape[1] and result.input_frames == audio.shape[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "out.wav"]  # no temp left


def test_integer_output_keeps_the_input_bit_depth_and_counts_clipping(tmp_path: Path) -> None:
    audio = np.clip(noise(1, 0.5) * 3, -0.99, 0.99)
    src = write_wav(tmp_path / "in.wav", audio, bit_depth=16)
    result = render_file(src, tmp_path / "out.wav", decaying_noise_ir(0.1), wet_db=6, tail_s=0)
    with AudioFile(str(tmp_path / "out.wav")) as f:
        assert f.file_dtype == "int16"
    assert result.clipped_samples > 0


def test_room_is_synthesized_at_the_file_rate(tmp_path: Path, monkeypatch) -> None:
    from rtverb.room.room import Room

    seen = []

    def fake_synth(room, rate):
        seen.append(rate)
        return decaying_noise_ir(0.1)

    monkeypatch.setattr(render, "_synthesize", fake_synth)
    src = write_wav(tmp_path / "in.wav", noise(1, 0.2), rate=22050)
    render_file(src, tmp_path / "out.flac", Room(wet_db=-12.0), bit_depth=24)
    assert seen == [22050]
    assert read(tmp_path / "out.flac")[1] == 22050


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "in.wav", noise(2, 0.5))


def _bad(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "missing.wav", "no such file"),
        (lambda d: _bad(d, "empty.wav", b""), "empty (0 bytes)"),
        (lambda d: _bad(d, "corrupt.wav", b"RIFF\x00\x01WAVEfmt " + bytes(range(200))), "corrupt"),
        (lambda d: _bad(d, "notes.txt", b"hello"), "unsupported file type '.txt'"),
        (lambda d: write_wav(d / "nine.wav", np.zeros((9, 10), np.float32)), "9 channels"),
        (lambda d: write_wav(d / "zero.wav", np.zeros((2, 0), np.float32)), "no audio frames"),
    ],
)
def test_bad_inputs_raise_clear_errors_and_write_nothing(tmp_path: Path, make, expected) -> None:
    src = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(AudioFileError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        render_file(src, tmp_path / "out.wav", decaying_noise_ir(0.1))
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_output_equal_to_input_is_refused_even_with_overwrite(wav: Path) -> None:
    before = digest(wav)
    for overwrite in (False, True):
        with pytest.raises(AudioFileError, match="is the input file"):
            render_file(
                wav, wav.parent / "." / "in.wav", decaying_noise_ir(0.1), overwrite=overwrite
            )
    assert digest(wav) == before


def test_existing_output_needs_overwrite(wav: Path) -> None:
    out = wav.parent / "out.wav"
    out.write_bytes(b"keep me")
    with pytest.raises(AudioFileError, match="--overwrite"):
        render_file(wav, out, decaying_noise_ir(0.1))
    assert out.read_bytes() == b"keep me"
    render_file(wav, out, decaying_noise_ir(0.1), overwrite=True)
    assert read(out)[0].shape[0] == 2


def test_missing_output_folder_and_unwritable_type(wav: Path) -> None:
    with pytest.raises(AudioFileError, match="does not exist; create it first"):
        render_file(wav, wav.parent / "nope" / "out.wav", decaying_noise_ir(0.1))
    with pytest.raises(AudioFileError, match="cannot write '.xyz'"):
        render_file(wav, wav.parent / "out.xyz", decaying_noise_ir(0.1))
    with pytest.raises(AudioFileError, match="FLAC"):
        render_file(wav, wav.parent / "out.flac", decaying_noise_ir(0.1), bit_depth=32)
    assert sorted(p.name for p in wav.parent.iterdir()) == ["in.wav"]


def test_a_disk_filling_up_mid_render_leaves_no_partial_file(wav: Path, monkeypatch) -> None:
    real_open = audio_io._open_writer
    writes = []

    class FullDisk:
        def __init__(self, inner):
            self.inner = inner

        def write(self, block):
            writes.append(block.shape[1])
            if len(writes) == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.inner.write(block)

        def close(self):
            self.inner.close()

    monkeypatch.setattr(audio_io, "_open_writer", lambda *a: FullDisk(real_open(*a)))
    before = digest(wav)
    with pytest.raises(AudioFileError, match="disk filled up"):
        render_file(wav, wav.parent / "out.wav", decaying_noise_ir(0.3), block_size=1024)
    assert len(writes) == 3
    assert sorted(p.name for p in wav.parent.iterdir()) == ["in.wav"]
    assert digest(wav) == before


def test_a_nan_producing_chain_is_refused(wav: Path) -> None:
    post = pedalboard.Pedalboard([pedalboard.Gain(gain_db=float("inf"))])
    with pytest.raises(RenderError, match="NaN or infinite"):
        render_file(wav, wav.parent / "out.wav", decaying_noise_ir(0.1), post=post)
    assert sorted(p.name for p in wav.parent.iterdir()) == ["in.wav"]


def test_check_input_reports_the_header(wav: Path) -> None:
    info = check_input(wav)
    assert (info.channels, info.frames, info.sample_rate_hz, info.bit_depth) == (
        2,
        24000,
        RATE_HZ,
        32,
    )


# ---- the command -------------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    from rtverb.cli import main

    return main(["render", *map(str, argv), "--quiet"])


@pytest.fixture
def ir_wav(tmp_path: Path) -> Path:
    return write_wav(tmp_path / "ir.wav", decaying_noise_ir(0.2)[None, :])


def test_cli_renders_with_an_ir_file_mix_and_chains(wav: Path, ir_wav: Path, capsys) -> None:
    out = wav.parent / "out.wav"
    code = run_cli(wav, out, "--ir", ir_wav, "--mix=-3,-70", "--tail-s", "0.25",
                   "--post", "Gain(gain_db=-6)")  # fmt: skip
    assert code == 0
    assert str(out.resolve()) in capsys.readouterr().out
    audio, _ = read(wav)
    post = pedalboard.Pedalboard([pedalboard.Gain(gain_db=-6)])
    ir = decaying_noise_ir(0.2)
    expected = render_array(audio, RATE_HZ, ir, wet_db=-3, dry_db=-70, tail_s=0.25, post=post)
    np.testing.assert_array_equal(read(out)[0], expected)


def test_cli_mono_to_stereo_and_bit_depth(tmp_path: Path, ir_wav: Path) -> None:
    src = write_wav(tmp_path / "mono.wav", noise(1, 0.3))
    out = tmp_path / "stereo.wav"
    assert run_cli(src, out, "--ir", ir_wav, "--channels", "2", "--bit-depth", "24") == 0
    with AudioFile(str(out)) as f:
        assert (f.num_channels, f.file_dtype) == (2, "int24")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--pre", "Compresor(ratio=2)"], "Did you mean 'Compressor'"),
        (["--post", "Gain(gian_db=2)"], "unknown parameter 'gian_db'"),
        (["--channels", "9"], "give 1 to 8"),
        (["--room", "/no/such/room.toml"], "no such room file"),
        (["--ir", "/no/such/ir.wav"], "no such file"),
    ],
)
def test_cli_bad_options_fail_with_a_message(wav: Path, extra, expected, capsys) -> None:
    assert run_cli(wav, wav.parent / "out.wav", *extra) == 1
    assert expected in capsys.readouterr().err
    assert sorted(p.name for p in wav.parent.iterdir()) == ["in.wav"]


def test_cli_bad_files_fail_with_a_message(wav: Path, ir_wav: Path, capsys) -> None:
    for args, expected in [
        ((wav.parent / "missing.wav", wav.parent / "o.wav"), "no such file"),
        ((wav, wav), "is the input file"),
        ((wav, wav.parent / "no" / "o.wav"), "does not exist"),
    ]:
        assert run_cli(*args, "--ir", ir_wav) == 1
        assert expected in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: a malformed --mix is a usage error
        run_cli(wav, wav.parent / "o.wav", "--mix=loud")


def test_cli_renders_a_folder_in_process(tmp_path: Path, ir_wav: Path, capsys) -> None:
    src, dst = tmp_path / "stems", tmp_path / "rendered"
    src.mkdir()
    dst.mkdir()
    write_wav(src / "a.wav", noise(1, 0.2, seed=1))
    write_wav(src / "b.flac", noise(2, 0.1, seed=2), bit_depth=16)
    (src / "notes.txt").write_text("not audio")
    _bad(src, "c.wav", b"RIFF garbage")  # fails alone; the others still render
    assert run_cli(src, dst, "--ir", ir_wav, "--jobs", "1") == 1
    assert sorted(p.name for p in dst.iterdir()) == ["a.wav", "b.flac"]
    err = capsys.readouterr().err  # summaries go with the progress bar, to stderr
    assert "error: " in err and "c.wav" in err and "1 of 3 files failed" in err
    assert run_cli(src, src, "--ir", ir_wav) == 1
    assert "is the input folder" in capsys.readouterr().err


# ---- the bundled demo --------------------------------------------------------------------


def test_bundled_demo_clip_is_small_dry_mono_48k() -> None:
    from rtverb.cli.render import DEMO_WAV

    assert DEMO_WAV.stat().st_size < 1_000_000
    with AudioFile(str(DEMO_WAV)) as f:
        assert (f.num_channels, f.samplerate, f.file_dtype) == (1, 48000, "int16")
        assert 3.0 < f.frames / f.samplerate < 10.0
        audio = f.read(f.frames)
    assert 0.5 < np.abs(audio).max() <= 1.0
    # Dry: it starts with isolated clicks, silent between them (no reverb tail baked in).
    assert np.abs(audio[0, round(0.15 * RATE_HZ) : round(0.34 * RATE_HZ)]).max() < 1e-3


def test_demo_generator_is_seeded() -> None:
    from rtverb.offline import demo

    a, b = demo.generate(with_speech=False), demo.generate(with_speech=False)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape[0] == 1
    assert np.abs(a).max() == pytest.approx(10 ** (demo.PEAK_DBFS / 20), rel=1e-6)


def test_rtverb_render_with_no_arguments_renders_the_demo(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rooms = []

    def fake_synth(room, rate):
        rooms.append(room.name)
        return decaying_noise_ir(0.3)

    monkeypatch.setattr(render, "_synthesize", fake_synth)
    assert run_cli() == 0
    out = tmp_path / "rtverb-demo.wav"
    assert f"wrote {out}" in capsys.readouterr().out
    assert rooms == ["Studio live room"]
    assert run_cli() == 1  # a second run refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("tail_s", [0.0, 0.3, None])
def test_a_chain_with_latency_is_flushed_and_aligned(tail_s) -> None:
    """pedalboard returns fewer frames while a plugin with latency fills up (MP3Compressor);
    the render flushes it and keeps the input's length plus the tail."""
    audio, ir = noise(1, 0.5), decaying_noise_ir(0.2)
    pre = pedalboard.Pedalboard([pedalboard.MP3Compressor(vbr_quality=0.0)])
    out = render_array(audio, RATE_HZ, ir, pre=pre, tail_s=tail_s, block_size=1024)
    plain = render_array(audio, RATE_HZ, ir, tail_s=tail_s, block_size=1024)
    if tail_s is not None:
        assert out.shape == plain.shape == (1, audio.shape[1] + round(tail_s * RATE_HZ))
    else:
        assert abs(out.shape[1] - plain.shape[1]) < 0.05 * RATE_HZ
    n = min(out.shape[1], plain.shape[1])
    # Aligned, not delayed: the best-quality MP3 round trip keeps the waveform (corr ~0.93).
    corr = np.corrcoef(out[0, :n], plain[0, :n])[0, 1]
    assert corr > 0.8


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the engine's NaN check
def test_nan_from_the_pre_chain_is_refused_not_silenced(wav: Path) -> None:
    pre = pedalboard.Pedalboard([pedalboard.Gain(gain_db=float("inf"))])
    with pytest.raises(RenderError, match="NaN or infinite"):
        render_file(wav, wav.parent / "out.wav", decaying_noise_ir(0.1), pre=pre)
    assert sorted(p.name for p in wav.parent.iterdir()) == ["in.wav"]


def test_output_gets_a_normal_file_mode(wav: Path) -> None:
    out = wav.parent / "out.wav"
    render_file(wav, out, decaying_noise_ir(0.1))
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def _stems(folder: Path) -> None:
    folder.mkdir()
    write_wav(folder / "a.wav", noise(1, 0.3, seed=1))
    write_wav(folder / "b.wav", noise(2, 0.2, seed=2), rate=44100)


@pytest.mark.slow  # spawns worker processes (~2-5 s)
def test_cli_renders_a_folder_in_parallel_like_in_process(tmp_path: Path, ir_wav: Path) -> None:
    _stems(tmp_path / "in")
    (tmp_path / "serial").mkdir()
    (tmp_path / "parallel").mkdir()
    assert run_cli(tmp_path / "in", tmp_path / "serial", "--ir", ir_wav, "--jobs", "1") == 0
    assert run_cli(tmp_path / "in", tmp_path / "parallel", "--ir", ir_wav, "--jobs", "2") == 0
    for name in ("a.wav", "b.wav"):
        serial, rate = read(tmp_path / "serial" / name)
        parallel, _ = read(tmp_path / "parallel" / name)
        np.testing.assert_array_equal(parallel, serial)
    assert rate == 44100  # b.wav keeps its rate


def test_folder_room_is_synthesized_once_per_rate_with_the_rooms_mix(tmp_path, monkeypatch):
    import rtverb.synth
    from rtverb.cli import render as render_cli
    from rtverb.room.room import Room

    calls = []

    def fake(room, sample_rate_hz=48000):
        calls.append(sample_rate_hz)
        return decaying_noise_ir(0.1, seed=sample_rate_hz)

    monkeypatch.setattr(rtverb.synth, "synthesize", fake)
    monkeypatch.setattr(render, "_synthesize", lambda room, rate: fake(room, rate))
    _stems(tmp_path / "in")
    write_wav(tmp_path / "in" / "c.wav", noise(1, 0.1, seed=3))
    room = Room(wet_db=-3.0, dry_db=-20.0, predelay_ms=12.0)
    files = sorted((tmp_path / "in").iterdir())
    source = render_cli._synthesize_per_rate(room, files)
    assert sorted(calls) == [44100, 48000]
    options = dict.fromkeys(("wet_db", "dry_db", "predelay_ms", "tail_s"))
    via_irs = render_cli._render_one(str(files[1]), str(tmp_path / "x.wav"), source, None, None,
                                     options)  # fmt: skip
    direct = render_file(files[1], tmp_path / "y.wav", room)
    assert via_irs.output_frames == direct.output_frames
    np.testing.assert_array_equal(read(tmp_path / "x.wav")[0], read(tmp_path / "y.wav")[0])
