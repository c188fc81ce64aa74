"""The comparison: one row per model × engine × precision × device, from result rows.

Input rows follow the results contract (:mod:`bench.results.files`). Each figure says what it
is (all on the cell's own device):

* ``latency_ms_p50_b1`` / ``latency_ms_p99_b1``: batch-1 latency, from single-stream rows when
  present, else from other batch-1 rows (never server rows, whose latency includes queueing):
  the **median over the cell's repeats**, with ``latency_ms_p50_b1_min`` / ``_max``.
* ``best_throughput_ips`` / ``best_batch``: the batch whose median throughput over its repeats
  is the highest (offline rows; any non-server row when there is no offline row), with
  ``best_throughput_ips_min`` / ``_max`` over those repeats.
* ``host_peak_rss_mb`` / ``device_mem_peak_mb``: the largest peak over the cell's rows.
* ``speedup_latency_b1`` = baseline p50 / this p50; ``speedup_throughput`` = this best
  throughput / the baseline's; the baseline (``speedup_baseline``) is the same model on the
  same device with ``baseline_engine`` at FP32: by default torch where it ran, else the
  slowest engine. ``speedup_valid`` is false when either side's measurement is invalid.
* ``top1``: accuracy that belongs to the row (:mod:`bench.report.top1`): measured on the same
  artifact, or published for published weights; ``top1_source`` says which, or ``random``.
* ``efficiency``: share of the measured matrix-multiply peak at the best-throughput row.

The null engine's rows (the harness's own overhead) are left out unless asked for.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cnnbench.bench.report.rows import Row, ZooEntry, blank, cell_of, invalid, is_accuracy_row, num
from cnnbench.bench.report.top1 import Accuracy

COMPARISON_COLUMNS = (
    "model", "family", "engine", "precision", "device", "weights",
    "params", "gmacs",
    "top1", "top5", "top1_source", "top1_detail", "fp32_top1_agreement",
    "repeats",
    "latency_ms_p50_b1", "latency_ms_p50_b1_min", "latency_ms_p50_b1_max", "latency_ms_p99_b1",
    "best_throughput_ips", "best_throughput_ips_min", "best_throughput_ips_max", "best_batch",
    "host_peak_rss_mb", "device_mem_peak_mb", "device_mem_source",
    "speedup_baseline", "speedup_latency_b1", "speedup_throughput", "speedup_valid",
    "efficiency", "macs_int8_share", "int8_warning",
    "cells", "errors", "first_error",
    "valid_b1", "valid_best", "invalid_rows", "invalid_reason",
)  # fmt: skip


def _ok(row: Mapping[str, Any]) -> bool:
    return blank(row.get("error"))


def _stats(rows: Sequence[Row], key: str) -> tuple[float | None, float | None, float | None]:
    """(median, min, max) of ``key`` over ``rows`` (a cell's repeats)."""
    vals = [v for r in rows if (v := num(r.get(key))) is not None]
    if not vals:
        return None, None, None
    return statistics.median(vals), min(vals), max(vals)


def _b1_rows(rows: Iterable[Row]) -> list[Row]:
    """The batch-1 rows latency comes from: single-stream where run, else any non-server."""
    b1 = [r for r in rows if num(r.get("batch")) == 1 and r.get("scenario") != "server"]
    b1 = [r for r in b1 if num(r.get("latency_ms_p50")) is not None]
    single = [r for r in b1 if r.get("scenario") == "single-stream"]
    return single or b1


def _best_rows(rows: Iterable[Row]) -> list[Row]:
    """The repeats of the batch with the best median throughput."""
    cand = [r for r in rows if num(r.get("throughput_ips")) is not None]
    offline = [r for r in cand if r.get("scenario") == "offline"]
    pick = offline or [r for r in cand if r.get("scenario") != "server"]
    by_batch: dict[Any, list[Row]] = {}
    for r in pick:
        by_batch.setdefault(r.get("batch"), []).append(r)
    if not by_batch:
        return []
    return max(by_batch.values(), key=lambda rs: _stats(rs, "throughput_ips")[0] or 0.0)


def _max(rows: Iterable[Row], key: str) -> float | None:
    vals = [v for r in rows if (v := num(r.get(key))) is not None]
    return max(vals) if vals else None


def _first(rows: list[Row], key: str) -> float | None:
    return next((v for r in rows if (v := num(r.get(key))) is not None), None)


def compare_rows(
    rows: list[Row],
    zoo: Mapping[str, ZooEntry] | None = None,
    *,
    baseline_engine: str | None = None,
    include_null: bool = False,
) -> list[Row]:
    """Collapse result rows into comparison rows (see the module docstring for each column)."""
    zoo = zoo or {}
    acc = Accuracy(rows)
    groups: dict[tuple[str, str, str, str], list[Row]] = {}
    for r in rows:
        if include_null or r.get("engine") != "null":
            groups.setdefault(cell_of(r), []).append(r)
    out = [_comparison_row(key, group, zoo.get(key[0]), acc) for key, group in groups.items()]
    add_speedups(out, baseline_engine)
    out.sort(key=lambda r: (r["model"], r["device"], r["engine"], r["precision"]))
    return out


def _comparison_row(
    key: tuple[str, str, str, str], group: list[Row], z: ZooEntry | None, acc: Accuracy
) -> Row:
    model, engine, precision, device = key
    perf = [r for r in group if not is_accuracy_row(r)]
    good = [r for r in perf if _ok(r)]
    b1, best = _b1_rows(good), _best_rows(good)
    p50, p50_lo, p50_hi = _stats(b1, "latency_ms_p50")
    thr, thr_lo, thr_hi = _stats(best, "throughput_ips")
    params = next((num(r.get("params")) for r in group if num(r.get("params"))), None)
    macs = next((num(r.get("macs")) for r in group if num(r.get("macs"))), None)
    params = params if params is not None else (z.params if z else None)
    macs = macs if macs is not None else (z.macs if z else None)
    errors = [r for r in group if not _ok(r)]
    bad = [r for r in good if invalid(r)]
    first = (good or perf or group)[0]
    return {
        "model": model, "family": z.family if z else "", "engine": engine,
        "precision": precision, "device": device, "weights": first.get("weights"),
        "params": int(params) if params is not None else None,
        "gmacs": round(macs / 1e9, 4) if macs is not None else None,
        **acc.of(first, z.top1 if z else None, z.top1_source if z else None).to_fields(),
        "fp32_top1_agreement": _first(perf, "fp32_top1_agreement"),
        # what ran: the share of MACs in int8, and why an INT8 cell did not run INT8
        "macs_int8_share": _stats(good, "macs_int8_share")[0],
        "int8_warning": next((str(r["int8_warning"]) for r in good if r.get("int8_warning")), ""),
        "repeats": max((len(b1), len(best))),
        "latency_ms_p50_b1": p50, "latency_ms_p50_b1_min": p50_lo, "latency_ms_p50_b1_max": p50_hi,
        "latency_ms_p99_b1": _stats(b1, "latency_ms_p99")[0],
        "best_throughput_ips": thr, "best_throughput_ips_min": thr_lo,
        "best_throughput_ips_max": thr_hi,
        "best_batch": int(best[0]["batch"]) if best and num(best[0].get("batch")) else None,
        "host_peak_rss_mb": _max(good, "host_peak_rss_mb"),
        "device_mem_peak_mb": _max(good, "device_mem_peak_mb"),
        # a figure is only as comparable as its source: NVML's, or torch's allocator
        "device_mem_source": "; ".join(
            sorted({str(r["device_mem_source"]) for r in good if r.get("device_mem_source")})
        ),
        "efficiency": _stats(best, "efficiency")[0],
        "cells": len(perf), "errors": len(errors),
        "first_error": str(errors[0].get("error")) if errors else "",
        # the verdicts behind the figures: invalid rows are shown apart, not dropped
        "valid_b1": not any(invalid(r) for r in b1) if b1 else None,
        "valid_best": not any(invalid(r) for r in best) if best else None,
        "invalid_rows": len(bad),
        "invalid_reason": str(bad[0].get("invalid_reason") or "") if bad else "",
    }  # fmt: skip


def _baseline(rows: list[Row], engine: str | None) -> Row | None:
    """The baseline of one model on one device: ``engine`` (its FP32 row where it has one);
    by default torch where it ran, else the slowest engine by best throughput."""
    if engine is None:
        engine = "torch" if any(r["engine"] == "torch" for r in rows) else None
    pool = [r for r in rows if engine is None or r["engine"] == engine]
    fp32 = [r for r in pool if r["precision"] == "fp32"] or pool
    if not fp32:
        return None
    if engine is not None:
        return fp32[0]
    timed = [r for r in fp32 if r.get("best_throughput_ips")]
    return min(timed, key=lambda r: r["best_throughput_ips"]) if timed else None


def add_speedups(out: list[Row], baseline_engine: str | None) -> None:
    """Speed-ups against each (model, device)'s baseline (see the module)."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in out:
        groups.setdefault((r["model"], r["device"]), []).append(r)
    for rows in groups.values():
        b = _baseline(rows, baseline_engine)
        for r in rows:
            lat, blat = r["latency_ms_p50_b1"], b["latency_ms_p50_b1"] if b else None
            thr, bthr = r["best_throughput_ips"], b["best_throughput_ips"] if b else None
            r["speedup_baseline"] = f"{b['engine']} {b['precision']}" if b else None
            r["speedup_latency_b1"] = blat / lat if lat and blat else None
            r["speedup_throughput"] = thr / bthr if thr and bthr else None
            r["speedup_valid"] = bool(
                b and r.get("valid_b1") is not False and r.get("valid_best") is not False
                and b.get("valid_b1") is not False and b.get("valid_best") is not False
            )  # fmt: skip


def series_rows(rows: list[Row]) -> dict[tuple[str, str, str, str], list[Row]]:
    """Successful timing rows per cell, one per batch (offline preferred), sorted by batch."""
    out: dict[tuple[str, str, str, str], dict[int, Row]] = {}
    for r in rows:
        b = num(r.get("batch"))
        if is_accuracy_row(r) or not _ok(r) or b is None or r.get("scenario") == "server":
            continue
        if r.get("engine") == "null":
            continue
        per = out.setdefault(cell_of(r), {})
        cur = per.get(int(b))
        if cur is None or (r.get("scenario") == "offline" and cur.get("scenario") != "offline"):
            per[int(b)] = r
    return {k: [v[b] for b in sorted(v)] for k, v in out.items()}
