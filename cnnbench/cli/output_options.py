"""The options of the commands that print rows or use the results store: table columns, and
where the store is (``--db``) and whether ``run``/``sweep`` record into it."""

from __future__ import annotations

from typing import Any

import click

from cnnbench.cli.flags import options

columns_option = click.option(
    "--columns",
    default=None,
    help="Table columns, comma-separated result columns (default: the usual figures).",
)


class StoreUrlType(click.ParamType):
    """``--db``: a URL or a path; ``--db`` alone (``""``) is the default store."""

    name = "url"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value).strip()
        if text.startswith("-"):
            self.fail(
                f"{text!r} is not a store URL or path; give --db URL, or --db alone for the "
                "default store",
                param, ctx,
            )  # fmt: skip
        return text


#: the results store: --db URL (history, compare db:..., report --db, and where run/sweep record)
db_option = click.option(
    "--db",
    "db",
    type=StoreUrlType(),
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[URL]",
    help="Results store: sqlite:///FILE, postgresql://..., or a path; --db alone, or none, "
    "is $CNNBENCH_DB, else results.db in ~/.local/share/cnnbench.",
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
