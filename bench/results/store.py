"""The results store: every run and its cells in a database, SQLite by default, PostgreSQL by URL.

Where: ``--db URL``, else ``$CNNBENCH_DB``, else ``results.db`` in the user's data folder
(``$XDG_DATA_HOME/cnnbench``, by default ``~/.local/share/cnnbench``). A URL is any SQLAlchemy
URL (``sqlite:///h.db``, ``postgresql://user@host/db``); a plain path means an SQLite file.
``postgresql://`` uses psycopg 3 (``pip install 'cnnbench[postgres]'``) unless psycopg2 is
what is installed.

Writes are transactions: a cell's row and its samples are committed together, so a killed run
leaves every finished cell and no half row. SQLite runs in WAL mode with a long busy timeout
and takes its write lock when a transaction begins (``BEGIN IMMEDIATE``), so two sweeps can
record into one file at the same time; PostgreSQL needs nothing of the kind. Opening a store
migrates its schema (:mod:`bench.results.schema`) under a lock, and refuses one that is newer.

This module opens the store and writes; the URL is resolved in :mod:`bench.results.store_url`,
the queries are in :mod:`bench.results.store_read`, and the recording of a run (a block that
holds a run open, and its recorder) in :mod:`bench.results.store_recording`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.bench.measure import samples as sample_files
from cnnbench.bench.measure.validity import row_valid
from cnnbench.bench.results.files import cell_key
from cnnbench.bench.results.store_read import FINISHED, RUNNING, StoreReader
from cnnbench.bench.results.store_url import (
    STORE_MISSING,
    resolve_url,
    shown_url,
    store_available,
)
from cnnbench.errors import CnnbenchError, InvalidInputError, RuntimeUnavailableError, first_line
from cnnbench.progress import warn
from cnnbench.values import num

MACHINE_ENV = "CNNBENCH_MACHINE"
#: the columns of ``cells`` filled from a row (the rest of the row is in its JSON)
_CELL_FIELDS = (
    "model", "engine", "precision", "device", "batch", "scenario", "variant", "invalid_reason",
    "error", "latency_ms_p50", "latency_ms_p99", "throughput_ips",
)  # fmt: skip
_NUMERIC = {"batch": int, "latency_ms_p50": float, "latency_ms_p99": float, "throughput_ips": float}
#: PostgreSQL advisory lock key that serialises migrations ("cnnb" in ASCII)
_PG_LOCK = 0x636E6E62
#: an SQLite writer waits for a lock in steps of this many seconds, saying so after the first
_BUSY_S = 1.0
LOCK_TIMEOUT_ENV = "CNNBENCH_DB_TIMEOUT"


def now() -> str:
    """UTC time as ISO 8601 with microseconds: fixed width, so text order is time order."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def machine_name() -> str:
    """The name runs are recorded under: ``$CNNBENCH_MACHINE``, else the host name."""
    return os.environ.get(MACHINE_ENV) or socket.gethostname()


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.generic):
        return _clean(v.item())
    return v


def _dumps(obj: Any) -> str:
    if isinstance(obj, Mapping):
        obj = {str(k): _clean(v) for k, v in obj.items()}
    return json.dumps(obj, default=str, sort_keys=True)


