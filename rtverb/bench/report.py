"""The text report and the plot of `rtverb bench` (measured in `rtverb.bench.engine`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rtverb.files import atomic_output


def report(config: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """The human-readable report: setup, then one block size in full or a sweep table."""
    m, v = config["machine"], config["versions"]
    lines = [
        f"rtverb bench: {config['sample_rate_hz']:g} Hz, {config['channels']} ch, IR "
        f"{config['ir_s']:.2f} s ({config['ir_taps']} taps, {_ir_kind(config['ir_shape'])}; "
        f"{config['ir']})",
        f"machine: {m['cpu']}, {m['cores']} cores, {m['system']}, load average "
        + " ".join(f"{x:g}" for x in m["load_avg"])
        + (" (other work was running: figures are pessimistic)" if m["load_avg"][0] > 0.5 else ""),
        "versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        "threads: 1 (numpy's FFT is single-threaded; no BLAS in the hot path)",
        f"scheduling: {config['scheduling']}",
    ]
    if len(results) == 1:
        lines += _one(results[0])
    else:
        lines += _table(results)
    return "\n".join(lines + _chain_lines(results))


def _ir_kind(shape: list[int]) -> str:
    """How the IR meets the channels: one for all, one per channel, or a 2 x 2 matrix."""
    if len(shape) == 3:
        return "true stereo: 2 inputs x 2 outputs"
    return "one IR on every channel" if shape[0] == 1 else f"{shape[0]}-channel IR"


def _chain_lines(results: list[dict[str, Any]]) -> list[str]:
    """Per-block cost of --pre/--post, and the callback's total mean load with them."""
    lines = []
    for r in results:
        chains, budget = r.get("chains", {}), r["config"]["budget_us"]
        for name, c in chains.items():
            lines.append(
                f"--{name} at block {r['config']['block_size']}: mean {c['mean_us']:.1f} µs, "
                f"p99.9 {c['p999_us']:.1f} µs, max {c['max_us']:.1f} µs "
                f"({100 * c['load_mean']:.1f}% of the budget)"
            )
        if chains:
            total = r["rtverb"]["mean_us"] + sum(c["mean_us"] for c in chains.values())
            lines.append(f"  rtverb + chains: mean {100 * total / budget:.1f}% of the budget")
    return [""] + lines if lines else []


def _row(name: str, s: dict[str, float], over: bool = True, f: str = ".1f") -> str:
    keys = ("mean_us", "p50_us", "p99_us", "p999_us", "max_us")
    tail = f"{s['over_budget_blocks']:>12d}" if over else ""
    return f"{name:<22}" + "".join(f"{s[k]:>9{f}}" for k in keys) + tail


