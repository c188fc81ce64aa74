"""The report's figures, each saved as PNG and SVG (matplotlib, Agg backend).

* ``latency_vs_macs``: batch-1 latency against operations per engine and precision, with a
  fitted line (Canziani et al. 2016's operations-vs-time view; :mod:`bench.report.ops_plots`).
* ``top1_vs_gmacs``: top-1 against multiply-accumulates, bubble area ∝ parameters, colour by
  family (after Canziani et al.): the models of the results whose accuracy belongs to their
  rows, measured (filled) or published for published weights (hollow); with ``zoo_context``,
  every ImageNet zoo model at its published top-1 too, as labelled context.
* ``top1_vs_latency``: top-1 against batch-1 p50 latency, one series per engine + precision.
* ``throughput_vs_batch`` and ``memory_vs_batch``: one line per model / engine / precision
  (drawn by :mod:`bench.report.batch_plots`).

A row on random weights is never put on an accuracy axis: an accuracy figure with nothing to
show is not drawn, and the report says why. Every figure says where its top-1 values come from,
in its legend and in its caption (under the figure in the HTML, once).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnbench.bench.report.batch_plots import vs_batch
from cnnbench.bench.report.ops_plots import latency_vs_macs
from cnnbench.bench.report.plot_helpers import (
    PREC_MARKERS,
    Plot,
    log_axis,
    no_data,
    place_labels,
    save,
)
from cnnbench.bench.report.profile_plots import time_by_layer_type
from cnnbench.bench.report.rows import Row, ZooEntry, num

__all__ = ["Plot", "write_plots"]

if TYPE_CHECKING:
    from matplotlib.axes import Axes

PARAMS_TO_AREA = 12.0  # marker area in pt² per million parameters
#: the smallest top-1 range (points) the deployment plot's y axis shows
MIN_TOP1_SPAN = 4.0
PUBLISHED_MARKER = "o"


def write_plots(
    out: Path,
    comparison: list[Row],
    series: Mapping[tuple[str, str, str, str], list[Row]],
    zoo: Mapping[str, ZooEntry],
    *,
    zoo_context: bool = False,
) -> dict[str, Plot]:
    """Draw and save the figures into ``out``; returns them by name (an accuracy figure with
    no accuracy that belongs to the results is left out)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    # SVG text stays text (searchable, selectable, smaller); no timestamps in the files.
    rc: dict[str, Any] = {"svg.fonttype": "none", "svg.hashsalt": "cnnbench"}
    with matplotlib.rc_context(rc):  # type: ignore[arg-type]
        plots: list[Plot | None] = [latency_vs_macs(out, comparison)]
        if zoo_context or _with_accuracy(comparison, "gmacs"):
            plots.append(_top1_vs_gmacs(out, comparison, zoo, zoo_context=zoo_context))
        if _with_accuracy(comparison, "latency_ms_p50_b1"):
            plots.append(_top1_vs_latency(out, comparison, zoo))
        plots += [vs_batch(out, series, "throughput"), vs_batch(out, series, "memory")]
        plots.append(time_by_layer_type(out, series))
    return {p.name: p for p in plots if p is not None}


def _with_accuracy(comparison: list[Row], x: str) -> list[Row]:
    """The rows an accuracy figure can place: a top-1 that belongs to them, and its x."""
    return [r for r in comparison if num(r.get("top1")) is not None and num(r.get(x))]


