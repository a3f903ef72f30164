"""File I/O for live monitoring, kept off the audio thread.

The audio callback only copies into and out of preallocated `Ring` buffers. One I/O thread
(`IoPump`) keeps the input ring filled from a file (`FileSource`, read ahead, looped on request)
and drains the output ring into the recording (`Recorder`, a temporary file renamed at the end).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from pedalboard.io import AudioFile

from rtverb.offline.audio_io import SafeWriter, match_channels

log = logging.getLogger(__name__)

#: Frames moved per read or write by the I/O thread.
IO_CHUNK_FRAMES = 4096
#: How often the I/O thread wakes, seconds (the rings hold seconds).
IO_PERIOD_S = 0.02


class Ring:
    """A single-producer, single-consumer ring of (channels, frames) float32 audio.

    One side writes, the other reads; neither ever waits or locks. The two positions are int64
    counters, each written by one side only, and the producer copies the audio before it
    publishes the new write position (stores stay in order on x86-64 and under the GIL).
    ``buffer`` (`nbytes` long, e.g. a `multiprocessing.shared_memory.SharedMemory`'s ``buf``)
    holds positions and audio, so the two sides may be two processes. `write` and `read_into`
    allocate no array.
    """

    def __init__(self, channels: int, capacity_frames: int, buffer: Any = None) -> None:
        if buffer is None:
            buffer = bytearray(self.nbytes(channels, capacity_frames))
        self._pos = np.ndarray((2,), np.int64, buffer)  # frames written, frames read (totals)
        self.buffer = np.ndarray((channels, capacity_frames), np.float32, buffer, offset=16)
        self.capacity = capacity_frames

    @staticmethod
    def nbytes(channels: int, capacity_frames: int) -> int:
        """Bytes of the ``buffer`` a ring of this size needs."""
        return 16 + 4 * channels * capacity_frames

    @property
    def _written(self) -> int:
        return int(self._pos[0])

    @property
    def _read(self) -> int:
        return int(self._pos[1])

    def available(self) -> int:
        """Frames ready to read."""
        return self._written - self._read

    def space(self) -> int:
        """Frames that can be written without overwriting unread audio."""
        return self.capacity - (self._written - self._read)

    def write(self, block: np.ndarray) -> int:
        """Copy as much of ``block`` (channels, frames) as fits; returns the frames written."""
        n = min(block.shape[1], self.space())
        start = self._written % self.capacity
        first = min(n, self.capacity - start)
        self.buffer[:, start : start + first] = block[:, :first]
        if n > first:
            self.buffer[:, : n - first] = block[:, first:n]
        self._pos[0] += n
        return n

    def read_into(self, out: np.ndarray) -> int:
        """Fill ``out`` (channels, frames) from the ring; returns the frames read (may be fewer)."""
        n = min(out.shape[1], self.available())
        start = self._read % self.capacity
        first = min(n, self.capacity - start)
        out[:, :first] = self.buffer[:, start : start + first]
        if n > first:
            out[:, first:n] = self.buffer[:, : n - first]
        self._pos[1] += n
        return n


class FileSource:
    """Reads an audio file ahead into a `Ring`, resampled to the stream rate, looped on request.

    Raises:
        AudioFileError: the channel count cannot be mapped (mono goes to every channel).
    """

    def __init__(self, path: Path, sample_rate_hz: float, channels: int, loop: bool) -> None:
        self.path, self.channels, self.loop = path, channels, loop
        self._sample_rate_hz = sample_rate_hz
        self._file = self._open()
        match_channels(np.zeros((self._file.num_channels, 1), np.float32), channels)  # checks
        self.finished = False  #: the file ended (and does not loop)
        self.frames_read = 0
        self.loops = 0

    def _open(self) -> Any:  # a pedalboard ReadableAudioFile, maybe resampled
        f: Any = AudioFile(str(self.path))
        if float(f.samplerate) != self._sample_rate_hz:
            f = f.resampled_to(self._sample_rate_hz)
        return f

    def fill(self, ring: Ring) -> None:
        """Top up ``ring`` from the file (I/O thread)."""
        while not self.finished and ring.space() >= IO_CHUNK_FRAMES:
            data = self._file.read(IO_CHUNK_FRAMES)
            if data.shape[1] == 0:
                if not self.loop or self.frames_read == 0:
                    self.finished = True
                    break
                self._file.close()
                self._file = self._open()
                self.loops += 1
                continue
            self.frames_read += data.shape[1]
            ring.write(match_channels(np.asarray(data, np.float32), self.channels))

    def close(self) -> None:
        self._file.close()


class Recorder:
    """Drains a `Ring` into an audio file written atomically (temporary file, renamed on close)."""

    def __init__(self, path: Path, sample_rate_hz: float, channels: int) -> None:
        self.path = path
        self._writer = SafeWriter(path, sample_rate_hz, channels, bit_depth=32)
        self._chunk = np.zeros((channels, IO_CHUNK_FRAMES), np.float32)
        self.frames = 0

    def drain(self, ring: Ring) -> None:
        """Write everything the ring holds (I/O thread)."""
        while (n := ring.read_into(self._chunk)) > 0:
            self._writer.write(self._chunk[:, :n])
            self.frames += n

    def close(self, keep: bool = True) -> None:
        """Finish the file: renamed into place if ``keep``, else the temporary file is removed."""
        self._writer.__exit__(None if keep else RuntimeError, None, None)


class IoPump:
    """The one I/O thread: keeps the input ring full and the output ring empty.

    An I/O failure (unreadable file, full disk) stops the pump and is kept in `error`; the
    audio keeps running (input turns to silence, the recording is dropped).
    """

    def __init__(
        self,
        source: FileSource | None,
        source_ring: Ring | None,
        recorder: Recorder | None,
        record_ring: Ring | None,
    ) -> None:
        self.source, self.source_ring = source, source_ring
        self.recorder, self.record_ring = recorder, record_ring
        self.error = ""
        self._started = self._stopped = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtverb-io", daemon=True)

    def prime(self) -> None:
        """Fill the input ring once before the stream starts."""
        if self.source is not None and self.source_ring is not None:
            self.source.fill(self.source_ring)

    def start(self) -> IoPump:
        self._started = True
        self._thread.start()
        return self

    def step(self) -> None:
        if self.source is not None and self.source_ring is not None:
            self.source.fill(self.source_ring)
        if self.recorder is not None and self.record_ring is not None:
            self.recorder.drain(self.record_ring)

    def _run(self) -> None:
        while not self._stop.wait(IO_PERIOD_S):
            try:
                self.step()
            except Exception as e:  # keep the audio running; report and stop pumping
                self.error = f"{type(e).__name__}: {e}"
                log.error("file I/O stopped: %s", self.error)
                return

    def stop(self) -> None:
        """Stop the thread, write what is left, close the files (the recording is kept unless
        writing it failed, or the pump never started). Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        if self.recorder is not None:
            try:
                if not self.error and self.record_ring is not None:
                    self.recorder.drain(self.record_ring)
            except Exception as e:
                self.error = f"{type(e).__name__}: {e}"
            self.recorder.close(keep=self._started and not self.error)
        if self.source is not None:
            self.source.close()
