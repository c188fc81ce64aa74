"""The service's job queue, in the results store (the ``jobs`` table, schema v2).

A job is a validated grid with a state: ``queued`` → ``running`` → ``done`` | ``failed`` |
``cancelled``. The job runner claims the oldest queued job in one transaction (so two runners
never take the same job); a service that stops while a job runs finds it ``running`` on its
next start and queues it again, to be resumed (its finished cells are kept).
"""

from __future__ import annotations

import json
from typing import Any

from cnnbench.bench.results.store import Store, now

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
ENDED = (DONE, FAILED, CANCELLED)
#: a job as the API shows it
JOB_FIELDS = (
    "id", "state", "created_at", "started_at", "finished_at", "cells_total", "cells_done",
    "errors", "run_id", "attempts", "message", "upload_sha256", "grid",
)  # fmt: skip


class JobQueue:
    """Jobs in one store; every method is one short transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def submit(self, grid: dict[str, Any], *, cells: int, upload_sha256: str | None) -> int:
        from cnnbench.bench.results.schema import jobs

        values = dict(
            created_at=now(), state=QUEUED, grid=json.dumps(grid, sort_keys=True, default=str),
            upload_sha256=upload_sha256, cells_total=cells, cells_done=0, errors=0, attempts=0,
            cancel_requested=False,
        )  # fmt: skip
        with self.store.engine.begin() as conn:
            return int(conn.execute(jobs.insert().values(**values)).inserted_primary_key[0])  # type: ignore[index]

    def uses_upload(self, sha256: str) -> bool:
        """Whether a job runs (or ran) the uploaded file ``sha256``."""
        from sqlalchemy import select

        from cnnbench.bench.results.schema import jobs

        with self.store.engine.connect() as conn:
            q = select(jobs.c.id).where(jobs.c.upload_sha256 == sha256).limit(1)
            return conn.execute(q).first() is not None

    def get(self, job_id: int) -> dict[str, Any] | None:
        found = self.list_jobs(job_id=job_id)
        return found[0] if found else None

    def list_jobs(
        self, *, job_id: int | None = None, limit: int | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Jobs, newest first (``limit`` of them after skipping ``offset``)."""
        from sqlalchemy import select

        from cnnbench.bench.results.schema import jobs

        q = select(jobs).order_by(jobs.c.id.desc())
        if job_id is not None:
            q = q.where(jobs.c.id == job_id)
        if limit:
            q = q.limit(limit)
        if offset:
            q = q.offset(offset)
        with self.store.engine.connect() as conn:
            out = [dict(r._mapping) for r in conn.execute(q)]
        for j in out:
            j["grid"] = json.loads(j["grid"])
            j["cancel_requested"] = bool(j["cancel_requested"])
        return out

    def claim(self) -> dict[str, Any] | None:
        """The oldest queued job, now ``running`` (one attempt more); None when none waits."""
        from sqlalchemy import select, update

        from cnnbench.bench.results.schema import jobs

        with self.store.engine.begin() as conn:
            row = conn.execute(
                select(jobs.c.id, jobs.c.attempts).where(jobs.c.state == QUEUED)
                .order_by(jobs.c.id).limit(1)
            ).first()  # fmt: skip
            if row is None:
                return None
            done = conn.execute(
                update(jobs).where(jobs.c.id == row.id, jobs.c.state == QUEUED)
                .values(state=RUNNING, attempts=row.attempts + 1, started_at=now())
            )  # fmt: skip
            if not done.rowcount:
                return None
        return self.get(int(row.id))

    def update(self, job_id: int, **values: Any) -> None:
        from sqlalchemy import update

        from cnnbench.bench.results.schema import jobs

        if values.get("state") in ENDED:
            values.setdefault("finished_at", now())
        with self.store.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))

    def cancel(self, job_id: int) -> str | None:
        """Cancel a job: a queued one at once, a running one when its runner sees the request.
        Its state afterwards, or None when there is no such job."""
        from sqlalchemy import update

        from cnnbench.bench.results.schema import jobs

        with self.store.engine.begin() as conn:
            conn.execute(
                update(jobs).where(jobs.c.id == job_id, jobs.c.state == QUEUED)
                .values(state=CANCELLED, finished_at=now(), message="cancelled before it ran")
            )  # fmt: skip
            conn.execute(
                update(jobs).where(jobs.c.id == job_id, jobs.c.state == RUNNING)
                .values(cancel_requested=True)
            )  # fmt: skip
        job = self.get(job_id)
        return None if job is None else str(job["state"])

    def requeue_interrupted(self) -> list[int]:
        """Jobs left ``running`` by a service that stopped: queued again, to be resumed."""
        from sqlalchemy import select, update

        from cnnbench.bench.results.schema import jobs

        with self.store.engine.begin() as conn:
            ids = [r.id for r in conn.execute(select(jobs.c.id).where(jobs.c.state == RUNNING))]
            if ids:
                conn.execute(
                    update(jobs).where(jobs.c.id.in_(ids))
                    .values(state=QUEUED, message="interrupted by a service stop; resumed")
                )  # fmt: skip
        return [int(i) for i in ids]
