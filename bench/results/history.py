"""Reading history from the results store: time filters, runs as comparison sides, and the scan
for the first run where a cell got slower.

:func:`regressions` walks each cell's series (one machine, one cell key, finished runs in
order; invalid rows left out). Each run is compared with a window of the runs before it (up to
:data:`WINDOW` valid runs since the last step) by :func:`bench.results.compare.compare_rows`, the runs'
rows pooled as repeats: a regression is every row of the new run beyond every row of the
window by more than the threshold, so the spread between runs, which no single run's samples
can show, is what a step must clear. A run with one row is confirmed by the next run (both
must be beyond). A step names the run that first shows it and starts a new window, so a
lasting slowdown is reported once. ``still_slower`` says whether the newest run is still worse
than the window before the step by more than the threshold.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from cnnbench.bench.measure.validity import row_valid
from cnnbench.bench.results.compare import DEFAULT_METRICS, Source, compare_rows
from cnnbench.bench.results.files import HIGHER_IS_BETTER, KEY_COLUMNS, cell_key
from cnnbench.bench.results.store import Store, machine_name
from cnnbench.bench.results.store_read import FINISHED
from cnnbench.bench.results.store_url import shown_url
from cnnbench.errors import InvalidInputError
from cnnbench.values import num

#: the prefix that names a run in the store wherever a results file is accepted
PREFIX = "db:"
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
#: the runs before a step that it is compared with (the newest valid ones since the last step)
WINDOW = 5


def parse_when(text: str | None, *, option: str = "--since") -> str | None:
    """An ISO 8601 UTC instant from ``2026-12-01``, ``2026-12-01T10:00`` (UTC unless it says
    otherwise) or a span back from now (``30m``, ``12h``, ``7d``, ``2w``)."""
    if text is None or not text.strip():
        return None
    s = text.strip()
    m = _RELATIVE.match(s)
    if m:
        when = datetime.now(timezone.utc) - timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
    else:
        try:
            when = datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInputError(
                f"{option} {text!r}: give a date (2026-12-01), a time (2026-12-01T10:00) or a "
                "span back from now (30m, 12h, 7d, 2w)"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="microseconds")


def machine_filter(text: str | None) -> str | None:
    """``--machine``: a name as recorded, or ``this`` for this machine."""
    if text is None:
        return None
    return machine_name() if text == "this" else text


def is_ref(text: str) -> bool:
    return text.startswith(PREFIX)


def db_source(store: Store, ref: str, *, machine: str | None = None) -> Source:
    """``db:RUN_ID`` / ``db:latest`` / ``db:latest~N`` as a comparison side."""
    run_id = store.resolve(ref[len(PREFIX) :], machine=machine)
    rows = store.cells(run_ids=[run_id])
    if not rows:
        raise InvalidInputError(f"{ref}: run {run_id} in {shown_url(store.url)} has no cells")

    def samples_of(row: dict[str, Any]) -> Any:
        cid = row.get("cell_id")
        return store.samples(int(cid)) if cid is not None else None

    return Source(f"{ref} (run {run_id})", rows, samples_of)


def run_summary(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run as ``history`` lists it (JSON keeps everything; the table shows these)."""
    return {
        "run_id": run["run_id"], "started_at": run["started_at"],
        "finished_at": run.get("finished_at"), "status": run["status"], "kind": run["kind"],
        "machine": run.get("machine"), "cells": run.get("cells", 0),
        "errors": run.get("errors", 0), "invalid": run.get("invalid", 0),
        "git_commit": (run.get("git_commit") or "")[:12] or None,
        "cnnbench_version": run.get("cnnbench_version"), "command": run.get("command"),
    }  # fmt: skip


def _series(
    rows: Sequence[dict[str, Any]],
) -> dict[tuple[str, str], list[tuple[int, list[dict[str, Any]]]]]:
    """Per (machine, cell key): the runs in id order, each with its rows of that cell."""
    out: dict[tuple[str, str], dict[int, list[dict[str, Any]]]] = {}
    for r in rows:
        key = (str(r.get("machine")), cell_key(r, repeat=False))
        out.setdefault(key, {}).setdefault(int(r["run_id"]), []).append(r)
    return {k: sorted(v.items()) for k, v in out.items()}


def regressions(
    store: Store,
    *,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    threshold_pct: float = 5.0,
    machine: str | None = None,
    since: str | None = None,
    **where: Any,
) -> list[dict[str, Any]]:
    """Every step where a cell got slower, oldest first (see the module docstring)."""
    rows = [
        r
        for r in store.cells(machine=machine, since=since, finished_only=True, **where)
        if not r.get("error")
    ]

    def samples_of(row: dict[str, Any]) -> Any:
        return store.samples(int(row["cell_id"]))

    found: list[dict[str, Any]] = []
    for (mach, key), series in _series(rows).items():
        runs = [(rid, [r for r in rs if row_valid(r) is not False]) for rid, rs in series]
        runs = [(rid, rs) for rid, rs in runs if rs]  # an invalid run says nothing
        window: list[tuple[int, list[dict[str, Any]]]] = runs[:1]
        for i in range(1, len(runs)):
            new = list(runs[i][1])
            if len(new) < 2 and i + 1 < len(runs):
                new += runs[i + 1][1]  # one row: the next run must confirm it
            cmp = compare_rows(
                _pooled([r for _, rs in window for r in rs]), _pooled(new),
                metrics=metrics, threshold_pct=threshold_pct,
                base_samples=samples_of, new_samples=samples_of,
            )  # fmt: skip
            for c in cmp.regressions:
                found.append(_step(c, mach, key, window, runs, threshold_pct, runs[i][0]))
            window = [runs[i]] if cmp.regressions else [*window, runs[i]][-WINDOW:]
    return sorted(found, key=lambda r: (r["run_id"], r["cell"]))


def _pooled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of several runs as the repeats of one cell (each its own process)."""
    return [{**r, "repeat": i + 1} for i, r in enumerate(rows)]


def _has_valid(rows: Sequence[dict[str, Any]]) -> bool:
    return any(row_valid(r) is not False for r in rows)


def _step(
    c: dict[str, Any],
    machine: str,
    key: str,
    window: list[tuple[int, list[dict[str, Any]]]],
    runs: list[tuple[int, list[dict[str, Any]]]],
    threshold_pct: float,
    first: int,
) -> dict[str, Any]:
    m = c["metric"]
    before = _median([r for _, rs in window for r in rs], m)
    latest_id, latest_rows = runs[-1]
    now_v = _median(latest_rows, m)
    still = None
    if before and now_v is not None:
        change = (now_v - before) / abs(before) * 100.0
        worse = -change if m in HIGHER_IS_BETTER else change
        still = worse > threshold_pct
    out = {k: c.get(k) for k in KEY_COLUMNS}
    out.update(
        cell=key, machine=machine, metric=m, run_id=first, base_run_id=window[-1][0],
        base_runs=len(window), base=c.get("base"), new=c.get("new"),
        change_pct=c.get("change_pct"), ratio_ci_low=c.get("ratio_ci_low"),
        ratio_ci_high=c.get("ratio_ci_high"), p_value=c.get("p_value"), test=c.get("test"),
        latest_run_id=latest_id, latest=now_v, still_slower=still,
    )  # fmt: skip
    return out


def _median(rows: Sequence[dict[str, Any]], m: str) -> float | None:
    vals = sorted(v for r in rows if row_valid(r) is not False and (v := num(r.get(m))) is not None)
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


__all__ = [
    "FINISHED", "PREFIX", "db_source", "is_ref", "machine_filter", "parse_when", "regressions",
    "run_summary",
]  # fmt: skip
