"""The report's figures over batch size, ``throughput_vs_batch`` and ``memory_vs_batch``: one
line per model / engine / precision (colour: model; line style: engine; marker: precision),
invalid measurements crossed out."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnbench.bench.report.plot_helpers import (
    PREC_MARKERS,
    Plot,
    log_axis,
    no_data,
    save,
)
from cnnbench.bench.report.rows import Row, invalid, num

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_DASHES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)))
#: a series: model, engine, precision, device
SeriesKey = tuple[str, str, str, str]


def _series_label(engine: str, precision: str, device: str) -> str:
    return f"{engine} {precision}" + (f" ({device})" if device and device != "cpu" else "")


def vs_batch(out: Path, series: Mapping[SeriesKey, list[Row]], kind: str) -> Plot:
    """``throughput_vs_batch`` (``kind`` "throughput") or ``memory_vs_batch`` ("memory": host
    RSS, and device memory where the results have it), drawn and saved into ``out``."""
    import matplotlib.pyplot as plt

    keys = sorted(series)
    # Colour: model; line style: engine; marker: precision; so 30 lines still read.
    models = sorted({k[0] for k in keys})
    engines = sorted({k[1] for k in keys})
    cmap = plt.get_cmap("tab10" if len(models) <= 10 else "tab20")
    colour = {m: cmap(i % cmap.N) for i, m in enumerate(models)}
    dash = {e: _DASHES[i % len(_DASHES)] for i, e in enumerate(engines)}
    if kind == "throughput":
        panels, title, caption = _throughput_panels()
    else:
        panels, title, caption = _memory_panels(series)
    fig, axes = plt.subplots(
        1, len(panels), figsize=(7 + 3.5 * (len(panels) - 1) + 3, 5.5), squeeze=False
    )
    drawn = 0
    any_invalid = False
    for ax, (col, ylabel) in zip(axes[0], panels, strict=True):
        lines, crossed = _draw_panel(ax, keys, series, col, colour, dash)
        drawn += lines
        any_invalid = any_invalid or crossed
        ax.set_xlabel("Batch size (images per query, log₂ scale)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
        if drawn:
            log_axis(ax, "x", base=2)
            if kind == "throughput":
                log_axis(ax, "y")
        else:
            no_data(ax, "no timing rows in these results")
    fig.suptitle(title)
    _series_legend(fig, axes[0][0])
    fig.tight_layout()
    if any_invalid:
        caption += " Grey crosses: invalid measurements (see invalid_reason in the results)."
    name = f"{kind}_vs_batch"
    return save(fig, out, name, title, caption)


def _throughput_panels() -> tuple[list[tuple[str, str]], str, str]:
    """The throughput figure's panel (column, y label), its title and its caption."""
    panels = [("throughput_ips", "Throughput (images/s, log scale)")]
    title = "Throughput vs. batch size"
    caption = "Throughput: images/s = batch × completed queries / wall time of the measured window (offline rows where run)."
    return panels, title, caption


def _memory_panels(
    series: Mapping[SeriesKey, list[Row]],
) -> tuple[list[tuple[str, str]], str, str]:
    """The memory figure's panels (host RSS; device memory where the results have it), its
    title, and its caption, which says where the device figures come from."""
    has_dev = any(num(r.get("device_mem_peak_mb")) for rows in series.values() for r in rows)
    panels = [("host_peak_rss_mb", "Host peak RSS (MB)")]
    if has_dev:
        panels.append(("device_mem_peak_mb", "Device memory peak (MB)"))
    title = "Memory vs. batch size"
    sources = sorted(
        {
            str(r.get("device_mem_source"))
            for rows in series.values()
            for r in rows
            if num(r.get("device_mem_peak_mb")) and r.get("device_mem_source")
        }
    )
    if not has_dev:
        device_note = "No device-memory figures in these results (CPU only)."
    elif len(sources) > 1:  # never side by side without saying so
        device_note = (
            "Device: figures from different sources, not directly comparable: "
            + "; ".join(sources)
            + " (the source of each is in device_mem_source)."
        )
    else:
        device_note = f"Device: {sources[0] if sources else 'peak device memory'}."
    caption = "Host: peak resident set size of the benchmark process. " + device_note
    return panels, title, caption


def _draw_panel(
    ax: Axes,
    keys: list[SeriesKey],
    series: Mapping[SeriesKey, list[Row]],
    col: str,
    colour: dict[str, Any],
    dash: dict[str, Any],
) -> tuple[int, bool]:
    """One line per series with values in ``col``, a grey cross over each invalid point.
    Returns how many lines were drawn and whether any point was invalid."""
    drawn = 0
    any_invalid = False
    for key in keys:
        values = [(num(r.get("batch")), num(r.get(col))) for r in series[key]]
        pts = [(b, v) for b, v in values if b and v]
        if not pts:
            continue
        model, engine, precision, device = key
        ax.plot(
            [p[0] for p in pts], [p[1] for p in pts], marker=PREC_MARKERS.get(precision, "o"),
            ms=5, ls=dash[engine], color=colour[model], lw=1.6,
            label=f"{model} · {_series_label(engine, precision, device)}",
        )  # fmt: skip
        crossed = [(num(r.get("batch")), num(r.get(col))) for r in series[key] if invalid(r)]
        shaky = [(b, v) for b, v in crossed if b and v]
        if shaky:  # invalid measurements: a grey cross over the point
            ax.scatter(
                [p[0] for p in shaky], [p[1] for p in shaky], marker="x", s=60,
                color="0.25", zorder=4, linewidths=1.5,
            )  # fmt: skip
            any_invalid = True
        drawn += 1
    return drawn, any_invalid


def _series_legend(fig: Figure, first: Axes) -> None:
    """The first panel's series as the figure's legend, right of the panels."""
    handles, labels = first.get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=(1.0, 0.92),
            fontsize=8,
            frameon=False,
            ncol=1 if len(handles) <= 24 else 2,
        )
