"""The read side of the results store: runs and cells by filter, a cell's samples, a run id from
a ``db:`` reference, and the backfill of a results file from the store. :class:`StoreReader` is
the base of :class:`bench.results.store.Store`, which opens the store and writes into it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnbench.bench.measure import samples as sample_files
from cnnbench.bench.results.files import append_row, cell_key, read_rows
from cnnbench.bench.results.store_url import shown_url
from cnnbench.errors import InvalidInputError
from cnnbench.limits import ID, OFFSET

if TYPE_CHECKING:
    from sqlalchemy import Engine

#: a run's status while it records, and after; ``incomplete``: it ended with rows its results
#: file has and the store could not take (``cnnbench store sync FILE`` records them)
RUNNING, FINISHED, INTERRUPTED, FAILED = "running", "finished", "interrupted", "failed"
INCOMPLETE = "incomplete"


class StoreReader:
    """Queries over an open results store's engine; :class:`bench.results.store.Store` adds the
    opening and the writes."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine, self.url = engine, url

    def runs(
        self,
        *,
        run_id: int | None = None,
        machine: str | None = None,
        since: str | None = None,
        until: str | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Runs, newest first, each with its counts of cells, errors and invalid rows."""
        from sqlalchemy import case, func, select

        from cnnbench.bench.results.schema import cells, runs

        counts = (
            select(
                cells.c.run_id,
                func.count().label("cells"),
                func.sum(case((cells.c.error.is_not(None), 1), else_=0)).label("errors"),
                func.sum(case((cells.c.valid.is_(False), 1), else_=0)).label("invalid"),
            )
            .group_by(cells.c.run_id)
            .subquery()
        )
        q = select(runs, counts.c.cells, counts.c.errors, counts.c.invalid).outerjoin(
            counts, counts.c.run_id == runs.c.id
        )
        if run_id is not None:
            q = q.where(runs.c.id == run_id)
        if machine:
            q = q.where(runs.c.machine == machine)
        if since:
            q = q.where(runs.c.started_at >= since)
        if until:
            q = q.where(runs.c.started_at < until)
        if status:
            q = q.where(runs.c.status == status)
        q = q.order_by(runs.c.id.desc())
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            out = [dict(r._mapping) for r in conn.execute(q)]
        for r in out:
            r["run_id"] = r.pop("id")
            for k in ("cells", "errors", "invalid"):
                r[k] = int(r[k] or 0)
            for k in ("config", "environment", "versions"):
                r[k] = json.loads(r[k]) if r[k] else {}
        return out

    def cells(
        self,
        *,
        run_ids: list[int] | None = None,
        machine: str | None = None,
        since: str | None = None,
        until: str | None = None,
        finished_only: bool = False,
        limit: int | None = None,
        offset: int = 0,
        **where: Any,
    ) -> list[dict[str, Any]]:
        """Result rows in recording order, each with ``run_id``, ``cell_id``, ``machine`` and
        ``recorded_at``; ``where`` filters on model, engine, precision, device, batch, scenario
        (a value or a list of values); a page of them with ``limit`` and ``offset``."""
        from sqlalchemy import select

        from cnnbench.bench.results.schema import cells, runs

        q = select(cells.c.id, cells.c.run_id, cells.c.recorded_at, cells.c.row, runs.c.machine)
        q = q.join(runs, runs.c.id == cells.c.run_id)
        if run_ids is not None:
            q = q.where(cells.c.run_id.in_(run_ids))
        if machine:
            q = q.where(runs.c.machine == machine)
        if since:
            q = q.where(cells.c.recorded_at >= since)
        if until:
            q = q.where(cells.c.recorded_at < until)
        if finished_only:
            q = q.where(runs.c.status == FINISHED)
        for col, val in where.items():
            if val is None or val == ():
                continue
            vals = list(val) if isinstance(val, (list, tuple, set)) else [val]
            q = q.where(cells.c[col].in_(vals))
        q = q.order_by(cells.c.id)
        if limit is not None:
            q = q.limit(limit)
        if offset:
            q = q.offset(offset)
        with self.engine.connect() as conn:
            result = conn.execute(q).all()
        out = []
        for cid, rid, at, row, mach in result:
            r = json.loads(row)
            r.update(run_id=rid, cell_id=cid, machine=mach, recorded_at=at)
            out.append(r)
        return out

    def fingerprint(self, *, finished_only: bool = False, **where: Any) -> tuple[int, int]:
        """(how many cells, the last cell's id) that :meth:`cells` would give, without reading
        them: what a figure of them is cached by."""
        from sqlalchemy import func, select

        from cnnbench.bench.results.schema import cells, runs

        q = select(func.count(), func.max(cells.c.id)).select_from(cells)
        q = q.join(runs, runs.c.id == cells.c.run_id)
        if finished_only:
            q = q.where(runs.c.status == FINISHED)
        for col, val in where.items():
            if val is not None:
                q = q.where(cells.c[col] == val)
        with self.engine.connect() as conn:
            count, last = conn.execute(q).one()
        return int(count or 0), int(last or 0)

    def samples(self, cell_id: int) -> np.ndarray | None:
        """A cell's latency samples (ns, int64), or None when it has none."""
        from sqlalchemy import select

        from cnnbench.bench.results.schema import samples as samples_table

        with self.engine.connect() as conn:
            blob = conn.execute(
                select(samples_table.c.data).where(samples_table.c.cell_id == cell_id)
            ).scalar()
        return None if blob is None else sample_files.decode(bytes(blob))

    def backfill(self, run_id: int, out: Path) -> int:
        """Rows of ``run_id`` that ``out`` lacks (a run killed after the store had a row and
        before the file did), appended to ``out`` with their samples; how many. So a resumed
        run measures no cell twice."""
        have = {cell_key(r) for r in read_rows(out)} if out.exists() else set()
        added = 0
        for r in self.cells(run_ids=[run_id]):
            if r.get("error") or cell_key(r) in have:
                continue
            row = {k: v for k, v in r.items() if k not in ("cell_id", "machine", "recorded_at")}
            for k in ("samples_file", "samples_offset", "samples_count"):
                row.pop(k, None)
            arr = self.samples(int(r["cell_id"]))
            if arr is not None:
                row[sample_files.SAMPLES_KEY] = arr
            sample_files.write_row(out, row, append_row)
            have.add(cell_key(r))
            added += 1
        return added

    def resolve(self, ref: str, *, machine: str | None = None) -> int:
        """A run id from ``RUN_ID``, ``latest`` or ``latest~N`` (finished runs, newest first,
        on ``machine`` when given); one-line error when there is no such run."""
        text = ref.strip()
        if text.isdigit():
            run_id = ID.check(text, f"db:{text[:40]}: a run id")
            if not self.runs(run_id=run_id):
                raise InvalidInputError(f"db:{ref}: no run {text} in {shown_url(self.url)}")
            return int(run_id)
        back = 0
        if text.startswith("latest~") and text[7:].isdigit():
            back = int(OFFSET.check(text[7:], f"db:{text[:40]}: ~N"))
        elif text != "latest":
            raise InvalidInputError(
                f"db:{ref}: give db:RUN_ID, db:latest or db:latest~N (see cnnbench history)"
            )
        found = self.runs(machine=machine, status=FINISHED, limit=back + 1)
        if len(found) <= back:
            where = f" on {machine}" if machine else ""
            raise InvalidInputError(
                f"db:{ref}: only {len(found)} finished run(s){where} in {shown_url(self.url)}"
            )
        return int(found[back]["run_id"])
