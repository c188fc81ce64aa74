"""The options of the commands that print rows or use the results store: table columns, and
where the store is (``--db``) and whether ``run``/``sweep`` record into it."""

from __future__ import annotations

import click

from cnnbench.cli.run_options import options

columns_option = click.option(
    "--columns",
    default=None,
    help="Table columns, comma-separated result columns (default: the usual figures).",
)

#: the results store: --db URL (history, compare db:..., report --db, and where run/sweep record)
db_option = click.option(
    "--db",
    "db",
    default=None,
    metavar="URL",
    help="Results store: sqlite:///FILE, postgresql://..., or a path (default $CNNBENCH_DB, "
    "else results.db in ~/.local/share/cnnbench).",
)

#: run and sweep: record into the store (default) or not
record_options = options(
    db_option,
    click.option(
        "--no-db",
        "no_db",
        is_flag=True,
        help="Do not record this run in the results store (only --out files).",
    ),
)
