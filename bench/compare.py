"""Compare two results files cell by cell, for a CI job that fails on a regression.

Cells are matched on model, engine, precision, device, batch and scenario (server cells also on
their target QPS); where a file holds several rows for a cell, its last row without error wins.
For each metric the ratio new / base and the change in percent are written; a change worse than
the threshold (higher for latencies and memory, lower for throughput and efficiency) is a
regression. For ``latency_ms_p50`` the median CIs of both runs are compared as well:
``ci_overlap`` says whether the 95 % intervals overlap (if they do, the difference may be noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.bench.results import KEY_COLUMNS, cell_key, read_rows
from cnnbench.errors import InvalidInputError
from cnnbench.values import num

HIGHER_IS_BETTER = (
    "throughput_ips",
    "gmacs_per_s",
    "efficiency",
    "achieved_qps",
    "server_peak_qps",
)
DEFAULT_METRICS = ("latency_ms_p50", "throughput_ips")


@dataclass(frozen=True)
class Comparison:
    rows: list[dict[str, Any]]
    regressions: list[dict[str, Any]]
    missing_in_new: list[str]
    missing_in_base: list[str]
    errors: list[str]


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


def _index(rows: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    good: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for r in rows:
        key = cell_key(r)
        if r.get("error"):
            errors[key] = str(r["error"])
        else:
            good[key] = r
            errors.pop(key, None)
    return good, errors


def compare_rows(
    base: list[dict[str, Any]],
    new: list[dict[str, Any]],
    *,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    threshold_pct: float = 5.0,
) -> Comparison:
    """Match cells and compute ratios; see the module docstring for the rules."""
    b_good, b_err = _index(base)
    n_good, n_err = _index(new)
    out: list[dict[str, Any]] = []
    regressions: list[dict[str, Any]] = []
    for key in [k for k in b_good if k in n_good]:
        b, n = b_good[key], n_good[key]
        for m in metrics:
            bv, nv = num(b.get(m)), num(n.get(m))
            row: dict[str, Any] = {c: b.get(c) for c in KEY_COLUMNS}
            row.update(metric=m, base=bv, new=nv, ratio=None, change_pct=None)
            if bv is None or nv is None or bv == 0:
                row["status"] = "no value"
            else:
                row["ratio"] = nv / bv
                change = (nv - bv) / abs(bv) * 100.0
                row["change_pct"] = change
                worse = -change if higher_is_better(m) else change
                row["status"] = (
                    "regression" if worse > threshold_pct
                    else "improvement" if -worse > threshold_pct
                    else "ok"
                )  # fmt: skip
            if m == "latency_ms_p50":
                row["ci_overlap"] = _ci_overlap(b, n)
            out.append(row)
            if row["status"] == "regression":
                regressions.append(row)
    errors = [f"{k}: base error: {v}" for k, v in b_err.items()]
    errors += [f"{k}: new error: {v}" for k, v in n_err.items()]
    return Comparison(
        rows=out,
        regressions=regressions,
        missing_in_new=[k for k in b_good if k not in n_good and k not in n_err],
        missing_in_base=[k for k in n_good if k not in b_good and k not in b_err],
        errors=errors,
    )


def _ci_overlap(b: dict[str, Any], n: dict[str, Any]) -> bool | None:
    lo1, hi1 = num(b.get("latency_ms_median_ci_low")), num(b.get("latency_ms_median_ci_high"))
    lo2, hi2 = num(n.get("latency_ms_median_ci_low")), num(n.get("latency_ms_median_ci_high"))
    if None in (lo1, hi1, lo2, hi2):
        return None
    return bool(lo1 <= hi2 and lo2 <= hi1)  # type: ignore[operator]


def compare_files(
    base: Path | str,
    new: Path | str,
    *,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    threshold_pct: float = 5.0,
) -> Comparison:
    """:func:`compare_rows` on two CSV / JSON-lines files; no shared cell is an error."""
    b, n = read_rows(base), read_rows(new)
    for path, rows in ((base, b), (new, n)):
        if rows and not all(c in rows[0] for c in ("model", "engine", "batch")):
            raise InvalidInputError(
                f"{path} is not a cnnbench results file (no model/engine/batch)"
            )
    known = {k for r in (*b, *n) for k in r}
    for m in metrics:
        if m not in known:
            raise InvalidInputError(f"unknown metric '{m}': no such column in {base} or {new}")
    cmp = compare_rows(b, n, metrics=metrics, threshold_pct=threshold_pct)
    if not cmp.rows:
        raise InvalidInputError(f"no cell of {base} is in {new}; nothing to compare")
    return cmp
