"""What `rtverb live` shows: the status line, log lines, the summary (`LiveSummary`): its
table and its JSON."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from rtverb.files import atomic_output
from rtverb.live.worker import LatencySummary
from rtverb.room.room import Room

#: Status line refreshes per second.
STATUS_HZ = 10
#: Log lines shown per second at most (a controller sweeping outside the domain would flood).
LOG_LINES_PER_S = 4


class StatusLine:
    """A one-line rich status display (only on a terminal)."""

    def __init__(self, console: Any, enabled: bool) -> None:
        self._live: Any = None
        self.enabled = enabled
        if enabled:
            from rich.live import Live as RichLive

            self._live = RichLive("", console=console, refresh_per_second=STATUS_HZ, transient=True)

    def __enter__(self) -> StatusLine:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self, text: str) -> None:
        if self._live is not None:
            from rich.text import Text

            self._live.update(Text(text, no_wrap=True, overflow="ellipsis"))


@dataclass(frozen=True)
class OscSummary:
    """The OSC server's port (None when off) and the packets and errors it saw."""

    port: int | None
    packets: int
    errors: int


@dataclass(frozen=True)
class RecordSummary:
    """The ``--record`` file: where, how many frames, and frames the I/O thread dropped."""

    path: str
    frames: int
    dropped_frames: int


@dataclass(frozen=True)
class LiveSummary:
    """What one `rtverb live` run did; `to_json` is ``--summary-json``'s content."""

    seconds: float
    interrupted: bool  # Ctrl-C or SIGTERM
    stop_reason: str | None  # why the run stopped early: a dead process or thread
    sample_rate_hz: int
    block_size: int
    channels: int
    callbacks: int
    frames: int
    xruns: int
    xrun_at_callbacks: list[int]
    late_callbacks: int
    callback_exceptions: int
    first_exception: str | None
    worst_callback_ms: float
    mean_callback_ms: float
    block_ms: float
    cpu_load: float
    latency_ms: float
    nonfinite_blocks: int
    input_underruns: int
    room_changes: int
    syntheses: int
    coalesced: int
    synthesis_errors: int
    ir_swaps: int
    knob_to_ear_ms: LatencySummary
    ir_matches_room: bool
    ir_s: float
    osc: OscSummary
    record: RecordSummary | None
    io_error: str | None
    peak_dbfs: float
    room: dict[str, Any]  # the final room, as a room file holds it

    @property
    def failed(self) -> bool:
        """The callback raised, file I/O failed, or a process or thread died."""
        return bool(self.callback_exceptions or self.io_error or self.stop_reason)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (NaN and Inf become null)."""
        data: dict[str, Any] = clean_json(dataclasses.asdict(self))
        return data


def print_summary(console: Any, summary: LiveSummary) -> None:
    from rich.table import Table

    table = Table(title="rtverb live: summary", show_header=False)
    s, k = summary, summary.knob_to_ear_ms
    rows = [
        (
            "ran",
            f"{s.seconds:.1f} s, {s.callbacks} callbacks of {s.block_size} frames at "
            f"{s.sample_rate_hz} Hz",
        ),
        (
            "callback",
            f"mean {s.mean_callback_ms:.2f} ms, worst {s.worst_callback_ms:.2f} ms of "
            f"{s.block_ms:.2f} ms; load {100 * s.cpu_load:.1f}%",
        ),
        (
            "xruns",
            f"{s.xruns} reported by the audio server, {s.late_callbacks} late callbacks, "
            f"{s.callback_exceptions} callback exceptions",
        ),
        (
            "room",
            f"{s.room['name']} ({s.room_changes} changes, {s.syntheses} IRs synthesized, "
            f"IR {s.ir_s:.2f} s)",
        ),
        ("knob to ear", f"p50 {k.p50_ms} ms, p95 {k.p95_ms} ms over {k.count} changes"),
        ("latency", f"{s.latency_ms:.1f} ms in to out"),
    ]
    if s.stop_reason:
        rows.append(("stopped", s.stop_reason))
    elif s.interrupted:
        rows.append(("stopped", "Ctrl-C or SIGTERM"))
    if s.record and s.io_error:  # the I/O thread stopped and dropped the recording
        rows.append(("recorded", f"nothing: {s.record.path} was not written"))
    elif s.record:
        rows.append(("recorded", f"{s.record.path} ({s.record.frames} frames)"))
    if s.io_error:
        rows.append(("file I/O error", s.io_error))
    if s.first_exception:
        rows.append(("first callback exception", s.first_exception))
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)


class _RateLimit(logging.Filter):
    """At most `LOG_LINES_PER_S` lines per second; the rest are dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.window_start, self.shown = 0.0, 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self.window_start >= 1.0:
            self.window_start, self.shown = now, 0
        self.shown += 1
        return self.shown <= LOG_LINES_PER_S


def setup_logging(console: Any) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(console=console, show_path=False, show_time=False)
    handler.addFilter(_RateLimit())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("rtverb").setLevel(logging.INFO)
    logging.captureWarnings(True)  # the synthesizer's domain warnings become rate-limited logs


def write_json_atomic(path: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write JSON to ``path`` atomically (`rtverb.files.atomic_output`).

    Raises:
        OutputError: a missing or read-only folder or a full disk, in one line.
    """
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    with atomic_output(path) as f:
        f.write(text.encode("utf-8"))


def clean_json(value: Any) -> Any:
    """Plain JSON values: numpy scalars become Python numbers, NaN and Inf become None."""
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def room_title(room: Room) -> str:
    return f"{room.name} {'x'.join(f'{v:g}' for v in room.size_m)} m"
