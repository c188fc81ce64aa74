"""Where the results store is: its SQLAlchemy URL from ``--db``, ``$CNNBENCH_DB`` or the default
file in the user's data folder, and the URL as messages show it (without its password)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

ENV = "CNNBENCH_DB"
DEFAULT_FILE = "results.db"
#: the one line for a store asked for where SQLAlchemy is not installed
STORE_MISSING = (
    "the results store needs SQLAlchemy, which is not installed here: pip install sqlalchemy, "
    "or give --no-db"
)


def store_available() -> bool:
    """Whether the results store can open here (SQLAlchemy is importable)."""
    try:
        import sqlalchemy  # noqa: F401
    except ImportError:
        return False
    return True


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
    try:
        from sqlalchemy.engine import make_url
    except ImportError:  # no store here at all: nothing to hide a password from
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as given
        return url
