"""Recording a run into the results store: :func:`recording` holds a run open for the length of
a block, and its :class:`Recorder` records the run's cells."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cnnbench.bench.results.store import Store
from cnnbench.bench.results.store_read import FAILED, FINISHED, INTERRUPTED
from cnnbench.bench.results.store_url import shown_url
from cnnbench.errors import first_line


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

    The run ends ``finished``, ``interrupted`` (Ctrl-C) or ``failed`` (another exception).
    ``resume_run`` continues that run where it is in this store (a resumed sweep); rows the
    store has and ``out_file`` lacks are first written to it (:meth:`Store.backfill`).
    """
    if not enabled:
        yield None
        return
    store = Store.open(url)
    try:
        run_id = resume_run if resume_run is not None and store.reopen_run(resume_run) else None
        if run_id is not None and out_file is not None:
            store.backfill(run_id, Path(out_file))
        if run_id is None:
            run_id = store.begin_run(
                kind=kind, command=command, config=config, environment=environment, git=git,
                out_file=out_file,
            )  # fmt: skip
        rec = Recorder(store, run_id)
        try:
            yield rec
        except KeyboardInterrupt:
            store.finish_run(run_id, INTERRUPTED)
            raise
        except BaseException:
            store.finish_run(run_id, FAILED)
            raise
        store.finish_run(run_id, FINISHED)
    finally:
        store.close()


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
        except (SQLAlchemyError, OSError) as exc:
            self.failed = (
                f"cannot record into {shown_url(self.store.url)}: "
                f"{first_line(getattr(exc, 'orig', None) or exc)}"
            )
            return self.failed
        return None
