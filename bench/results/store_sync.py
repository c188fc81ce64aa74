"""Rows a results file has and the results store lacks, put into the store.

A run writes each row to the store first, then to its results file. When the store goes away
mid-run (PostgreSQL stopped, SQLite locked past its timeout, a full disk), measuring goes on
and the rows go to the file alone; this module puts them into the store afterwards: at the end
of the run when the store is back, on ``sweep --resume``, or by ``cnnbench store sync FILE``.

A file's row is in the store when the store has a cell of the same run with the same cell key
(repeat included) and the same ``finished_at`` (the moment the row was measured), so a row is
never recorded twice however often this runs. A row comes with its samples from the file's
sidecar. Rows whose run this store does not hold (a file made with ``--no-db``, or recorded
into another store) go into one run of kind ``sync`` for the file, found again by its path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.bench.measure import samples as sample_files
from cnnbench.bench.results.files import cell_key, read_rows
from cnnbench.bench.results.store import Store
from cnnbench.bench.results.store_read import FINISHED, INCOMPLETE, RUNNING
from cnnbench.values import num

#: row fields that belong to the file (where its samples are), not to the store
_FILE_FIELDS = ("samples_file", "samples_offset", "samples_count")


@dataclass
class SyncReport:
    """What :func:`sync_file` did: rows added per run, and the runs it called finished."""

    added: dict[int, int] = field(default_factory=dict)
    finished: list[int] = field(default_factory=list)
    #: runs that hold every row of the file now but are still marked running
    still_running: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.added.values())


def _identity(row: dict[str, Any]) -> tuple[str, str]:
    return cell_key(row), str(row.get("finished_at") or "")


def sync_rows(store: Store, path: Path, run_id: int, rows: list[dict[str, Any]]) -> int:
    """Record into run ``run_id`` each of ``rows`` (read from ``path``) that it lacks, with its
    samples; how many."""
    have = {_identity(r) for r in store.cells(run_ids=[run_id])}
    added = 0
    for r in rows:
        if _identity(r) in have:
            continue
        arr = sample_files.load(path, r)
        row = {k: v for k, v in r.items() if k not in _FILE_FIELDS}
        row["run_id"] = run_id
        store.record(run_id, row, arr)
        have.add(_identity(r))
        added += 1
    return added


def run_rows(path: Path, run_id: int) -> list[dict[str, Any]]:
    """The rows of results file ``path`` recorded under run ``run_id``."""
    return [r for r in read_rows(path) if num(r.get("run_id")) == run_id]


def sync_run(store: Store, path: Path, run_id: int) -> tuple[int, bool]:
    """Put the rows of ``path`` that belong to run ``run_id`` into the store: (rows added,
    whether the store now holds every one of them)."""
    rows = run_rows(path, run_id)
    added = sync_rows(store, path, run_id, rows)
    have = {_identity(r) for r in store.cells(run_ids=[run_id])}
    return added, all(_identity(r) in have for r in rows)


def sync_file(store: Store, path: Path, *, finish: bool = False) -> SyncReport:
    """Every row of ``path`` the store lacks, into the store. A run this completes that ended
    ``incomplete`` is then ``finished``; one still marked ``running`` too with ``finish``
    (its process is gone), else it is listed in ``still_running``."""
    rows = read_rows(path)
    groups: dict[int | None, list[dict[str, Any]]] = {}
    for r in rows:
        n = num(r.get("run_id"))
        groups.setdefault(int(n) if n is not None else None, []).append(r)
    # a run of this store is the file's only if it was recorded for this file (ids of two
    # stores collide)
    here = str(path.absolute())
    known = {
        rid: found
        for rid in groups
        if rid is not None
        and (found := store.runs(run_id=rid))
        and found[0].get("out_file") in (None, here)
    }
    report = SyncReport()
    orphans = [r for rid, rs in groups.items() if rid is None or rid not in known for r in rs]
    for rid, rs in groups.items():
        if rid is None or rid not in known:
            continue
        report.added[rid] = sync_rows(store, path, rid, rs)
        status = known[rid][0]["status"]
        if status == INCOMPLETE or (status == RUNNING and finish):
            store.finish_run(rid, FINISHED)
            report.finished.append(rid)
        elif status == RUNNING:
            report.still_running.append(rid)
    if orphans:
        rid = _sync_run_for(store, path)
        report.added[rid] = sync_rows(store, path, rid, orphans)
        store.finish_run(rid, FINISHED)
    return report


def _sync_run_for(store: Store, path: Path) -> int:
    """The ``sync`` run that holds the rows of ``path`` without a run here (made once)."""
    from sqlalchemy import select

    from cnnbench.bench.results.schema import runs

    where = str(path.absolute())
    with store.engine.connect() as conn:
        found = conn.execute(
            select(runs.c.id).where(runs.c.kind == "sync", runs.c.out_file == where)
            .order_by(runs.c.id).limit(1)
        ).scalar()  # fmt: skip
    if found is not None:
        return int(found)
    return store.begin_run(
        kind="sync", command=f"cnnbench store sync {where}", config=None, environment={},
        git={}, out_file=where,
    )  # fmt: skip
