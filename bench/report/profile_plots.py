"""Where each profiled cell's time went: one horizontal bar per cell (``run --profile``), its
layer time per query split by layer type and executed precision; hatched segments are the
conversion overhead (layers the runtime added: reorders, reformats, Q/DQ that did not fuse).
An INT8 cell whose bar is fp32 did not run INT8, whatever its label says."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnnbench.bench.report.plot_helpers import Plot, save
from cnnbench.bench.report.rows import Row

#: segments drawn in colour; the rest of a bar is "other"
MAX_KINDS = 10


def _kinds(row: Row) -> dict[str, float]:
    raw = row.get("profile_by_kind")
    try:
        doc = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {str(k): float(v) for k, v in doc.items() if isinstance(v, (int, float))}


def profiled_cells(series: Mapping[Any, list[Row]]) -> list[tuple[str, dict[str, float]]]:
    """Per profiled cell and batch (its newest row): a label and its time by kind."""
    newest: dict[tuple[str, ...], tuple[str, dict[str, float]]] = {}
    for rows in series.values():
        for r in rows:
            kinds = _kinds(r)
            if not kinds:
                continue
            key = tuple(str(r.get(k)) for k in ("model", "engine", "precision", "device", "batch"))
            label = f"{r['model']} {r['engine']} {r['precision']} b{r['batch']}"
            if r.get("device") not in (None, "cpu"):
                label += f" ({r['device']})"
            newest[key] = (label, kinds)
    return [newest[k] for k in sorted(newest)]


def time_by_layer_type(out: Path, series: Mapping[Any, list[Row]]) -> Plot | None:
    """The figure (see the module); None when no row has a profile."""
    cells = profiled_cells(series)
    if not cells:
        return None
    import matplotlib.pyplot as plt

    totals: dict[str, float] = {}
    for _, kinds in cells:
        for k, v in kinds.items():
            totals[k] = totals.get(k, 0.0) + v
    shown = [k for k, _ in sorted(totals.items(), key=lambda kv: -kv[1])[:MAX_KINDS]]
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.42 * len(cells)))
    for y, (_, kinds) in enumerate(cells):
        left = 0.0
        for i, k in enumerate([*shown, "other"]):
            v = (
                kinds.get(k, 0.0)
                if k != "other"
                else sum(t for kk, t in kinds.items() if kk not in shown)
            )
            if v <= 0:
                continue
            ax.barh(
                y, v, left=left, color=cmap(i % 20) if k != "other" else "#cccccc",
                hatch="//" if k.startswith("conversion/") else None, edgecolor="white",
                label=k if y == _first_with(cells, k, shown) else None,
            )  # fmt: skip
            left += v
    ax.set_yticks(range(len(cells)), [label for label, _ in cells], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("Layer time per query (ms, sum of each layer's median)")
    title = "Where the time goes: layer time by type and executed precision"
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    ax.grid(True, axis="x", alpha=0.3)
    caption = (
        "One bar per profiled cell (run --profile): its layers' median times per query, split "
        "by the runtime's layer type and the precision each layer executed in (type/precision); "
        "hatched: conversion overhead, layers the runtime added (reorders, reformats, Q/DQ "
        "that did not fuse). An int8 cell whose bar is fp32 did not run INT8. The cell's own "
        "profile (cnnbench profile --diff compares two) is in the results' .profiles folder."
    )
    return save(fig, out, "time_by_layer_type", title, caption)


def _first_with(cells: list[tuple[str, dict[str, float]]], k: str, shown: list[str]) -> int:
    """The first bar that draws segment ``k`` (the one that labels it in the legend)."""
    for y, (_, kinds) in enumerate(cells):
        v = (
            kinds.get(k, 0.0)
            if k != "other"
            else sum(t for kk, t in kinds.items() if kk not in shown)
        )
        if v > 0:
            return y
    return -1
