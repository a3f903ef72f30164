"""Timing helpers the benchmarks share: per-block figures, a plugin chain's per-block cost,
the machine and the versions a benchmark reports."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import rtverb
from rtverb.offline.chain import parse_chain


def block_stats(us: np.ndarray, budget_us: float) -> dict[str, float]:
    """Per-block cost figures (µs) of one engine, and how many blocks overran the budget."""
    return {
        "mean_us": float(us.mean()),
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "p999_us": float(np.percentile(us, 99.9)),
        "max_us": float(us.max()),
        "over_budget_blocks": int(np.sum(us > budget_us)),
    }


def median_us(fn: Callable[[], object], calls: int = 200) -> float:
    """Median wall time of ``fn()`` over ``calls`` calls, µs."""
    times = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) / 1e3)
    return float(np.median(times))


def chain_block_cost(
    chain_text: str, block: int, sample_rate_hz: float, channels: int, seconds: float = 5.0,
    seed: int = 0,
) -> dict[str, float]:  # fmt: skip
    """Per-block cost of a CHAIN streamed as the live callback runs it (``reset=False``), µs:
    mean, p50, p99, p99.9, max, and the mean as a fraction of the block's real-time budget."""
    board = parse_chain(chain_text)
    rng = np.random.default_rng(seed)
    x = (0.25 * rng.standard_normal((channels, block * 64))).astype(np.float32)
    blocks = [x[:, i * block : (i + 1) * block] for i in range(64)]
    for i in range(100):  # warm-up
        board.process(blocks[i % 64], sample_rate_hz, buffer_size=block, reset=False)
    n = max(1000, round(seconds * sample_rate_hz / block))
    us = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter_ns()
        board.process(blocks[i % 64], sample_rate_hz, buffer_size=block, reset=False)
        us[i] = (time.perf_counter_ns() - t0) / 1e3
    budget_us = block / sample_rate_hz * 1e6
    return block_stats(us, budget_us) | {"load_mean": float(us.mean() / budget_us)}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_avg": [round(x, 2) for x in load],
        "system": f"{platform.system()} {platform.release()}",
    }


def versions() -> dict[str, str]:
    import pedalboard
    import scipy

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pedalboard": pedalboard.__version__,
        "rtverb": rtverb.__version__,
    }