class Store(StoreReader):
    """An open results store. Use :meth:`open`; close with :meth:`close` (or ``with``). Its
    queries are :class:`bench.results.store_read.StoreReader`'s."""

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str | None = None) -> Store:
        """Connect, create or migrate the schema, and return the store; one-line errors."""
        if not store_available():
            raise RuntimeUnavailableError(STORE_MISSING)
        from sqlalchemy import create_engine, event
        from sqlalchemy.exc import SQLAlchemyError

        from cnnbench.bench.results.schema import SCHEMA_VERSION, migrate, stored_version

        full = resolve_url(url)
        sqlite = full.startswith("sqlite")
        if sqlite:
            _sqlite_folder(full)
        try:
            engine = create_engine(
                full,
                connect_args={"timeout": _BUSY_S} if sqlite else {"connect_timeout": 10},
                poolclass=_null_pool(),
            )
        except ModuleNotFoundError as exc:
            raise RuntimeUnavailableError(
                f"the results store {shown_url(full)} needs the {exc.name} driver: "
                "pip install 'cnnbench[postgres]' (or give --no-db)"
            ) from None
        except (SQLAlchemyError, ValueError) as exc:
            raise InvalidInputError(
                f"--db {url or full}: not a database URL ({first_line(exc)}); give sqlite:///FILE, "
                "postgresql://USER@HOST/DB or a path, or --no-db"
            ) from None
        if sqlite:
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _LockWait(shown_url(full)))
        store = cls(engine, full)
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK})")
                version = stored_version(conn)
                if version is not None and version > SCHEMA_VERSION:
                    raise InvalidInputError(
                        f"the results store {shown_url(full)} has schema v{version}, newer than "
                        f"this cnnbench's v{SCHEMA_VERSION}: upgrade cnnbench "
                        "(pip install -U cnnbench), or give another --db"
                    )
                migrate(conn, now())
        except CnnbenchError:
            engine.dispose()
            raise
        except SQLAlchemyError as exc:
            engine.dispose()
            raise InvalidInputError(
                f"cannot open the results store {shown_url(full)}: {first_line(getattr(exc, 'orig', None) or exc)}"
                " (check --db or $CNNBENCH_DB, or give --no-db)"
            ) from None
        return store

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------

    def begin_run(
        self,
        *,
        kind: str,
        command: str,
        config: Mapping[str, Any] | None,
        environment: Mapping[str, Any],
        git: Mapping[str, Any],
        out_file: str | None,
    ) -> int:
        """A new run, ``running`` until :meth:`finish_run`; returns its id."""
        from cnnbench.bench.results.schema import runs

        versions = {
            k[: -len("_version")]: v for k, v in environment.items() if k.endswith("_version")
        }
        values = dict(
            started_at=now(), status=RUNNING, kind=kind, command=command,
            config=_dumps(config or {}), environment=_dumps(environment),
            versions=_dumps(versions), git_commit=git.get("git_commit"),
            git_dirty=git.get("git_dirty"), machine=machine_name(),
            cnnbench_version=versions.get("cnnbench"), out_file=out_file,
        )  # fmt: skip
        with self.engine.begin() as conn:
            return int(conn.execute(runs.insert().values(**values)).inserted_primary_key[0])  # type: ignore[index]

    def reopen_run(self, run_id: int) -> bool:
        """Mark an earlier run ``running`` again (a resumed sweep); False if it is not here."""
        from cnnbench.bench.results.schema import runs

        with self.engine.begin() as conn:
            done = conn.execute(
                runs.update().where(runs.c.id == run_id).values(status=RUNNING, finished_at=None)
            )
            return bool(done.rowcount)

    def finish_run(self, run_id: int, status: str = FINISHED) -> None:
        from cnnbench.bench.results.schema import runs

        with self.engine.begin() as conn:
            conn.execute(
                runs.update().where(runs.c.id == run_id).values(status=status, finished_at=now())
            )

    def record(self, run_id: int, row: Mapping[str, Any], samples_ns: Any = None) -> int:
        """One cell: its row and its samples in one transaction; returns the cell's id."""
        from cnnbench.bench.results.schema import SAMPLES_ENCODING, cells
        from cnnbench.bench.results.schema import samples as samples_table

        values: dict[str, Any] = {"run_id": run_id, "recorded_at": now()}
        values["cell_key"] = cell_key(row, repeat=False)
        rep = num(row.get("repeat"))
        values["repeat"] = int(rep) if rep is not None else None
        values["valid"] = row_valid(row)
        for f in _CELL_FIELDS:
            v = _clean(row.get(f))
            if f in _NUMERIC and v is not None:
                n = num(v)
                v = _NUMERIC[f](n) if n is not None and math.isfinite(n) else None
            values[f] = None if v in ("",) else v
        values["row"] = _dumps({k: v for k, v in row.items() if k != sample_files.SAMPLES_KEY})
        with self.engine.begin() as conn:
            cell_id = int(conn.execute(cells.insert().values(**values)).inserted_primary_key[0])  # type: ignore[index]
            if samples_ns is not None:
                blob, count = sample_files.encode(samples_ns)
                conn.execute(
                    samples_table.insert().values(
                        cell_id=cell_id, count=count, encoding=SAMPLES_ENCODING, data=blob
                    )
                )
        return cell_id


def _null_pool() -> Any:
    # One connection per use: a CLI process, and forked cell processes never share a socket.
    from sqlalchemy.pool import NullPool

    return NullPool


def _sqlite_folder(url: str) -> None:
    from sqlalchemy.engine import make_url

    db = make_url(url).database
    if db and db != ":memory:":
        with contextlib.suppress(OSError):
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)


def lock_timeout() -> float:
    """How long a writer waits for an SQLite store's lock: ``$CNNBENCH_DB_TIMEOUT`` seconds,
    default 60."""
    try:
        t = float(os.environ.get(LOCK_TIMEOUT_ENV, "60"))
    except ValueError:
        return 60.0
    return min(max(t, 0.0), 3600.0) if math.isfinite(t) else 60.0


class _LockWait:
    """``BEGIN IMMEDIATE`` on an SQLite store, waiting for another writer's lock in steps of
    :data:`_BUSY_S`: after the first step it says on stderr that it waits, and for how long at
    most (:func:`lock_timeout`); past that the database's "locked" error goes to the caller."""

    def __init__(self, shown: str) -> None:
        self.shown = shown

    def __call__(self, conn: Any) -> None:
        from sqlalchemy.exc import OperationalError

        end = time.monotonic() + lock_timeout()
        said = False
        while True:
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except OperationalError as exc:
                if "locked" not in str(exc.orig) or time.monotonic() >= end:
                    raise
                if not said:
                    warn(f"the results store {self.shown} is locked by another process; "
                         f"waiting up to {lock_timeout():.0f}s ({LOCK_TIMEOUT_ENV})")  # fmt: skip
                    said = True


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's own transaction handling would defer BEGIN; we issue BEGIN IMMEDIATE ourselves
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={int(_BUSY_S * 1000)}")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
