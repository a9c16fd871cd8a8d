"""Bench output: aligned tables with a ratio column, JSON, and an optional bar chart."""

from __future__ import annotations

import os
import platform
from typing import Any, TextIO

from .harness import SuiteResult

__all__ = ["machine", "plot", "text"]


def machine() -> dict[str, Any]:
    """What the figures were measured on: they only compare within one run."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "host": platform.node(),
        "kernel": platform.release(),
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
    }


def _fmt(value: float, unit: str) -> str:
    if unit == "us":
        return f"{value:,.1f} us"
    if unit == "msg/s":
        return f"{value / 1e6:,.2f}M/s" if value >= 1e6 else f"{value / 1e3:,.0f}k/s"
    if unit == "req/s":
        return f"{value / 1e3:,.1f}k req/s"
    if unit == "B/s":
        return f"{value / 1e9:,.2f} GB/s"
    if unit == "MiB":
        return f"{value:,.1f} MiB"
    return f"{value:,.3g} {unit}"


def text(results: list[SuiteResult], out: TextIO, rounds: int) -> None:
    info = machine()
    out.write(
        f"machine: {info['host']}, {info['cpu']}, {info['cores']} cores, "
        f"Linux {info['kernel']}, Python {info['python']}\n"
    )
    for result in results:
        suite = result.suite
        out.write(f"\n{suite.name}: {suite.title}\n")
        width = max(len(c.label) for c in suite.cases) + 2
        header = "".join(f"{m:>16}" for m, _, _ in suite.metrics)
        out.write(f"  {'case':<{width}}{header}\n")
        for case in suite.cases:
            row = f"  {case.label:<{width}}"
            if case.key in result.missing:
                out.write(f"{row}missing: {result.missing[case.key]}\n")
                continue
            if case.key in result.errors:
                out.write(f"{row}error: {result.errors[case.key]}\n")
                continue
            for metric, unit, _ in suite.metrics:
                value = result.median(case.key, metric)
                row += f"{_fmt(value, unit) if value is not None else '-':>16}"
            out.write(row + "\n")
        if suite.comparisons:
            out.write(f"  ratios: sockwire / peer, median of {rounds} rounds [min-max]\n")
        for comparison in suite.comparisons:
            found = result.ratio(comparison)
            unit = next(u for m, u, _ in suite.metrics if m == comparison.metric)
            if comparison.peer:
                name = f"{comparison.sockwire} / {comparison.peer} ({comparison.metric})"
            else:
                name = f"{comparison.sockwire} ({comparison.metric})"
            if found is None:
                out.write(f"    {name:<58} n/a (a side is missing)\n")
                continue
            median, low, high = found
            if comparison.peer:
                figure = f"{median:.2f}x [{low:.2f}-{high:.2f}]"
                goal = (
                    f"{comparison.direction} {comparison.target:g}x" if comparison.target else ""
                )
            else:
                figure = f"{_fmt(median, unit)} [{_fmt(low, unit)}-{_fmt(high, unit)}]"
                goal = f"{comparison.direction} {comparison.target:g}" if comparison.target else ""
            verdict = ""
            if comparison.target is not None:
                met = (
                    median >= comparison.target
                    if comparison.direction == ">="
                    else (median <= comparison.target)
                )
                verdict = f"target {goal}: {'met' if met else 'MISSED'}"
            out.write(f"    {name:<58} {figure:<28} {verdict}\n")


def plot(results: list[SuiteResult], path: str) -> None:
    """A bar chart of every ratio against its target (needs the `plot` extra)."""
    try:
        import matplotlib  # type: ignore[import-not-found,unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        from ..errors import UnsupportedError

        raise UnsupportedError("--plot", "needs matplotlib: pip install 'sockwire[plot]'") from exc
    labels, values, targets = [], [], []
    for result in results:
        for comparison in result.suite.comparisons:
            found = result.ratio(comparison)
            if found is None or not comparison.peer:
                continue
            labels.append(f"{result.suite.name}\n{comparison.sockwire}/{comparison.peer}")
            values.append(found[0])
            targets.append(comparison.target)
    fig, ax = plt.subplots(figsize=(max(6, len(labels) * 1.2), 4.5))
    bars = ax.bar(range(len(values)), values, color="#4477aa")
    for index, target in enumerate(targets):
        if target is not None:
            ax.hlines(target, index - 0.4, index + 0.4, colors="#cc3311", linewidth=2)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("sockwire / peer")
    ax.set_title("sockwire against its peers (red: target)")
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
