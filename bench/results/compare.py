"""Compare two results files cell by cell, for a CI job that fails on a regression only.

Cells are matched on model, engine, precision, device, batch and scenario (server cells also on
their target QPS); where a file holds several rows for a cell, its last row without error wins.
For each metric the ratio new / base and the change in percent are written. Worse means higher
for latencies and memory, lower for throughput and efficiency. A cell's metric is:

* ``regression`` / ``improvement``: for timings, each side holds repeats (the cell measured
  at least twice, each time in its own process) and every new repeat is beyond every base
  repeat by more than the threshold (:mod:`bench.results.repeats`). Metrics that have no
  samples behind them (memory) are decided by the threshold alone.
* ``inconclusive``: either row is invalid (``valid`` false: noisy, shared CPU, too few
  samples); or the change is beyond the threshold but within the noise of the runs' samples
  (the 95 % bootstrap CI of the ratio, :mod:`bench.results.significance`, reaches 1 ± threshold;
  without samples, the medians' 95 % CIs overlap); or it is significant within the runs but
  each side is one process, whose samples cannot show run-to-run noise. Never a regression.
* ``ok``: within the threshold.

Why one process per side never decides: two sweeps of ``ci_tiny.yaml`` of the same code, one
process per cell, gave 12 "significant" changes beyond 10 % out of 28 on a quiet 2-core
machine; the same sweeps with 5 repeats gave none. The Mann-Whitney U p-value of the two
sample sets is reported beside (``p_value``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.bench.measure import samples
from cnnbench.bench.measure.validity import row_valid
from cnnbench.bench.results.files import HIGHER_IS_BETTER, KEY_COLUMNS, cell_key, read_rows
from cnnbench.bench.results.repeats import decide_repeats
from cnnbench.bench.results.significance import METHOD, mann_whitney, ratio_ci
from cnnbench.errors import InvalidInputError
from cnnbench.values import num

DEFAULT_METRICS = ("latency_ms_p50", "throughput_ips")
SINGLE_RUN_NOTE = (
    "one process per side: significant within each run, but run-to-run noise is not seen; "
    "measure both with --repeats 5 (or repeats: 5) to decide"
)
#: a row's stored latency samples (ns), or None
SamplesOf = Callable[[dict[str, Any]], "np.ndarray | None"]
#: metric -> the statistic of the latency samples it follows ("mean" for rates: 1 / mean)
SAMPLE_STAT = {
    "latency_ms_p50": "50", "latency_ms_p90": "90", "latency_ms_p95": "95",
    "latency_ms_p99": "99", "latency_ms_mean": "mean", "throughput_ips": "mean",
    "gmacs_per_s": "mean", "efficiency": "mean",
}  # fmt: skip


@dataclass(frozen=True)
class Comparison:
    rows: list[dict[str, Any]]
    regressions: list[dict[str, Any]]
    missing_in_new: list[str]
    missing_in_base: list[str]
    errors: list[str]

    @property
    def inconclusive(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "inconclusive"]


def parse_threshold(text: str | float) -> float:
    """``5%``, ``5`` or ``0.05`` -> 5.0 (percent); one-line error for anything else."""
    s = str(text).strip()
    try:
        v = float(s.rstrip("%"))
    except ValueError:
        raise InvalidInputError(f"threshold must be a percentage like 5%, got {text!r}") from None
    if not s.endswith("%") and 0 < v < 1:
        v *= 100.0  # a fraction such as 0.05
    if not math.isfinite(v) or v < 0:
        raise InvalidInputError(f"threshold must be a percentage >= 0, got {text!r}")
    return v


def higher_is_better(metric: str) -> bool:
    return metric in HIGHER_IS_BETTER


def _index(
    rows: list[dict[str, Any]],
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """Rows without error per cell: the last one of each repeat (a rerun replaces a row)."""
    per_repeat: dict[str, dict[str, dict[str, Any]]] = {}
    errors: dict[str, str] = {}
    for r in rows:
        key = cell_key(r, repeat=False)
        if r.get("error"):
            errors[key] = str(r["error"])
        else:
            per_repeat.setdefault(key, {})[cell_key(r)] = r
            errors.pop(key, None)
    return {k: list(v.values()) for k, v in per_repeat.items()}, errors


def compare_rows(
    base: list[dict[str, Any]],
    new: list[dict[str, Any]],
    *,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    threshold_pct: float = 5.0,
    base_samples: SamplesOf | None = None,
    new_samples: SamplesOf | None = None,
    interleaved: bool = False,
) -> Comparison:
    """Match cells and decide each metric; see the module docstring for the rules.

    ``base_samples`` / ``new_samples`` give a row's stored latency samples (from the results
    file's sidecar, :mod:`bench.measure.samples`, or from the store), or None where it has none.
    """
    b_good, b_err = _index(base)
    n_good, n_err = _index(new)
    out: list[dict[str, Any]] = []
    for key in [k for k in b_good if k in n_good]:
        bs, ns = b_good[key], n_good[key]
        if len(bs) >= 2 and len(ns) >= 2:  # repeats on both sides: run-to-run noise is seen
            out.extend(decide_repeats(bs, ns, m, threshold_pct, interleaved) for m in metrics)
            continue
        b, n = bs[-1], ns[-1]
        sb = base_samples(b) if base_samples is not None else None
        sn = new_samples(n) if new_samples is not None else None
        for m in metrics:
            out.append(_decide(b, n, m, threshold_pct, sb, sn))
    errors = [f"{k}: base error: {v}" for k, v in b_err.items()]
    errors += [f"{k}: new error: {v}" for k, v in n_err.items()]
    return Comparison(
        rows=out,
        regressions=[r for r in out if r["status"] == "regression"],
        missing_in_new=[k for k in b_good if k not in n_good and k not in n_err],
        missing_in_base=[k for k in n_good if k not in b_good and k not in b_err],
        errors=errors,
    )


def _decide(
    b: dict[str, Any],
    n: dict[str, Any],
    m: str,
    threshold_pct: float,
    sb: np.ndarray | None,
    sn: np.ndarray | None,
) -> dict[str, Any]:
    bv, nv = num(b.get(m)), num(n.get(m))
    row: dict[str, Any] = {c: b.get(c) for c in KEY_COLUMNS}
    row.update(metric=m, base=bv, new=nv, ratio=None, change_pct=None)
    row.update(base_valid=row_valid(b), new_valid=row_valid(n), test=None, p_value=None)
    row.update(ratio_ci_low=None, ratio_ci_high=None, note="")
    if bv is None or nv is None or bv == 0:
        row["status"] = "no value"
        return row
    row["ratio"] = nv / bv
    change = (nv - bv) / abs(bv) * 100.0
    row["change_pct"] = change
    worse = -change if higher_is_better(m) else change
    significant = _significance(row, b, n, m, threshold_pct, sb, sn, worse > 0)
    if row["base_valid"] is False or row["new_valid"] is False:
        side = "base" if row["base_valid"] is False else "new"
        why = (b if side == "base" else n).get("invalid_reason") or "invalid"
        row.update(status="inconclusive", note=f"{side} row invalid: {why}")
    elif abs(worse) <= threshold_pct:
        row["status"] = "ok"
    elif significant is False:
        row.update(status="inconclusive", note="beyond the threshold but within the noise")
    elif m in SAMPLE_STAT:
        # One process per side: its samples show the noise within that process only. Thread
        # placement and memory layout move a process's timings by more than any within-run CI
        # (LeNet-5 on a shared 2-core runner: up to 2.3x between two runs of the same code).
        row.update(status="inconclusive", note=SINGLE_RUN_NOTE)
    else:
        row["status"] = "regression" if worse > 0 else "improvement"
    return row


def _significance(
    row: dict[str, Any],
    b: dict[str, Any],
    n: dict[str, Any],
    m: str,
    threshold_pct: float,
    sb: np.ndarray | None,
    sn: np.ndarray | None,
    got_worse: bool,
) -> bool | None:
    """Whether the change is significantly beyond the threshold; None when nothing can say."""
    stat = SAMPLE_STAT.get(m)
    if stat is None or (higher_is_better(m) and b.get("scenario") == "server"):
        # a server's throughput is its arrival rate, not 1 / mean latency: the threshold decides
        return None
    if sb is not None and sn is not None and sb.size and sn.size:
        point, lo, hi = ratio_ci(sb, sn, stat)
        if higher_is_better(m):  # a rate: new/base = base mean latency / new mean latency
            point, lo, hi = 1 / point, 1 / hi, 1 / lo
        row.update(test=METHOD, p_value=mann_whitney(sb, sn), ratio_ci_low=lo, ratio_ci_high=hi)
        bound = threshold_pct / 100.0
        lower_is_better = not higher_is_better(m)
        if got_worse == lower_is_better:  # the ratio went up
            return lo > 1 + bound
        return hi < 1 - bound
    overlap = _ci_overlap(b, n)
    row["ci_overlap"] = overlap
    if overlap is None:
        return None
    row["test"] = "median 95% CIs overlap (no stored samples)"
    return not overlap


def _ci_overlap(b: dict[str, Any], n: dict[str, Any]) -> bool | None:
    lo1, hi1 = num(b.get("latency_ms_median_ci_low")), num(b.get("latency_ms_median_ci_high"))
    lo2, hi2 = num(n.get("latency_ms_median_ci_low")), num(n.get("latency_ms_median_ci_high"))
    if None in (lo1, hi1, lo2, hi2):
        return None
    return bool(lo1 <= hi2 and lo2 <= hi1)  # type: ignore[operator]


@dataclass(frozen=True)
class Source:
    """One side of a comparison: its rows, where they came from, and how to get a row's
    samples (a results file, or a run in the store)."""

    label: str
    rows: list[dict[str, Any]]
    samples: SamplesOf


def file_source(path: Path | str) -> Source:
    """A results file (CSV / JSON lines) and its samples sidecar as a comparison side."""
    rows = read_rows(path)
    if rows and not all(c in rows[0] for c in ("model", "engine", "batch")):
        raise InvalidInputError(f"{path} is not a cnnbench results file (no model/engine/batch)")
    return Source(str(path), rows, lambda row: samples.load(path, row))


def compare_sources(
    base: Source,
    new: Source,
    *,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    threshold_pct: float = 5.0,
    interleaved: bool = False,
) -> Comparison:
    """:func:`compare_rows` on two sides; an unknown metric or no shared cell is an error."""
    known = {k for r in (*base.rows, *new.rows) for k in r}
    for m in metrics:
        if m not in known:
            raise InvalidInputError(
                f"unknown metric '{m}': no such column in {base.label} or {new.label}"
            )
    cmp = compare_rows(
        base.rows, new.rows, metrics=metrics, threshold_pct=threshold_pct,
        base_samples=base.samples, new_samples=new.samples, interleaved=interleaved,
    )  # fmt: skip
    if not cmp.rows:
        raise InvalidInputError(f"no cell of {base.label} is in {new.label}; nothing to compare")
    return cmp


def compare_files(
    base: Path | str,
    new: Path | str,
    *,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    threshold_pct: float = 5.0,
) -> Comparison:
    """:func:`compare_rows` on two CSV / JSON-lines files; no shared cell is an error."""
    return compare_sources(
        file_source(base), file_source(new), metrics=metrics, threshold_pct=threshold_pct
    )