def _one(r: dict[str, Any]) -> list[str]:
    c, ours, theirs, floor = r["config"], r["rtverb"], r["pedalboard"], r["machine_floor"]
    swap_load = ours["swap_block_max_us"] / c["budget_us"]
    lines = [
        f"block: {c['block_size']} frames, budget {c['budget_us']:.0f} µs per block",
        f"partitions: {c['partitions']}",
        f"timed: {c['blocks_timed']} blocks, interleaved with pedalboard.Convolution",
        "",
        f"{'per block (µs)':<22}{'mean':>9}{'p50':>9}{'p99':>9}{'p99.9':>9}{'max':>9}"
        f"{'over budget':>12}",
        _row("rtverb", ours),
    ]
    if theirs is not None:
        ratio = {k: ours[k] / theirs[k] for k in theirs if k.endswith("_us")}
        lines += [
            _row("pedalboard", theirs),
            _row("rtverb / pedalboard", ratio, over=False, f=".2f"),
        ]
    lines += [_row("fixed work (machine)", floor)]
    lines += [
        "",
        f"load: mean {100 * ours['load_mean']:.1f}% of the budget, worst "
        f"{100 * ours['load_worst']:.1f}% (swap blocks included)",
        f"IR swaps: {ours['swap_blocks']} blocks during {ours['swaps']} crossfades: max "
        f"{ours['swap_block_max_us']:.0f} µs ({100 * swap_load:.1f}% of the budget), "
        f"mean {ours['swap_block_mean_us']:.0f} µs",
        f"offline: real-time factor {ours['rtf']:.4f} ({1 / ours['rtf']:.0f}x real time)",
        f"headroom: {ours['headroom']:.1f}x (budget / p99.9: a machine that much slower keeps up)",
        f"tails: p99.9 = {ours['p999_us'] / ours['mean_us']:.1f}x the mean for rtverb, "
        f"{floor['p999_us'] / floor['mean_us']:.1f}x for fixed work of the same median cost "
        f"(max {floor['max_us']:.0f} µs): what this machine adds to any code",
        f"spread: the costliest of the {ours['period_blocks']} block positions of the longest "
        f"period takes {ours['worst_position_p50_us']:.0f} µs (median), "
        f"{ours['worst_position_p50_us'] / ours['p50_us']:.2f}x the median block",
        f"accuracy: max error {ours['max_error_vs_fftconvolve']:.1e} x peak vs scipy fftconvolve"
        + (
            f", {ours['max_error_vs_pedalboard']:.1e} vs pedalboard (its gain undone)"
            if "max_error_vs_pedalboard" in ours
            else ""
        ),
    ]
    return lines


def _table(results: list[dict[str, Any]]) -> list[str]:
    cols = ("block", "budget", "mean", "p50", "p99.9", "max", "swap max", "headroom",
            "pb mean", "pb p50", "pb p99.9", "mean ratio", "fixed p99.9/mean")  # fmt: skip
    lines = ["", "per block, µs (pb = pedalboard.Convolution, same run)"]
    lines.append("".join(f"{k:>{max(8, len(k) + 2)}}" for k in cols))
    for r in results:
        c, o, p = r["config"], r["rtverb"], r["pedalboard"]
        values = [c["block_size"], c["budget_us"], o["mean_us"], o["p50_us"], o["p999_us"],
                  o["max_us"], o["swap_block_max_us"], o["headroom"]]  # fmt: skip
        values += (
            [p["mean_us"], p["p50_us"], p["p999_us"], o["mean_us"] / p["mean_us"]] if p else []
        )
        cells = [f"{v:.2f}" if k in ("headroom", "mean ratio") else f"{v:.0f}"
                 for k, v in zip(cols, values, strict=False)]  # fmt: skip
        cells += ["-"] * (len(cols) - 1 - len(cells))
        f = r["machine_floor"]
        cells.append(f"{f['p999_us'] / f['mean_us']:.1f}")
        lines.append(
            "".join(f"{v:>{max(8, len(k) + 2)}}" for k, v in zip(cols, cells, strict=True))
        )
    parts = [f"{r['config']['block_size']}: {r['config']['partitions']}" for r in results]
    return [*lines, "partitions:", *(f"  {x}" for x in parts)]


def save_plot(plt: Any, results: list[dict[str, Any]], path: str) -> None:
    """Cost per block against block size, with the real-time budget."""
    blocks = [r["config"]["block_size"] for r in results]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(blocks, [r["config"]["budget_us"] for r in results], "k--", label="budget")
    for who, marker, color in (("rtverb", "o", "tab:blue"), ("pedalboard", "s", "tab:green")):
        if all(r[who] for r in results):
            for key, line in (("mean_us", "-"), ("p999_us", ":")):
                label = f"{who} {'mean' if key == 'mean_us' else 'p99.9'}"
                values = [r[who][key] for r in results]
                ax.plot(blocks, values, marker + line, color=color, label=label)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="block size (frames)",
        ylabel="µs per block",
        title="rtverb bench",
    )
    ax.set_xticks(blocks, [str(b) for b in blocks])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        with atomic_output(path) as f:
            fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    finally:
        plt.close(fig)
