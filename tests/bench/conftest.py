"""Fixtures of the bench tests: the stores the store's tests run against, an SQLite file and the
PostgreSQL server that ``.ci/run`` starts (``$CNNBENCH_TEST_PG_URL``), skipped with a reason
where there is none."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ENV = "CNNBENCH_TEST_PG_URL"


def _pg_reason() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url:
        return f"no PostgreSQL server: ${PG_ENV} is not set (.ci/run starts one)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'cnnbench[postgres]')"
    return None


def _scratch_pg(url: str) -> Iterator[str]:
    """A fresh schema on the server for one test, dropped after it."""
    import sqlalchemy as sa

    from cnnbench.bench.results.store_url import resolve_url

    name = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(resolve_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {name}")
    except sa.exc.OperationalError as exc:
        pytest.skip(f"PostgreSQL at ${PG_ENV} cannot be reached: {str(exc).splitlines()[0]}")
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{name}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty store of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    reason = _pg_reason()
    if reason:
        pytest.skip(reason)
    yield from _scratch_pg(os.environ[PG_ENV])
