"""The comparison: one row per model x engine x precision x device, from result rows.

Input rows follow the results contract (:mod:`bench.results.files`). Rows with a ``top1`` value and
``accuracy_source == "measured"`` (written by ``cnnbench eval --data``) carry measured accuracy;
every other row is a timing cell. Where no measured accuracy exists for a cell, its top-1 is the
model spec's published figure, and ``top1_source`` says which of the two it is.

Column definitions (all on the cell's own device):

* ``latency_ms_p50_b1`` / ``latency_ms_p99_b1``: batch-1 latency, from single-stream rows when
  present, else from other batch-1 rows (never server rows, whose latency includes queueing).
* ``best_throughput_ips`` / ``best_batch``: the highest throughput over offline rows (any
  non-server row when there is no offline row) and the batch that gave it.
* ``host_peak_rss_mb`` / ``device_mem_peak_mb``: the largest peak over the cell's rows.
* ``speedup_latency_b1`` = torch-FP32 p50 / this p50; ``speedup_throughput`` = this best
  throughput / torch-FP32 best throughput (same model and device).
* ``efficiency``: share of the measured matrix-multiply peak at the best-throughput row.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.analysis_cache import zoo_listing
from cnnbench.artifacts import atomic_write_text, ensure_dir
from cnnbench.bench.report.history_plots import write_history_plots
from cnnbench.bench.report.html import write_index
from cnnbench.bench.report.plots import write_plots
from cnnbench.bench.report.rows import (
    Row,
    ZooEntry,
    blank,
    cell_of,
    invalid,
    is_accuracy_row,
    num,
)
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

COMPARISON_COLUMNS = (
    "model", "family", "engine", "precision", "device",
    "params", "gmacs",
    "top1", "top5", "top1_source", "top1_detail", "fp32_top1_agreement",
    "latency_ms_p50_b1", "latency_ms_p99_b1",
    "best_throughput_ips", "best_batch",
    "host_peak_rss_mb", "device_mem_peak_mb", "device_mem_source",
    "speedup_latency_b1", "speedup_throughput", "efficiency",
    "cells", "errors", "first_error",
    "valid_b1", "valid_best", "invalid_rows", "invalid_reason",
)  # fmt: skip


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


def _ok(row: Mapping[str, Any]) -> bool:
    return blank(row.get("error"))


def _b1_row(rows: Iterable[Row]) -> Row | None:
    b1 = [r for r in rows if num(r.get("batch")) == 1 and r.get("scenario") != "server"]
    b1 = [r for r in b1 if num(r.get("latency_ms_p50")) is not None]
    single = [r for r in b1 if r.get("scenario") == "single-stream"]
    pick = single or b1
    return min(pick, key=lambda r: num(r["latency_ms_p50"]) or math.inf) if pick else None


def _best_row(rows: Iterable[Row]) -> Row | None:
    cand = [r for r in rows if num(r.get("throughput_ips")) is not None]
    offline = [r for r in cand if r.get("scenario") == "offline"]
    pick = offline or [r for r in cand if r.get("scenario") != "server"]
    return max(pick, key=lambda r: num(r["throughput_ips"]) or 0.0) if pick else None


def _max(rows: Iterable[Row], key: str) -> float | None:
    vals = [v for r in rows if (v := num(r.get(key))) is not None]
    return max(vals) if vals else None


def _first(rows: list[Row], key: str) -> float | None:
    return next((v for r in rows if (v := num(r.get(key))) is not None), None)


def _accuracy(acc_rows: list[Row], zoo: ZooEntry | None) -> dict[str, Any]:
    if acc_rows:
        r = acc_rows[-1]  # the latest evaluation wins
        n = num(r.get("images"))
        where = f"{r.get('dataset') or 'dataset'}" + (f" ({int(n)} images)" if n else "")
        return {
            "top1": num(r.get("top1")),
            "top5": num(r.get("top5")),
            "top1_source": "measured",
            "top1_detail": f"measured on {where} with {r.get('engine')} {r.get('precision')}",
        }
    if zoo is not None and zoo.top1 is not None:
        return {
            "top1": zoo.top1,
            "top5": None,
            "top1_source": "published",
            "top1_detail": zoo.top1_source or "model spec",
        }
    return {"top1": None, "top5": None, "top1_source": "", "top1_detail": ""}


# The null engine runs no model (it measures the harness's own overhead): no accuracy.
_NO_MODEL = {"top1": None, "top5": None, "top1_source": "", "top1_detail": "null engine: no model"}


def compare_rows(rows: list[Row], zoo: Mapping[str, ZooEntry] | None = None) -> list[Row]:
    """Collapse result rows into comparison rows (see the module docstring for each column)."""
    zoo = zoo or {}
    groups: dict[tuple[str, str, str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault(cell_of(r), []).append(r)
    out: list[Row] = []
    for key, group in groups.items():
        model, engine, precision, device = key
        perf = [r for r in group if not is_accuracy_row(r)]
        good = [r for r in perf if _ok(r)]
        acc = [r for r in group if is_accuracy_row(r) and _ok(r) and num(r.get("top1")) is not None]
        z = zoo.get(model)
        b1, best = _b1_row(good), _best_row(good)
        params = next((num(r.get("params")) for r in group if num(r.get("params"))), None)
        macs = next((num(r.get("macs")) for r in group if num(r.get("macs"))), None)
        params = params if params is not None else (z.params if z else None)
        macs = macs if macs is not None else (z.macs if z else None)
        errors = [r for r in group if not _ok(r)]
        bad = [r for r in good if invalid(r)]
        out.append(
            {
                "model": model,
                "family": z.family if z else "",
                "engine": engine,
                "precision": precision,
                "device": device,
                "params": int(params) if params is not None else None,
                "gmacs": round(macs / 1e9, 4) if macs is not None else None,
                **(_NO_MODEL if engine == "null" else _accuracy(acc, z)),
                "fp32_top1_agreement": _first(perf, "fp32_top1_agreement"),
                "latency_ms_p50_b1": num(b1.get("latency_ms_p50")) if b1 else None,
                "latency_ms_p99_b1": num(b1.get("latency_ms_p99")) if b1 else None,
                "best_throughput_ips": num(best.get("throughput_ips")) if best else None,
                "best_batch": int(best["batch"]) if best and num(best.get("batch")) else None,
                "host_peak_rss_mb": _max(good, "host_peak_rss_mb"),
                "device_mem_peak_mb": _max(good, "device_mem_peak_mb"),
                # a figure is only as comparable as its source: NVML's, or torch's allocator
                "device_mem_source": "; ".join(
                    sorted(
                        {str(r["device_mem_source"]) for r in good if r.get("device_mem_source")}
                    )
                ),
                "efficiency": num(best.get("efficiency")) if best else None,
                "cells": len(perf),
                "errors": len(errors),
                "first_error": str(errors[0].get("error")) if errors else "",
                # the verdicts behind the figures: invalid rows are shown apart, not dropped
                "valid_b1": not invalid(b1) if b1 else None,
                "valid_best": not invalid(best) if best else None,
                "invalid_rows": len(bad),
                "invalid_reason": str(bad[0].get("invalid_reason") or "") if bad else "",
            }
        )
    _add_speedups(out)
    out.sort(
        key=lambda r: (r["model"], r["device"], r["engine"] != "torch", r["engine"], r["precision"])
    )
    return out


def _add_speedups(out: list[Row]) -> None:
    base = {
        (r["model"], r["device"]): r
        for r in out
        if r["engine"] == "torch" and r["precision"] == "fp32"
    }
    for r in out:
        b = base.get((r["model"], r["device"]))
        lat, blat = r["latency_ms_p50_b1"], b["latency_ms_p50_b1"] if b else None
        thr, bthr = r["best_throughput_ips"], b["best_throughput_ips"] if b else None
        r["speedup_latency_b1"] = blat / lat if lat and blat else None
        r["speedup_throughput"] = thr / bthr if thr and bthr else None


def series_rows(rows: list[Row]) -> dict[tuple[str, str, str, str], list[Row]]:
    """Successful timing rows per cell, one per batch (offline preferred), sorted by batch."""
    out: dict[tuple[str, str, str, str], dict[int, Row]] = {}
    for r in rows:
        b = num(r.get("batch"))
        if is_accuracy_row(r) or not _ok(r) or b is None or r.get("scenario") == "server":
            continue
        per = out.setdefault(cell_of(r), {})
        cur = per.get(int(b))
        if cur is None or (r.get("scenario") == "offline" and cur.get("scenario") != "offline"):
            per[int(b)] = r
    return {k: [v[b] for b in sorted(v)] for k, v in out.items()}


@dataclass(frozen=True)
class Report:
    """What ``cnnbench report`` wrote."""

    out_dir: Path
    comparison_csv: Path
    plots: dict[str, list[Path]]
    index_html: Path
    rows: list[Row]


def write_report(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    zoo: Mapping[str, ZooEntry] | None = None,
    store_rows: Sequence[Row] | None = None,
    store_label: str | None = None,
) -> Report:
    """Read results, write comparison.csv, the plots (PNG + SVG) and index.html into ``out_dir``.

    ``zoo`` defaults to :func:`zoo_entries` (every registered model, for the top-1-vs-GMACs
    plot and for params/MACs/published top-1 of cells whose rows lack them). ``store_rows``
    (the results store's cells, each with ``run_id`` and ``recorded_at``) add the history
    figures, and, for cells no results file has, their newest run's rows to the comparison.
    """
    rows = load_results(paths) if paths else []
    sources = [str(p) for p in paths]
    if store_rows is not None:
        have = {cell_key(r, repeat=False) for r in rows}
        rows += [r for r in newest_run_rows(store_rows) if cell_key(r, repeat=False) not in have]
        sources.append(store_label or "the results store")
    if not rows:
        raise InvalidInputError("no result rows: give results files, or --db with recorded runs")
    out = ensure_dir(Path(out_dir))
    zoo = dict(zoo) if zoo is not None else zoo_entries()
    comparison = compare_rows(rows, zoo)
    csv_path = out / "comparison.csv"
    _write_csv(csv_path, comparison)
    plots = write_plots(out, comparison, series_rows(rows), zoo)
    if store_rows is not None:
        plots.update(write_history_plots(out, store_rows))
    index = write_index(out, comparison, plots, sources=sources)
    return Report(out, csv_path, {k: v.files for k, v in plots.items()}, index, comparison)


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
