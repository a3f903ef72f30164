"""Audio files in and out of a render or a live recording: checks, and writing atomically.

`check_input` opens a file's header and names what is wrong with it; `check_output` refuses
a missing folder, an existing file (unless overwriting) and the input itself; `SafeWriter`
writes to a temporary file in the output's folder, fsyncs it and renames it into place, so an
output is either complete or absent; `match_channels` maps a file's channels to the engine's.
Used by `rtverb.offline.render` and `rtverb.live.io`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pedalboard.io import AudioFile, get_supported_read_formats, get_supported_write_formats

from rtverb.files import OutputError, commit, temporary_beside, write_failure

#: Most channels accepted in a file.
MAX_CHANNELS = 8
#: Formats that hold fewer channels than `MAX_CHANNELS` (pedalboard 0.9.26's MP3 writer: 2).
MOST_CHANNELS = {".mp3": 2}
#: Bit depths written: 16/24-bit integer or 32-bit float (FLAC has 16 and 24 only).
BIT_DEPTHS = (16, 24, 32)
_FILE_DTYPE_BITS = {"int8": 16, "int16": 16, "int24": 24, "int32": 24, "float32": 32, "float64": 32}
#: Formats whose writer takes a bit depth; mp3 and ogg take a quality instead.
PCM_SUFFIXES = (".wav", ".aif", ".aiff", ".bwf", ".flac")
#: Uncompressed formats: the frames a header declares must fit in the file's bytes.
_UNCOMPRESSED_SUFFIXES = (".wav", ".aif", ".aiff", ".bwf")
_SAMPLE_BYTES = {"int8": 1, "uint8": 1, "int16": 2, "int24": 3, "int32": 4, "float32": 4,
                 "float64": 8}  # fmt: skip


class AudioFileError(Exception):
    """An audio file cannot be read or written; the message names the problem and the fix.

    Whenever it is raised, no output file was created (an existing one is untouched).
    """


@dataclass(frozen=True)
class InputInfo:
    """What `check_input` learned about an input file."""

    path: Path
    sample_rate_hz: float
    channels: int
    frames: int
    bit_depth: int


def _formats(read: bool) -> str:
    return ", ".join(get_supported_read_formats() if read else get_supported_write_formats())


def check_input(path: str | os.PathLike[str]) -> InputInfo:
    """Open an input file's header; raise `AudioFileError` naming what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise AudioFileError(f"{path}: no such file")
    if not path.is_file():
        raise AudioFileError(f"{path}: not a file")
    if path.suffix.lower() not in get_supported_read_formats():
        raise AudioFileError(
            f"{path}: unsupported file type {path.suffix!r}; rtverb reads {_formats(True)}"
        )
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
    except OSError as e:
        raise AudioFileError(
            f"{path}: cannot read it ({e.strerror}); check its permissions"
        ) from None
    if empty:
        raise AudioFileError(f"{path}: the file is empty (0 bytes)")
    try:
        with AudioFile(str(path)) as f:
            file_dtype = f.file_dtype
            info = InputInfo(
                path, float(f.samplerate), int(f.num_channels), int(f.frames),
                _FILE_DTYPE_BITS.get(str(file_dtype), 32),
            )  # fmt: skip
    except (ValueError, RuntimeError, OSError) as e:
        raise AudioFileError(
            f"{path}: not a readable audio file (corrupt or truncated?): {e}"
        ) from None
    if info.frames == 0:
        raise AudioFileError(f"{path}: the file holds no audio frames")
    sample_bytes = _SAMPLE_BYTES.get(str(file_dtype))
    if path.suffix.lower() in _UNCOMPRESSED_SUFFIXES and sample_bytes:
        held = path.stat().st_size // (sample_bytes * info.channels)
        if info.frames > held:
            raise AudioFileError(
                f"{path}: its header declares {info.frames} frames "
                f"({info.frames / info.sample_rate_hz:.1f} s) but the file holds at most {held}; "
                "it is truncated or its header is wrong: export it again or repair it "
                "(e.g. sox --ignore-length in.wav fixed.wav)"
            )
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise AudioFileError(
            f"{path}: {info.channels} channels; rtverb renders 1 to {MAX_CHANNELS} channels "
            "(split the file into groups of channels first)"
        )
    return info