def _family_colours(families: Sequence[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {f: cmap(i % 10) for i, f in enumerate(sorted(set(families)))}


def _measured_note(rows: Sequence[Row]) -> str:
    measured = [r for r in rows if r.get("top1_source") == "measured"]
    shown = "; ".join(f"{r['model']} {r['top1_detail']}" for r in measured[:6])
    more = f" (+{len(measured) - 6} more)" if len(measured) > 6 else ""
    return f" Measured top-1: {shown}{more}." if measured else ""


def _published_note(sources: Sequence[str]) -> str:
    uniq = sorted({s for s in sources if s})
    return "Published top-1 from: " + "; ".join(uniq) + "." if uniq else ""


@dataclass
class _Labelled:
    """The points of a figure that get a label: positions, marker areas (pt²) and texts."""

    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    sizes: list[float] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def add(self, x: float, y: float, size: float, name: str) -> None:
        self.xs.append(x)
        self.ys.append(y)
        self.sizes.append(size)
        self.names.append(name)


def _top1_vs_gmacs(
    out: Path, comparison: list[Row], zoo: Mapping[str, ZooEntry], *, zoo_context: bool
) -> Plot:
    import matplotlib.pyplot as plt

    benchmarked = {r["model"] for r in comparison if (r.get("cells") or 0) > 0}
    # published bubbles: the results' models on published weights, and with zoo_context the
    # whole zoo, as context
    published = {str(r["model"]) for r in comparison if r.get("top1_source") == "published"}
    models = [
        z for z in zoo.values()
        if z.imagenet and z.top1 is not None and z.macs and z.params
        and (zoo_context or z.name in published)
    ]  # fmt: skip
    colours = _family_colours(
        [z.family for z in models] + [str(r.get("family")) for r in comparison if r.get("family")]
    )
    fig, ax = plt.subplots(figsize=(11, 7))
    points = _Labelled()
    _draw_published(ax, models, benchmarked, colours, points)
    measured = [
        r for r in comparison
        if r.get("top1_source") == "measured" and r.get("gmacs") and num(r.get("top1")) is not None
        and r["model"] in zoo and zoo[r["model"]].imagenet
    ]  # fmt: skip
    _draw_measured(ax, measured, colours, points)
    log_axis(ax, "x")
    ax.set_xlabel("Operations: multiply-accumulates per image (GMACs, log scale)")
    ax.set_ylabel("ImageNet top-1 accuracy (%)")
    title = "Top-1 accuracy vs. operations (bubble area ∝ parameters)"
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    if points.xs:
        ax.set_xlim(min(points.xs) / 1.6, max(points.xs) * 1.6)
        ax.margins(y=0.12)
    radii = [math.sqrt(s / math.pi) for s in points.sizes]
    place_labels(ax, points.xs, points.ys, points.names, radii)
    _gmacs_legends(ax, colours, bool(benchmarked & {z.name for z in models}), measured)
    caption = _gmacs_caption(models, measured, zoo_context=zoo_context)
    return save(fig, out, "top1_vs_gmacs", title, caption)


def _draw_published(
    ax: Axes,
    models: list[ZooEntry],
    benchmarked: set[str],
    colours: dict[str, Any],
    points: _Labelled,
) -> None:
    """Every model at its published top-1: hollow bubbles (the fill is reserved for measured
    accuracy), outlined in black where the results have the model."""
    for z in sorted(models, key=lambda z: -(z.params or 0)):  # big bubbles behind small ones
        x, y = (z.macs or 0) / 1e9, float(z.top1 or 0.0)
        s = (z.params or 0) / 1e6 * PARAMS_TO_AREA
        # published: hollow (the fill is reserved for measured accuracy)
        ax.scatter(
            x, y, s=s, facecolors="none", alpha=0.8, marker=PUBLISHED_MARKER,
            edgecolors="black" if z.name in benchmarked else colours[z.family],
            linewidths=2.2 if z.name in benchmarked else 1.3, zorder=2,
        )  # fmt: skip
        points.add(x, y, s, z.name)


def _draw_measured(
    ax: Axes, measured: list[Row], colours: dict[str, Any], points: _Labelled
) -> None:
    """Measured top-1: filled markers, one per precision."""
    for r in measured:  # measured: filled, one marker per precision
        colour = colours.get(str(r.get("family")), "black")
        ax.scatter(
            r["gmacs"], r["top1"], s=60, marker=PREC_MARKERS.get(str(r["precision"]), "o"),
            facecolors=colour, edgecolors="black", linewidths=0.8, zorder=4,
        )  # fmt: skip
        points.add(
            r["gmacs"], r["top1"], 60.0, f"{r['model']} ({r['engine']} {r['precision']}, measured)"
        )


def _gmacs_legends(
    ax: Axes, colours: dict[str, Any], any_benchmarked: bool, measured: list[Row]
) -> None:
    """The bubble plot's two legends: what the markers mean, and the bubble sizes."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], ls="", marker="o", ms=9, mfc="none", mec=c, mew=1.6, label=f)
        for f, c in colours.items()
    ]
    if any_benchmarked:
        handles.append(
            Line2D([], [], ls="", marker="o", ms=9, mfc="none", mec="black", mew=2.2,
                   label="in these results")
        )  # fmt: skip
    handles.append(
        Line2D([], [], ls="", marker="o", ms=9, mfc="none", mec="0.4", mew=1.3,
               label="hollow: published top-1")
    )  # fmt: skip
    for prec in sorted({str(r["precision"]) for r in measured}):
        handles.append(
            Line2D([], [], ls="", marker=PREC_MARKERS.get(prec, "o"), ms=8, mfc="0.3", mec="black",
                   label=f"filled: measured top-1, {prec}")
        )  # fmt: skip
    kinds = ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False
    )
    ax.add_artist(kinds)
    sizes_h = [
        Line2D([], [], ls="", marker="o", ms=math.sqrt(p * PARAMS_TO_AREA), color="0.6",
               alpha=0.5, label=f"{p}M parameters")
        for p in (10, 50, 140)
    ]  # fmt: skip
    ax.legend(
        handles=sizes_h, loc="lower left", bbox_to_anchor=(1.01, 0.0), fontsize=8,
        labelspacing=2.2, borderpad=1.2, handletextpad=1.6, frameon=False,
    )  # fmt: skip


def _gmacs_caption(models: list[ZooEntry], measured: list[Row], *, zoo_context: bool) -> str:
    who = (
        f"Every ImageNet model in the zoo ({len(models)}) at its published top-1, as context"
        if zoo_context
        else f"The models of these results on published weights ({len(models)}) at their "
        "published top-1"
    )
    return (
        f"{who}; parameters and MACs from cnnbench's per-layer analysis at each model's input "
        "size. Models on random weights are not placed on this axis. "
        + _published_note([z.top1_source or "" for z in models])
        + (
            " Filled markers are measured top-1 (one marker per precision), hollow bubbles "
            "published figures." + _measured_note(measured)
            if measured
            else " No measured top-1 in these results: every value shown is published."
        )
    )


def _engine_label(engine: str, device: str) -> str:
    return engine + (f" ({device})" if device and device != "cpu" else "")


def _top1_vs_latency(out: Path, comparison: list[Row], zoo: Mapping[str, ZooEntry]) -> Plot:
    import matplotlib.pyplot as plt

    pts = [
        r for r in comparison if num(r.get("latency_ms_p50_b1")) and num(r.get("top1")) is not None
    ]
    # colour: engine (and device); marker: precision (the precision table's)
    engines = sorted({_engine_label(r["engine"], r["device"]) for r in pts})
    cmap = plt.get_cmap("tab10")
    colour_of = {e: cmap(i % 10) for i, e in enumerate(engines)}
    precisions = sorted({str(r["precision"]) for r in pts})
    fig, ax = plt.subplots(figsize=(10, 6))
    title = "Top-1 accuracy vs. batch-1 latency, per engine and precision"
    xs, ys, names = _draw_latency_points(ax, pts, colour_of)
    if pts:
        log_axis(ax, "x")
        ax.margins(x=0.15, y=0.15)
        lo, hi = min(ys), max(ys)
        if hi - lo < MIN_TOP1_SPAN:  # never zoom into a sliver between published figures
            mid = (lo + hi) / 2
            lo, hi = mid - MIN_TOP1_SPAN / 2, mid + MIN_TOP1_SPAN / 2
            ax.set_ylim(max(lo, 0.0), min(hi, 101.0))
        place_labels(ax, xs, ys, names, [5.0] * len(xs))
    else:
        no_data(ax, "no batch-1 timing rows with a top-1 in these results")
    ax.set_xlabel("Batch-1 latency, p50 (ms per image, log scale)")
    other = sorted({r["model"] for r in pts if r["model"] in zoo and not zoo[r["model"]].imagenet})
    ax.set_ylabel("Top-1 accuracy (%)" if other else "ImageNet top-1 accuracy (%)")
    if pts:
        ax.set_ylim(top=min(ax.get_ylim()[1], 101.0))
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    n_meas = sum(r.get("top1_source") == "measured" for r in pts)
    if pts:
        _latency_legend(ax, colour_of, precisions, n_meas)
    caption = (
        "Latency: p50 over the batch-1 cell (single-stream where run) on each cell's device."
        + _latency_provenance(pts, n_meas, other)
    )
    if any(r.get("valid_b1") is False for r in pts):
        caption += " Faded markers with dashed edges: invalid measurements (see invalid_reason)."
    caption += " Models on random weights are not placed on this axis."
    return save(fig, out, "top1_vs_latency", title, caption)


def _draw_latency_points(
    ax: Axes, pts: list[Row], colour_of: dict[str, Any]
) -> tuple[list[Any], list[Any], list[str]]:
    """One marker per row: colour by engine, marker by precision, filled when its top-1 was
    measured, faded with a dashed edge when the measurement is invalid. Returns the points'
    positions and labels."""
    xs, ys, names = [], [], []
    for r in pts:
        colour = colour_of[_engine_label(r["engine"], r["device"])]
        marker = PREC_MARKERS.get(str(r["precision"]), "o")
        measured = r.get("top1_source") == "measured"
        shaky = r.get("valid_b1") is False  # an invalid measurement: faded, dashed edge
        ax.scatter(
            r["latency_ms_p50_b1"], r["top1"], s=70, marker=marker, zorder=3,
            facecolors=colour if measured else "none", edgecolors=colour, linewidths=1.8,
            alpha=0.35 if shaky else 1.0, linestyles="--" if shaky else "-",
        )  # fmt: skip
        xs.append(r["latency_ms_p50_b1"])
        ys.append(r["top1"])
        agree = num(r.get("fp32_top1_agreement"))
        if not measured and agree is not None:  # no accuracy measured: the drop vs FP32 instead
            names.append(f"{r['model']} {r['precision']}: {100 * agree:.1f}% top-1 = fp32")
        else:
            names.append(r["model"])
    return xs, ys, names


def _latency_legend(
    ax: Axes, colour_of: dict[str, Any], precisions: list[str], n_meas: int
) -> None:
    """Engines by colour, precisions by marker, and hollow / filled for the top-1's source."""
    from matplotlib.lines import Line2D

    handles = [
        # Hollow like the published points: fill is reserved for provenance.
        Line2D([], [], ls="", marker="o", ms=8, mfc="none", mec=c, mew=1.8, label=e)
        for e, c in colour_of.items()
    ] + [
        Line2D([], [], ls="", marker=PREC_MARKERS.get(p, "o"), ms=8, mfc="none", mec="0.3",
               mew=1.8, label=p)
        for p in precisions
    ]  # fmt: skip
    handles.append(
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            ms=8,
            mfc="none",
            mec="0.3",
            mew=1.8,
            label="hollow: published top-1",
        )
    )
    if n_meas:
        handles.append(
            Line2D(
                [],
                [],
                ls="",
                marker="o",
                ms=8,
                mfc="0.3",
                mec="0.3",
                label="filled: measured top-1",
            )
        )
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False
    )


def _latency_provenance(pts: list[Row], n_meas: int, other: list[str]) -> str:
    """Where the latency plot's top-1 values come from, for its caption."""
    if not pts:
        prov = ""
    elif n_meas == 0:
        prov = " Every top-1 shown is published (hollow markers), not measured in this run."
        if any(num(r.get("fp32_top1_agreement")) is not None for r in pts):
            prov += (
                " A reduced precision sits at its model's published FP32 figure; its label gives"
                " how often its top-1 agreed with the FP32 file's in the parity check, which"
                " bounds its accuracy drop."
            )
    elif n_meas == len(pts):
        prov = " Every top-1 shown was measured (filled markers)." + _measured_note(pts)
    else:
        prov = (
            f" Mixed provenance: filled markers ({n_meas}) are measured top-1, "
            f"hollow markers ({len(pts) - n_meas}) are published top-1." + _measured_note(pts)
        )
    if other:
        prov += f" Not ImageNet models, top-1 on their own dataset: {', '.join(other)}."
    return prov
