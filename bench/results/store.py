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
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import socket
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnbench.bench.measure import samples as sample_files
from cnnbench.bench.measure.validity import row_valid
from cnnbench.bench.results.files import append_row, cell_key, read_rows
from cnnbench.errors import CnnbenchError, InvalidInputError, RuntimeUnavailableError, first_line
from cnnbench.values import num

if TYPE_CHECKING:
    from sqlalchemy import Engine

ENV = "CNNBENCH_DB"
MACHINE_ENV = "CNNBENCH_MACHINE"
DEFAULT_FILE = "results.db"
#: a run's status while it records, and after
RUNNING, FINISHED, INTERRUPTED, FAILED = "running", "finished", "interrupted", "failed"
#: the columns of ``cells`` filled from a row (the rest of the row is in its JSON)
_CELL_FIELDS = (
    "model", "engine", "precision", "device", "batch", "scenario", "variant", "invalid_reason",
    "error", "latency_ms_p50", "latency_ms_p99", "throughput_ips",
)  # fmt: skip
_NUMERIC = {"batch": int, "latency_ms_p50": float, "latency_ms_p99": float, "throughput_ips": float}
#: PostgreSQL advisory lock key that serialises migrations ("cnnb" in ASCII)
_PG_LOCK = 0x636E6E62


def now() -> str:
    """UTC time as ISO 8601 with microseconds: fixed width, so text order is time order."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def machine_name() -> str:
    """The name runs are recorded under: ``$CNNBENCH_MACHINE``, else the host name."""
    return os.environ.get(MACHINE_ENV) or socket.gethostname()


def data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cnnbench"


def resolve_url(url: str | None = None) -> str:
    """The store's SQLAlchemy URL from ``--db``, ``$CNNBENCH_DB`` or the default file."""
    given = url or os.environ.get(ENV) or str(data_dir() / DEFAULT_FILE)
    if "://" not in given:  # a path: an SQLite file
        return f"sqlite:///{Path(given).expanduser().absolute()}"
    scheme, rest = given.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+{_pg_driver()}://{rest}"
    return given


def _pg_driver() -> str:
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return "psycopg2"
    return "psycopg"


def shown_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as given
        return url


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


class Store:
    """An open results store. Use :meth:`open`; close with :meth:`close` (or ``with``)."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine, self.url = engine, url

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str | None = None) -> Store:
        """Connect, create or migrate the schema, and return the store; one-line errors."""
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
                connect_args={"timeout": 60} if sqlite else {"connect_timeout": 10},
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
            event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
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

    # -- reading -----------------------------------------------------------------------------

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
        **where: Any,
    ) -> list[dict[str, Any]]:
        """Result rows in recording order, each with ``run_id``, ``cell_id``, ``machine`` and
        ``recorded_at``; ``where`` filters on model, engine, precision, device, batch, scenario
        (a value or a list of values)."""
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
        with self.engine.connect() as conn:
            result = conn.execute(q).all()
        out = []
        for cid, rid, at, row, mach in result:
            r = json.loads(row)
            r.update(run_id=rid, cell_id=cid, machine=mach, recorded_at=at)
            out.append(r)
        return out

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
                sample_files.store(out, row)
            append_row(out, row)
            have.add(cell_key(r))
            added += 1
        return added

    def resolve(self, ref: str, *, machine: str | None = None) -> int:
        """A run id from ``RUN_ID``, ``latest`` or ``latest~N`` (finished runs, newest first,
        on ``machine`` when given); one-line error when there is no such run."""
        text = ref.strip()
        if text.isdigit():
            if not self.runs(run_id=int(text)):
                raise InvalidInputError(f"db:{ref}: no run {text} in {shown_url(self.url)}")
            return int(text)
        back = 0
        if text.startswith("latest~") and text[7:].isdigit():
            back = int(text[7:])
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


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # pysqlite's own transaction handling would defer BEGIN; we issue BEGIN IMMEDIATE ourselves
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


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
