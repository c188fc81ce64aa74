"""Operations against time (Canziani, Paszke & Culurciello 2016, "An Analysis of Deep Neural
Network Models for Practical Applications", Fig. 3): batch-1 latency against MACs per image,
one series per engine + precision + device, each with a least-squares line ``latency = a +
b x GMACs``. The slope ``b`` (ms per GMAC) says how efficiently a runtime turns operations
into time; the intercept ``a`` is its fixed cost per call. Random weights do not matter here:
timings are real whatever the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnbench.bench.report.plot_helpers import PREC_MARKERS, Plot, log_axis, no_data, save
from cnnbench.bench.report.rows import Row, num

__all__ = ["MIN_FIT_MODELS", "fit_line", "latency_vs_macs"]

#: a line through two points is not a fit: the slope is read only from three models or more
MIN_FIT_MODELS = 3


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """(intercept, slope) of the least-squares line through the points; None for fewer than
    two distinct x."""
    if len(set(xs)) < 2:
        return None
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - slope * mx, slope


def _series(comparison: list[Row]) -> dict[tuple[str, str, str], list[Row]]:
    out: dict[tuple[str, str, str], list[Row]] = {}
    for r in comparison:
        if num(r.get("gmacs")) and num(r.get("latency_ms_p50_b1")) and r.get("engine") != "null":
            key = (str(r["engine"]), str(r["precision"]), str(r["device"]))
            out.setdefault(key, []).append(r)
    return out


def latency_vs_macs(out: Path, comparison: list[Row]) -> Plot:
    """The operations-vs-time figure (see the module)."""
    import matplotlib.pyplot as plt

    series = _series(comparison)
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(10, 6))
    title = "Batch-1 latency vs. operations, per engine and precision"
    fits: list[str] = []
    for i, ((engine, prec, device), rows) in enumerate(sorted(series.items())):
        colour = cmap(i % 10)
        xs = [float(r["gmacs"]) for r in rows]
        ys = [float(r["latency_ms_p50_b1"]) for r in rows]
        label = f"{engine} {prec}" + (f" ({device})" if device != "cpu" else "")
        line = fit_line(xs, ys) if len(set(xs)) >= MIN_FIT_MODELS else None
        if line is not None and line[1] > 0:
            a, b = line
            fits.append(f"{label}: {b:.3g} ms/GMAC + {a:.3g} ms")
            label += f": {b:.3g} ms/GMAC"
            _draw_fit(ax, xs, a, b, colour)
        elif line is not None:  # more operations, no more time: not a rate to quote
            fits.append(f"{label}: latency does not grow with MACs across these models, so "
                        "costs other than MACs (memory traffic, layer count) set it")  # fmt: skip
        _draw_points(ax, rows, colour, PREC_MARKERS.get(prec, "o"), label)
    if series:
        log_axis(ax, "x")
        log_axis(ax, "y")
        ax.legend(loc="best", fontsize=8, framealpha=0.9)
    else:
        no_data(ax, "no batch-1 timing rows with MACs in these results")
    ax.set_xlabel("Operations: multiply-accumulates per image (GMACs, log scale)")
    ax.set_ylabel("Batch-1 latency, p50 (ms, log scale)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    caption = (
        "One point per model: its batch-1 p50 latency (single-stream where run) against its "
        "MACs per image; lines are least-squares fits latency = a + b × GMACs per engine and "
        f"precision (with {MIN_FIT_MODELS} or more models): the smaller b, the more operations "
        "per millisecond the runtime turns out. "
        + (
            "; ".join(fits) + "."
            if fits
            else f"No series has {MIN_FIT_MODELS} models, so no line is fitted (two points fix a "
            "line; they do not test one)."
        )
    )
    if any(r.get("valid_b1") is False for rows in series.values() for r in rows):
        caption += " Faded markers: invalid measurements (see the table's verdicts)."
    return save(fig, out, "latency_vs_macs", title, caption)


def _draw_fit(ax: Any, xs: list[float], a: float, b: float, colour: Any) -> None:
    lo, hi = min(xs), max(xs)
    grid = [lo * (hi / lo) ** (k / 40) for k in range(41)]
    pts = [(x, a + b * x) for x in grid if a + b * x > 0]
    if pts:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour, lw=1.2, alpha=0.7)


def _draw_points(ax: Any, rows: list[Row], colour: Any, marker: str, label: str) -> None:
    for k, r in enumerate(rows):
        shaky = r.get("valid_b1") is False
        ax.scatter(
            r["gmacs"], r["latency_ms_p50_b1"], s=55, marker=marker, color=colour,
            alpha=0.35 if shaky else 1.0, zorder=3, label=label if k == 0 else None,
        )  # fmt: skip
        ax.annotate(
            str(r["model"]), (r["gmacs"], r["latency_ms_p50_b1"]), fontsize=7,
            xytext=(4, 3), textcoords="offset points",
        )  # fmt: skip
