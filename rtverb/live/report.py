"""What `rtverb live` shows: the status line, log lines, the summary table and its JSON."""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

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


def print_summary(console: Any, summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="rtverb live: summary", show_header=False)
    k = summary["knob_to_ear_ms"]
    rows = [
        (
            "ran",
            f"{summary['seconds']:.1f} s, {summary['callbacks']} callbacks of "
            f"{summary['block']} frames at {summary['sample_rate_hz']} Hz",
        ),
        (
            "callback",
            f"mean {summary['mean_callback_ms']:.2f} ms, worst "
            f"{summary['worst_callback_ms']:.2f} ms of {summary['block_ms']:.2f} ms; "
            f"load {100 * summary['cpu_load']:.1f}%",
        ),
        (
            "xruns",
            f"{summary['xruns']} reported by the audio server, "
            f"{summary['late_callbacks']} late callbacks, "
            f"{summary['callback_exceptions']} callback exceptions",
        ),
        (
            "room",
            f"{summary['room']['name']} ({summary['room_changes']} changes, "
            f"{summary['syntheses']} IRs synthesized, IR {summary['ir_s']:.2f} s)",
        ),
        ("knob to ear", f"p50 {k['p50_ms']} ms, p95 {k['p95_ms']} ms over {k['count']} changes"),
        ("latency", f"{summary['latency_ms']:.1f} ms in to out"),
    ]
    if summary["record"]:
        rows.append(
            ("recorded", f"{summary['record']['path']} ({summary['record']['frames']} frames)")
        )
    if summary["io_error"]:
        rows.append(("file I/O error", summary["io_error"]))
    if summary["first_exception"]:
        rows.append(("first callback exception", summary["first_exception"]))
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
    """Write JSON to ``path`` through a temporary file renamed into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
