"""The report's history figures, from the results store: latency and throughput over time.

One small panel per cell (machine, model, engine, precision, device, batch, scenario, variant),
time on x: valid rows as filled points joined by a line, invalid rows as red crosses (their
reason is in the table and the store), error rows left out. At most :data:`MAX_CELLS` panels,
the cells with the most points first; the caption says how many were left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cnnbench.bench.measure.validity import row_valid
from cnnbench.bench.report.plot_helpers import Plot, save
from cnnbench.bench.report.rows import Row, num
from cnnbench.bench.results.files import cell_key

MAX_CELLS = 24
_COLS = 3
_METRICS = {
    "latency": ("latency_ms_p50", "p50 latency (ms)", "Latency over time"),
    "throughput": ("throughput_ips", "throughput (img/s)", "Throughput over time"),
}


def cells_over_time(rows: Sequence[Row]) -> dict[str, list[Row]]:
    """Rows without error per cell (with its machine when rows come from several), in time
    order."""
    machines = {r.get("machine") for r in rows}
    out: dict[str, list[Row]] = {}
    for r in rows:
        if r.get("error") or not r.get("recorded_at"):
            continue
        key = cell_key(r, repeat=False)
        if len(machines) > 1:
            key = f"{r.get('machine')}|{key}"
        out.setdefault(key, []).append(r)
    for v in out.values():
        v.sort(key=lambda r: (str(r["recorded_at"]), int(num(r.get("cell_id")) or 0)))
    return out


def write_history_plots(
    out: Path, rows: Sequence[Row], *, shared_y: bool = False
) -> dict[str, Plot]:
    """``latency_over_time`` and ``throughput_over_time`` into ``out``; by name. With
    ``shared_y`` every panel of a figure has the same y-range, so cells compare at a glance."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    series = cells_over_time(rows)
    ranked = sorted(series, key=lambda k: (-len(series[k]), k))
    shown = {k: series[k] for k in sorted(ranked[:MAX_CELLS])}
    left_out = len(series) - len(shown)
    rc: dict[str, Any] = {"svg.fonttype": "none", "svg.hashsalt": "cnnbench"}
    plots: dict[str, Plot] = {}
    with matplotlib.rc_context(rc):  # type: ignore[arg-type]
        for kind, (metric, ylabel, title) in _METRICS.items():
            plots[f"{kind}_over_time"] = _panels(out, f"{kind}_over_time", shown, metric, ylabel,
                                                 title, left_out, shared_y)  # fmt: skip
    return plots


def _when(r: Row) -> datetime:
    return datetime.fromisoformat(str(r["recorded_at"]).replace("Z", "+00:00"))


def _panels(
    out: Path,
    name: str,
    series: Mapping[str, list[Row]],
    metric: str,
    ylabel: str,
    title: str,
    left_out: int,
    shared_y: bool = False,
) -> Plot:
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    n = max(1, len(series))
    ncols = min(_COLS, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.2 * ncols, 2.6 * nrows), squeeze=False, constrained_layout=True
    )
    flat = [ax for row in axes for ax in row]
    n_invalid = 0
    for ax, (key, rows) in zip(flat, series.items(), strict=False):
        pts = [(_when(r), num(r.get(metric)), row_valid(r) is not False) for r in rows]
        pts = [(t, v, ok) for t, v, ok in pts if v is not None and math.isfinite(v)]
        good = [(t, v) for t, v, ok in pts if ok]
        bad = [(t, v) for t, v, ok in pts if not ok]
        n_invalid += len(bad)
        if good:
            ax.plot(*zip(*good, strict=True), "-o", color="tab:blue", ms=4, lw=1, label="valid")
        if bad:
            ax.plot(*zip(*bad, strict=True), "x", color="tab:red", ms=7, mew=2, label="invalid")
        ax.set_title(
            _title(rows[0], with_machine=not key.startswith(str(rows[0].get("model")))), fontsize=8
        )
        ax.set_ylabel(ylabel, fontsize=7)
        ax.tick_params(labelsize=7)
        locator = mdates.AutoDateLocator(minticks=2, maxticks=5)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        _label_commits(ax, rows, metric)
        if not pts:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    if shared_y:
        _share_y(flat[: len(series)], series, metric)
    for ax in flat[len(series) :]:
        ax.set_axis_off()
    if not series:
        flat[0].text(0.5, 0.5, "no rows in the store", ha="center", va="center",
                     transform=flat[0].transAxes)  # fmt: skip
    handles = [
        plt.Line2D([], [], marker="o", color="tab:blue", ls="-", ms=4, label="valid row"),
        plt.Line2D([], [], marker="x", color="tab:red", ls="", ms=7, mew=2, label="invalid row"),
    ]
    fig.legend(handles=handles, loc="outside upper right", fontsize=8, ncols=2)
    fig.suptitle(title, fontsize=10)
    caption = (
        f"{metric} of each cell per recorded row, in UTC time order, from the results store. "
        f"Filled points are valid rows; red crosses are invalid rows ({n_invalid} here: noisy, "
        "shared CPU or too few samples; see invalid_reason), never a trend. "
        "Rows with an error are left out. Each point is labelled with the first 7 characters "
        "of the git commit its run measured."
        + (" All panels share one y-range." if shared_y else " Each panel has its own y-range.")
    )
    if left_out:
        caption += f" {left_out} more cell(s) with fewer points are not drawn."
    return save(fig, out, name, title, caption)


def _label_commits(ax: Any, rows: list[Row], metric: str) -> None:
    """Each point's git commit (where its run recorded one), small, above the point."""
    for r in rows:
        v, commit = num(r.get(metric)), str(r.get("env_git_commit") or "")[:7]
        if commit and v is not None and math.isfinite(v):
            ax.annotate(commit, (_when(r), v), fontsize=5, color="0.4", xytext=(0, 4),
                        textcoords="offset points", ha="center")  # fmt: skip


def _share_y(axes: Sequence[Any], series: Mapping[str, list[Row]], metric: str) -> None:
    vals = [v for rows in series.values() for r in rows
            if (v := num(r.get(metric))) is not None and math.isfinite(v)]  # fmt: skip
    if vals:
        lo, hi = min(vals), max(vals)
        pad = (hi - lo) * 0.08 or abs(hi) * 0.08 or 1.0
        for ax in axes:
            ax.set_ylim(lo - pad, hi + pad)


def _title(r: Row, *, with_machine: bool) -> str:
    parts = [str(r.get(k)) for k in ("model", "engine", "precision", "device")]
    parts += [f"b{r.get('batch')}", str(r.get("scenario"))]
    if r.get("variant"):
        parts.append(str(r["variant"]))
    if with_machine:
        parts.insert(0, f"{r.get('machine')}:")
    return " ".join(parts)
