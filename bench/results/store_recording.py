"""Recording a run into the results store: :func:`recording` holds a run open for the length of
a block, and its :class:`Recorder` records the run's cells.

The store may go away in the middle (PostgreSQL stopped, SQLite locked past its timeout, a
full disk): the Recorder then says so once and measuring goes on, the rows going to the
results file alone. At the end the run is settled: the rows the store missed are put into it
from the file (:mod:`bench.results.store_sync`), and the run is called ``finished`` only if the
store then holds every row of the file, else ``incomplete``. A store still away at the end is
one line that says what to do; never a traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cnnbench.bench.results.store import Store
from cnnbench.bench.results.store_read import FAILED, FINISHED, INCOMPLETE, INTERRUPTED
from cnnbench.bench.results.store_sync import sync_run
from cnnbench.bench.results.store_url import shown_url
from cnnbench.errors import CnnbenchError, InvalidInputError, ResultsWriteError, first_line
from cnnbench.progress import note, warn


@contextlib.contextmanager
def recording(
    url: str | None,
    *,
    enabled: bool,
    kind: str,
    command: str,
    config: Mapping[str, Any] | None,
    environment: Mapping[str, Any],
    git: Mapping[str, Any],
    out_file: str | None,
    resume_run: int | None = None,
) -> Iterator[Recorder | None]:
    """A run in the store for the length of the block (None when ``enabled`` is False).

    The run ends ``finished`` (the store holds every row), ``incomplete`` (rows only in the
    file), ``interrupted`` (Ctrl-C) or ``failed`` (another exception). ``resume_run``
    continues that run where it is in this store (a resumed sweep): rows the store has and
    ``out_file`` lacks are first written to it (:meth:`Store.backfill`), and rows the file
    has and the store lacks are recorded (:func:`bench.results.store_sync.sync_run`).
    """
    if not enabled:
        yield None
        return
    store = Store.open(url)
    out = Path(out_file) if out_file is not None else None
    try:
        run_id = _open_run(store, out, resume_run, dict(
            kind=kind, command=command, config=config, environment=environment, git=git,
            out_file=out_file,
        ))  # fmt: skip
        rec = Recorder(store, run_id)
        try:
            yield rec
        except KeyboardInterrupt:
            rec.end(INTERRUPTED, out)
            raise
        except ResultsWriteError:  # rows measured but not all written: settle what the store has
            rec.settle(out)
            raise
        except BaseException:
            rec.end(FAILED, out)
            raise
        rec.settle(out)
    finally:
        store.close()


def _open_run(
    store: Store, out: Path | None, resume_run: int | None, fields: dict[str, Any]
) -> int:
    """The run to record into: ``resume_run`` reopened (the file completed from the store,
    the store from the file), else a new one; one line if the store fails meanwhile."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        run_id = resume_run if resume_run is not None and store.reopen_run(resume_run) else None
        if run_id is not None and out is not None:
            store.backfill(run_id, out)
            added, _ = sync_run(store, out, run_id)
            if added:
                note(f"recorded {added} row(s) of {out} the store did not have (run {run_id})")
        return run_id if run_id is not None else store.begin_run(**fields)
    except (SQLAlchemyError, OSError) as exc:
        raise InvalidInputError(
            f"the results store {shown_url(store.url)} failed before the run began: "
            f"{first_line(getattr(exc, 'orig', None) or exc)} (try again, or give --no-db)"
        ) from None


class Recorder:
    """Records the cells of one run; a failed write is reported once and measuring goes on."""

    def __init__(self, store: Store, run_id: int) -> None:
        self.store, self.run_id = store, run_id
        self.failed: str | None = None

    def __call__(self, row: dict[str, Any], samples_ns: Any) -> str | None:
        """Record ``row`` (which gets ``run_id``); the error's text if it could not be."""
        row["run_id"] = self.run_id
        if self.failed is not None:
            return None
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self.store.record(self.run_id, row, samples_ns)
        # the database's errors, and a value it cannot hold (an integer past 64 bits)
        except (SQLAlchemyError, OSError, OverflowError, ValueError) as exc:
            self.failed = (
                f"cannot record into {shown_url(self.store.url)}: "
                f"{first_line(getattr(exc, 'orig', None) or exc)}"
            )
            return self.failed
        return None

    def settle(self, out: Path | None) -> None:
        """End the run: the rows of ``out`` the store missed put into it, then ``finished``
        if it holds them all, else ``incomplete``; one line when the store is still away."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            complete = self.failed is None
            if out is not None and out.exists():
                added, complete = sync_run(self.store, out, self.run_id)
                if added and complete:
                    note(f"the store is back: recorded the {added} row(s) it missed from {out}")
            self.store.finish_run(self.run_id, FINISHED if complete else INCOMPLETE)
        except (SQLAlchemyError, OSError, CnnbenchError) as exc:
            self._away(exc, out)
            return
        if not complete:
            where = f"`cnnbench store sync {out}` records them" if out else "they were printed"
            warn(f"run {self.run_id} is incomplete: the store lacks rows of this run; {where}")

    def end(self, status: str, out: Path | None) -> None:
        """End the run as ``status`` (interrupted, failed), or say in one line that the store
        is away."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            self.store.finish_run(self.run_id, status)
        except (SQLAlchemyError, OSError) as exc:
            self._away(exc, out)

    def _away(self, exc: BaseException, out: Path | None) -> None:
        then = (
            f"its rows are in {out}: `cnnbench sweep CONFIG --out {out} --resume` or "
            f"`cnnbench store sync {out}` records them"
            if out is not None
            else "its rows were printed"
        )
        warn(
            f"the results store {shown_url(self.store.url)} is unreachable "
            f"({first_line(getattr(exc, 'orig', None) or exc)}): run {self.run_id} stays "
            f"'running' there; {then}"
        )
