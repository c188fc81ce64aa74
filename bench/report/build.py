"""``cnnbench report``: the decision first, then a compact comparison table, then the plots.

Reads results files (and the store's rows), writes ``comparison.csv`` (see
:mod:`bench.report.comparison` for what each column is), the figures and ``index.html``, whose
first section is the deployment decision (:mod:`bench.report.recommend`) under the given
constraints (the defaults stated).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.analysis_cache import zoo_listing
from cnnbench.artifacts import atomic_write_text, ensure_dir
from cnnbench.bench.report.comparison import COMPARISON_COLUMNS, compare_rows, series_rows
from cnnbench.bench.report.history_plots import write_history_plots
from cnnbench.bench.report.html import write_index
from cnnbench.bench.report.plot_helpers import Plot
from cnnbench.bench.report.plots import write_plots
from cnnbench.bench.report.recommend import Constraints, Decision, candidates, recommend
from cnnbench.bench.report.rows import Row, ZooEntry, blank, num
from cnnbench.bench.results.files import cell_key, read_rows
from cnnbench.errors import InvalidInputError

__all__ = [
    "COMPARISON_COLUMNS",
    "Report",
    "Row",
    "ZooEntry",
    "compare_rows",
    "blank",
    "num",
    "series_rows",
    "write_report",
    "zoo_entries",
]


def zoo_entries() -> dict[str, ZooEntry]:
    """Every registered model with params/MACs (cnnbench.analysis, cached) and published top-1."""
    return {
        r["name"]: ZooEntry(
            r["name"],
            r["family"],
            r.get("params"),
            r.get("macs"),
            r.get("top1"),
            r.get("top1_source"),
            bool(r.get("imagenet")),
        )
        for r in zoo_listing()
    }


def load_results(paths: Sequence[str | Path]) -> list[Row]:
    """All rows of the given results files (CSV or JSON lines), in order."""
    if not paths:
        raise InvalidInputError("give at least one results file (.csv or .jsonl)")
    rows: list[Row] = []
    for p in paths:
        rows.extend(read_rows(p))
    if not rows:
        raise InvalidInputError(f"no result rows in {', '.join(map(str, paths))}; run a sweep")
    missing = [c for c in ("model", "engine", "precision") if all(blank(r.get(c)) for r in rows)]
    if missing:
        raise InvalidInputError(
            f"{paths[0]} is not a cnnbench results file (no {', '.join(missing)} column)"
        )
    return rows


@dataclass(frozen=True)
class Report:
    """What ``cnnbench report`` wrote."""

    out_dir: Path
    comparison_csv: Path
    plots: dict[str, list[Path]]
    index_html: Path
    rows: list[Row]
    decision: Decision
    #: the figures, with their titles and captions
    figures: dict[str, Plot]


def write_report(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    zoo: Mapping[str, ZooEntry] | None = None,
    store_rows: Sequence[Row] | None = None,
    store_label: str | None = None,
    constraints: Constraints | None = None,
    zoo_context: bool = False,
    baseline_engine: str | None = None,
    include_null: bool = False,
    extra_rows: Sequence[Row] | None = None,
) -> Report:
    """Read results, write comparison.csv, the plots (PNG + SVG) and index.html into ``out_dir``.

    ``zoo`` defaults to :func:`zoo_entries` (every registered model, for the top-1-vs-GMACs
    plot and for params/MACs/published top-1 of cells whose rows lack them). ``store_rows``
    (the results store's cells, each with ``run_id`` and ``recorded_at``) add the history
    figures, and, for cells no results file has, their newest run's rows to the comparison.
    ``constraints`` drive the decision (default: none, objective throughput); ``zoo_context``
    adds every zoo model's published top-1 to the accuracy figure; ``baseline_engine`` is what
    speed-ups are against; ``include_null`` keeps the null engine's rows; ``extra_rows`` are
    rows already read (a service job's).
    """
    rows = load_results(paths) if paths else []
    sources = [str(p) for p in paths]
    if extra_rows:
        rows += list(extra_rows)
        sources.append("the store")
    if store_rows is not None:
        have = {cell_key(r, repeat=False) for r in rows}
        rows += [r for r in newest_run_rows(store_rows) if cell_key(r, repeat=False) not in have]
        sources.append(store_label or "the results store")
    if not rows:
        raise InvalidInputError("no result rows: give results files, or --db with recorded runs")
    out = ensure_dir(Path(out_dir))
    zoo = dict(zoo) if zoo is not None else zoo_entries()
    comparison = compare_rows(rows, zoo, baseline_engine=baseline_engine, include_null=include_null)
    csv_path = out / "comparison.csv"
    _write_csv(csv_path, comparison)
    plots = write_plots(out, comparison, series_rows(rows), zoo, zoo_context=zoo_context)
    if store_rows is not None:
        plots.update(write_history_plots(out, store_rows))
    published = {m: (z.top1, z.top1_source) for m, z in zoo.items()}
    timing = [r for r in rows if include_null or r.get("engine") != "null"]
    decision = recommend(candidates(timing, published), constraints or Constraints())
    index = write_index(out, comparison, plots, sources=sources, decision=decision)
    return Report(
        out, csv_path, {k: v.files for k, v in plots.items()}, index, comparison, decision,
        dict(plots),
    )  # fmt: skip


def newest_run_rows(rows: Sequence[Row]) -> list[Row]:
    """Per cell, the rows of the newest run that measured it (all its repeats)."""
    newest: dict[str, Any] = {}
    for r in rows:
        k = cell_key(r, repeat=False)
        newest[k] = max(newest.get(k, r["run_id"]), r["run_id"])
    return [r for r in rows if r["run_id"] == newest[cell_key(r, repeat=False)]]


def _write_csv(path: Path, rows: list[Row]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COMPARISON_COLUMNS), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _csv_cell(r.get(c)) for c in COMPARISON_COLUMNS})
    atomic_write_text(path, buf.getvalue())


def _csv_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return v
