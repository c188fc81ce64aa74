"""The results store's tables (SQLAlchemy 2 Core) and its versioned migrations.

Four tables, plus one holding the schema version:

* ``runs``: one per ``cnnbench run`` / ``sweep`` invocation: when, the command line, the
  config, the environment and library versions, the git commit of the working directory, the
  machine, and a status (``running`` until it ends: ``finished``, ``interrupted``, ``failed``).
* ``cells``: one per result row, with the columns people filter on (model, engine, precision,
  device, batch, scenario, validity, headline latencies) and the whole row as JSON.
* ``samples``: the row's raw latency samples (``.npy`` int64 nanoseconds, gzip), one per cell.
* ``jobs`` (v2): the service's queue, one row per submitted grid with its state and progress.

Migrations are numbered: :data:`MIGRATIONS` maps each version to the step that brings the
schema from the version before to it. A database whose version is newer than
:data:`SCHEMA_VERSION` is refused (an older cnnbench cannot know what changed). This module
imports SQLAlchemy at its top; :mod:`bench.results.store` imports it only when a store is opened, so
``cnnbench --help`` never pays for it.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

#: the schema this cnnbench writes; databases at a higher version are refused
SCHEMA_VERSION = 2

metadata = MetaData()

schema_version = Table(
    "cnnbench_schema",
    metadata,
    Column("version", Integer, nullable=False),
    Column("migrated_at", String(40), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("started_at", String(40), nullable=False),
    Column("finished_at", String(40)),
    Column("status", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("command", Text),
    Column("config", Text),  # JSON
    Column("environment", Text),  # JSON
    Column("versions", Text),  # JSON
    Column("git_commit", String(64)),
    Column("git_dirty", Boolean),
    Column("machine", String(255)),
    Column("cnnbench_version", String(40)),
    Column("out_file", Text),
)

cells = Table(
    "cells",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("recorded_at", String(40), nullable=False),
    Column("cell_key", Text, nullable=False),
    Column("repeat", Integer),
    Column("model", String(255)),
    Column("engine", String(64)),
    Column("precision", String(16)),
    Column("device", String(32)),
    Column("batch", Integer),
    Column("scenario", String(32)),
    Column("variant", Text),
    Column("valid", Boolean),
    Column("invalid_reason", Text),
    Column("error", Text),
    Column("latency_ms_p50", Float),
    Column("latency_ms_p99", Float),
    Column("throughput_ips", Float),
    Column("row", Text, nullable=False),  # JSON: every column of the result row
)
Index("cells_run", cells.c.run_id)
Index("cells_cell", cells.c.model, cells.c.engine, cells.c.precision, cells.c.batch)

samples = Table(
    "samples",
    metadata,
    Column("cell_id", Integer, ForeignKey("cells.id", ondelete="CASCADE"), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("encoding", String(40), nullable=False),
    Column("data", LargeBinary, nullable=False),
)

#: v2: the service's job queue (``cnnbench serve``): a job is a grid to sweep, with a state
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", String(40), nullable=False),
    Column("state", String(16), nullable=False),  # queued running done failed cancelled
    Column("grid", Text, nullable=False),  # JSON: the validated sweep config
    Column("upload_sha256", String(64)),
    Column("cells_total", Integer),
    Column("cells_done", Integer),
    Column("errors", Integer),
    Column("run_id", Integer),
    Column("attempts", Integer, nullable=False, default=0),
    Column("started_at", String(40)),
    Column("finished_at", String(40)),
    Column("message", Text),
    Column("cancel_requested", Boolean, nullable=False, default=False),
)
Index("jobs_state", jobs.c.state, jobs.c.id)

#: how a samples blob is encoded
SAMPLES_ENCODING = "npy-int64-ns+gzip"


def _v1(conn: Connection) -> None:
    for table in (runs, cells, samples):
        table.create(conn, checkfirst=True)
    for index in (*cells.indexes,):
        index.create(conn, checkfirst=True)


def _v2(conn: Connection) -> None:
    jobs.create(conn, checkfirst=True)
    for index in jobs.indexes:
        index.create(conn, checkfirst=True)


#: version -> the step from the version before it
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1, 2: _v2}


def stored_version(conn: Connection) -> int | None:
    """The schema version recorded in the database; None for an empty database."""
    if not conn.dialect.has_table(conn, schema_version.name):
        return None
    got = conn.execute(text("SELECT MAX(version) FROM cnnbench_schema")).scalar()
    return int(got) if got is not None else None


def migrate(conn: Connection, now: str, target: int = SCHEMA_VERSION) -> tuple[int, int]:
    """Bring the schema up to ``target`` inside the caller's transaction; (from, to).

    The caller holds the lock that serialises migrations (see :mod:`bench.results.store`).
    """
    current = stored_version(conn) or 0
    if current >= target:
        return current, current
    schema_version.create(conn, checkfirst=True)
    for version in range(current + 1, target + 1):
        MIGRATIONS[version](conn)
        conn.execute(schema_version.insert().values(version=version, migrated_at=now))
    return current, target
