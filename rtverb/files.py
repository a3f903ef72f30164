"""Output files for every command: written atomically, failures told in one line.

`atomic_output` writes to a temporary file in the destination's folder, fsyncs it and renames
it into place, so an output is complete or absent; `write_failure` turns why a write failed
(read-only or missing folder, full disk) into the line a command prints.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

#: A writer that fails with less than this free in the output's folder ran out of disk (some
#: writers, e.g. pedalboard.io, report only "Unable to write data"), bytes.
LOW_DISK_BYTES = 4 * 1024 * 1024


class OutputError(OSError):
    """An output could not be written; the message is one line naming the file and the fix.

    Whenever it is raised, no output file was created (an existing one is untouched).
    """


def write_failure(path: Path, error: BaseException) -> str:
    """One line saying why writing ``path`` failed and what to do."""
    code = getattr(error, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT) or (
        not isinstance(error, OSError) and _low_disk(path.parent)
    ):
        return (
            f"{path}: the disk filled up while writing; nothing was written. Free some space or "
            "write to another folder"
        )
    if code == errno.ENOENT and not path.parent.is_dir():
        return f"{path}: the output folder {path.parent} does not exist; create it first"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"{path}: cannot write in {path.parent} (read-only or no permission); "
            "nothing was written. Write to another folder"
        )
    reason = getattr(error, "strerror", None) or str(error)
    return f"{path}: could not write ({reason}); nothing was written"


def _low_disk(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < LOW_DISK_BYTES
    except OSError:
        return False


def temporary_beside(path: Path) -> str:
    """Create an empty temporary file in ``path``'s folder, with a new file's usual mode.

    Raises:
        OutputError: the folder is missing or cannot be written.
    """
    try:
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.stem}.", suffix=f".partial{path.suffix}"
        )
    except OSError as e:
        raise OutputError(write_failure(path, e)) from None
    os.close(fd)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes it 0600
    return tmp


def commit(tmp: str, path: Path) -> None:
    """fsync the finished temporary file and rename it onto ``path``."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open ``path`` for writing bytes, atomically: complete on success, absent on failure.

    Raises:
        OutputError: missing or read-only folder, full disk (one line; no file left behind).
    """
    path = Path(path)
    tmp = temporary_beside(path)
    try:
        with open(tmp, "wb") as f:
            yield f
        commit(tmp, path)
    except OSError as e:
        raise OutputError(write_failure(path, e)) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
