"""Comparing cells measured several times (``repeats``), each time in its own process.

One process's samples show the noise within a run, not between runs: thread placement, memory
layout and the machine's state change from process to process, and on a shared machine they
move medians by more than any within-run CI. With at least two repeats on each side the
decision uses the repeats themselves: a metric is a ``regression`` only when *every* new
repeat is worse than *every* base repeat by more than the threshold (all pairwise ratios beyond
1 + threshold). ``p_value`` is the exact two-sided Mann-Whitney p of the repeat values.
Invalid repeats are left out; a side left with fewer than two is ``inconclusive``. When the
two sides were measured *interleaved* on one machine (``interleaved``: base and head in
alternating passes), a repeat invalid only for the machine's load (foreign CPU load, steal, a
noisy median) is kept: both sides met the same conditions, and the decision is on repeats.
"""

from __future__ import annotations

import itertools
import statistics
from typing import Any

from cnnbench.bench.measure.validity import row_valid
from cnnbench.bench.results.files import HIGHER_IS_BETTER, KEY_COLUMNS
from cnnbench.values import num

METHOD = "repeats: every pairwise ratio beyond 1 ± threshold; exact Mann-Whitney p"


def exact_mann_whitney(a: list[float], b: list[float]) -> float:
    """Two-sided exact p-value of the Mann-Whitney U statistic (small samples; ties count 1/2)."""

    def u(xs: list[float], ys: list[float]) -> float:
        return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x in xs for y in ys)

    both, n = a + b, len(a)
    observed = abs(u(a, b) - n * len(b) / 2)
    splits = list(itertools.combinations(range(len(both)), n))
    extreme = 0
    for idx in splits:
        chosen = set(idx)
        xs = [both[i] for i in idx]
        ys = [both[i] for i in range(len(both)) if i not in chosen]
        if abs(u(xs, ys) - n * len(ys) / 2) >= observed - 1e-12:
            extreme += 1
    return extreme / len(splits)


#: invalid reasons that say the machine was shared, not that the row is wrong
LOAD_REASONS = ("foreign CPU load", "hypervisor steal", "noisy median")


def _usable(row: dict[str, Any], interleaved: bool) -> bool:
    if row_valid(row) is not False:
        return True
    reasons = [r.strip() for r in str(row.get("invalid_reason") or "").split(";") if r.strip()]
    return interleaved and bool(reasons) and all(r.startswith(LOAD_REASONS) for r in reasons)


def decide_repeats(
    base: list[dict[str, Any]],
    new: list[dict[str, Any]],
    m: str,
    threshold_pct: float,
    interleaved: bool = False,
) -> dict[str, Any]:
    """The comparison row of metric ``m`` between two sets of repeats of one cell."""
    row: dict[str, Any] = {c: base[-1].get(c) for c in KEY_COLUMNS}
    bv = [v for r in base if _usable(r, interleaved) and (v := num(r.get(m))) is not None]
    nv = [v for r in new if _usable(r, interleaved) and (v := num(r.get(m))) is not None]
    row.update(metric=m, base=None, new=None, ratio=None, change_pct=None, test=METHOD)
    row.update(p_value=None, ratio_ci_low=None, ratio_ci_high=None, note="")
    row.update(base_valid=len(bv) >= 2, new_valid=len(nv) >= 2, repeats=f"{len(bv)}/{len(nv)}")
    if len(bv) < 2 or len(nv) < 2:
        row.update(status="inconclusive", note="fewer than two valid repeats on a side")
        return row
    shared = [r for r in (*base, *new) if row_valid(r) is False]
    if interleaved and shared:
        row["note"] = f"{len(shared)} repeat(s) on a shared machine, measured interleaved"
    b, n = statistics.median(bv), statistics.median(nv)
    if b == 0:
        row["status"] = "no value"
        return row
    change = (n - b) / abs(b) * 100.0
    ratios = [y / x for x in bv for y in nv if x]
    row.update(base=b, new=n, ratio=n / b, change_pct=change)
    row.update(ratio_ci_low=min(ratios), ratio_ci_high=max(ratios))
    row["p_value"] = exact_mann_whitney(bv, nv) if len(bv) + len(nv) <= 16 else None
    worse = -change if m in HIGHER_IS_BETTER else change
    bound = threshold_pct / 100.0
    up, down = min(ratios) > 1 + bound, max(ratios) < 1 - bound  # every pair beyond the bound
    ratio_worse = up if m not in HIGHER_IS_BETTER else down
    ratio_better = down if m not in HIGHER_IS_BETTER else up
    if abs(worse) <= threshold_pct:
        row["status"] = "ok"
    elif worse > 0 and ratio_worse:
        row["status"] = "regression"
    elif worse < 0 and ratio_better:
        row["status"] = "improvement"
    else:
        row.update(status="inconclusive", note="beyond the threshold, but the repeats overlap")
    return row