def check_output(in_path: Path, out_path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Validate where a render may write; raise `AudioFileError` otherwise. Never the input."""
    out = Path(out_path)
    if out.suffix.lower() not in get_supported_write_formats():
        what = out.suffix or "files without an extension"
        raise AudioFileError(f"{out}: cannot write {what!r}; rtverb writes {_formats(False)}")
    if not out.parent.is_dir():
        raise AudioFileError(
            f"{out}: the output folder {out.parent} does not exist; create it first"
        )
    if out.exists():
        if out.is_dir():
            raise AudioFileError(f"{out}: is a folder; give a file name")
        if in_path.exists() and os.path.samefile(in_path, out):
            raise AudioFileError(
                f"{out}: is the input file; choose another output (never overwritten)"
            )
        if not overwrite:
            raise AudioFileError(f"{out}: already exists; pass --overwrite or choose another name")
    if out.resolve() == in_path.resolve():
        raise AudioFileError(f"{out}: is the input file; choose another output")
    return out


def _open_writer(path: str, sample_rate_hz: float, channels: int, bit_depth: int) -> Any:
    """Open a pedalboard.io writer (tests replace this to simulate a full disk)."""
    kwargs: dict[str, Any] = {}
    if Path(path).suffix.lower() in PCM_SUFFIXES:
        kwargs["bit_depth"] = bit_depth
    return AudioFile(path, "w", sample_rate_hz, channels, **kwargs)


class SafeWriter:
    """Write an audio file atomically: a temporary file in its folder, renamed on success.

    Every failure to write (read-only or missing folder, full disk) is a `AudioFileError` of one
    line, and the temporary file is removed.
    """

    def __init__(self, out: Path, sample_rate_hz: float, channels: int, bit_depth: int) -> None:
        self.out = out
        suffix = out.suffix.lower()
        most = MOST_CHANNELS.get(suffix)
        if most is not None and channels > most:
            others = sorted(set(get_supported_write_formats()) - set(MOST_CHANNELS))
            raise AudioFileError(
                f"{out}: {suffix} holds at most {most} channels, this has "
                f"{channels}; write {', '.join(others[:-1])} or {others[-1]} "
                f"(up to {MAX_CHANNELS} channels)"
            )
        try:
            self.tmp = temporary_beside(out)
        except OutputError as e:
            raise AudioFileError(str(e)) from None
        try:
            self.file = _open_writer(self.tmp, sample_rate_hz, channels, bit_depth)
        except BaseException as e:
            os.unlink(self.tmp)
            if isinstance(e, ValueError):
                raise AudioFileError(f"{out}: {e}") from None
            if isinstance(e, OSError | RuntimeError):
                raise io_error(out, e) from None
            raise

    def write(self, block: np.ndarray) -> None:
        try:
            self.file.write(block)
        except (OSError, RuntimeError) as e:  # pedalboard: "Unable to write data to audio file"
            raise io_error(self.out, e) from None

    def __enter__(self) -> SafeWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            self.file.close()
            if kind is None:
                commit(self.tmp, self.out)
        except (OSError, RuntimeError) as e:
            raise io_error(self.out, e) from None
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


def match_channels(block: np.ndarray, channels: int) -> np.ndarray:
    """(c, frames) -> (channels, frames): mono is copied to every channel, N -> 1 averages."""
    have = block.shape[0]
    if have == channels:
        return block
    if have == 1:
        return np.repeat(block, channels, axis=0)
    if channels == 1:
        return block.mean(axis=0, keepdims=True, dtype=np.float32)
    raise AudioFileError(
        f"cannot map {have} input channels to {channels}; --channels takes the input's count, "
        "1 (downmix), or any count from a mono input"
    )


def io_error(out: Path, e: OSError | RuntimeError) -> AudioFileError:
    """The one-line `AudioFileError` for a failed write (full disk, read-only folder …)."""
    return AudioFileError(write_failure(out, e))
