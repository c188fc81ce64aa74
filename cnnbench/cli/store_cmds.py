"""Commands over the results store: history (runs and cells) and regressions (over time); and
the recording of a run or sweep into the store."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from cnnbench import limits
from cnnbench.bench.measure.environment import capture, git_state
from cnnbench.bench.results.compare import DEFAULT_METRICS, parse_threshold
from cnnbench.bench.results.history import machine_filter, parse_when, regressions, run_summary
from cnnbench.bench.results.store import Store
from cnnbench.bench.results.store_recording import Recorder, recording
from cnnbench.bench.results.store_sync import sync_file
from cnnbench.bench.results.store_url import ENV as DB_ENV
from cnnbench.bench.results.store_url import STORE_MISSING, shown_url, store_available
from cnnbench.bench.run.sweep_config import SweepConfig
from cnnbench.cli.common import PrecisionType, cli, emit_csv, emit_json, emit_table, format_option
from cnnbench.cli.flags import BatchType, DeviceType, EngineType, ScenarioType, bounded, options
from cnnbench.cli.output_options import db_option
from cnnbench.errors import CheckFailedError, StoreUnavailableError, first_line
from cnnbench.progress import note, warn

_RUN_COLUMNS = (
    "run_id", "started_at", "status", "kind", "machine", "cells", "errors", "invalid",
    "git_commit", "command",
)  # fmt: skip
_CELL_COLUMNS = (
    "run_id", "recorded_at", "model", "engine", "precision", "device", "batch", "scenario",
    "latency_ms_p50", "latency_ms_p99", "throughput_ips", "valid", "invalid_reason", "error",
)  # fmt: skip
_LABELS = {
    "latency_ms_p50": "p50 ms", "latency_ms_p99": "p99 ms", "throughput_ips": "img/s",
    "precision": "prec", "scenario": "scen.", "recorded_at": "recorded (UTC)",
    "started_at": "started (UTC)", "change_pct": "change %", "base_run_id": "base run",
    "run_id": "run", "latest_run_id": "latest run", "p_value": "p (MWU)",
    "still_slower": "still slower",
}  # fmt: skip


@contextlib.contextmanager
def record_into_store(
    o: dict[str, Any],
    *,
    kind: str,
    cfg: SweepConfig,
    out: Path | None,
    resume_run: int | None = None,
) -> Iterator[Recorder | None]:
    """The store's recorder for a ``run`` or ``sweep`` (None with --no-db); says where at the end.

    The default store is optional: where SQLAlchemy is not installed and no store was asked
    for (no ``--db``, no ``$CNNBENCH_DB``), the run goes on unrecorded and says so once. A
    store that was asked for fails in one line instead (:data:`STORE_MISSING`)."""
    enabled = not o.get("no_db")
    if enabled and o.get("db") is None and not os.environ.get(DB_ENV) and not store_available():
        warn(f"not recording this {kind} in the results store: {STORE_MISSING}")
        enabled = False
    with recording(
        o.get("db"), enabled=enabled, kind=kind,
        command=shlex.join(["cnnbench", *sys.argv[1:]]), config=asdict(cfg),
        environment=capture(), git=git_state(Path.cwd()),
        out_file=str(out.absolute()) if out is not None else None, resume_run=resume_run,
    ) as rec:  # fmt: skip
        yield rec
    if rec is not None:
        note(f"recorded as run {rec.run_id} in {shown_url(rec.store.url)}")


_filters = options(
    click.option("--model", "-m", "models", multiple=True, help="Only these models (repeatable)."),
    click.option(
        "--engine", "-e", "engines", type=EngineType(), multiple=True, help="Only these engines."
    ),
    click.option(
        "--precision",
        "-p",
        "precisions",
        type=PrecisionType(),
        multiple=True,
        help="Only these precisions.",
    ),  # fmt: skip
    click.option(
        "--batch", "-b", "batches", type=BatchType(), multiple=True, help="Only these batches."
    ),
    click.option(
        "--scenario",
        "-s",
        "scenarios",
        type=ScenarioType(),
        multiple=True,
        help="Only these scenarios.",
    ),  # fmt: skip
    click.option(
        "--device",
        "devices",
        type=DeviceType(),
        multiple=True,
        help="Only these devices (cpu, cuda:0).",
    ),  # fmt: skip
    click.option(
        "--machine", default=None, help="Only runs recorded on this machine ('this': here)."
    ),
    click.option("--since", default=None, help="From this time (2026-12-01, 7d, 12h)."),
)


def _where(o: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": o["models"] or None,
        "engine": o["engines"] or None,
        "precision": tuple(p.value for p in o["precisions"]) or None,
        "batch": o["batches"] or None,
        "scenario": o["scenarios"] or None,
        "device": o["devices"] or None,
    }


@cli.command()
@db_option
@click.option("--cells", "show_cells", is_flag=True, help="List cells (result rows), not runs.")
@click.option("--run", "run_id", type=bounded(limits.ID), default=None, help="Only this run.")
@_filters
@click.option("--until", default=None, help="Before this time (same forms as --since).")
@click.option(
    "--limit", type=bounded(limits.ROWS), default=None, help="At most N runs / cells (newest)."
)
@format_option()
def history(**o: Any) -> None:
    """Runs and cells recorded in the results store, newest first.

    \b
    Runs: id, start, status (running, finished, interrupted, failed), machine, cell / error /
    invalid counts, git commit of the working directory, command. --cells lists the rows
    (JSON: every column, with run_id and cell_id). Filters combine; a run is listed when it
    has a cell that matches. Times are UTC.
    """
    since, until = parse_when(o["since"]), parse_when(o["until"], option="--until")
    machine = machine_filter(o["machine"])
    where = _where(o)
    with Store.open(o["db"]) as store:
        if o["show_cells"] or any(where.values()):
            rows = store.cells(
                run_ids=[o["run_id"]] if o["run_id"] is not None else None, machine=machine,
                since=since, until=until, **where,
            )  # fmt: skip
        if o["show_cells"]:
            shown = list(reversed(rows))[: o["limit"]] if o["limit"] else list(reversed(rows))
            _emit(shown, _CELL_COLUMNS, o["fmt"], f"cells in {shown_url(store.url)}")
            return
        runs = store.runs(run_id=o["run_id"], machine=machine, since=since, until=until)
        if any(where.values()):
            keep = {r["run_id"] for r in rows}
            runs = [r for r in runs if r["run_id"] in keep]
        runs = runs[: o["limit"]] if o["limit"] else runs
        if o["fmt"] == "json":
            emit_json(runs)
            return
        _emit(
            [run_summary(r) for r in runs],
            _RUN_COLUMNS,
            o["fmt"],
            f"runs in {shown_url(store.url)}",
        )


def _emit(rows: list[dict[str, Any]], cols: tuple[str, ...], fmt: str, title: str) -> None:
    if fmt == "json":
        emit_json(rows)
    elif fmt == "csv":
        emit_csv(rows, list(cols) if rows and "row" not in rows[0] else None)
    else:
        emit_table(rows, [c for c in cols if any(r.get(c) is not None for r in rows)] or list(cols),
                   f"{title} ({len(rows)})", labels=_LABELS)  # fmt: skip


@cli.command("regressions")
@db_option
@_filters
@click.option("--threshold", default="5%", show_default=True, help="Regression threshold.")
@click.option(
    "--metric", "metrics", multiple=True,
    help="Metric column(s) to track; default latency_ms_p50, throughput_ips.",
)  # fmt: skip
@format_option()
def regressions_cmd(**o: Any) -> None:
    """Scan the store's history per cell and name the first run where each got slower.

    \b
    Per machine and cell, each finished run is compared with the last earlier run that has a
    valid row for the cell, by compare's rules (beyond the threshold and significant on the
    stored samples, or on repeats; invalid rows are never a regression). A lasting slowdown is
    reported once, at the run that first shows it; 'still slower' compares the newest run
    with the run before the step. Exit 1 when a cell is still slower, else 0.
    """
    thr = parse_threshold(o["threshold"])
    metrics = tuple(m.strip() for ms in o["metrics"] for m in ms.split(",") if m.strip())
    with Store.open(o["db"]) as store:
        found = regressions(
            store, metrics=metrics or DEFAULT_METRICS, threshold_pct=thr,
            machine=machine_filter(o["machine"]), since=parse_when(o["since"]), **_where(o),
        )  # fmt: skip
        url = shown_url(store.url)
    cols = ("run_id", "base_run_id", "machine", "model", "engine", "precision", "batch",
            "scenario", "metric", "base", "new", "change_pct", "p_value", "still_slower")  # fmt: skip
    if o["fmt"] == "json":
        emit_json(found)
    elif o["fmt"] == "csv":
        emit_csv(found, list(cols))
    else:
        emit_table(found, cols, f"regressions in {url} (threshold {thr:g}%)", labels=_LABELS)
    still = [r for r in found if r["still_slower"]]
    click.echo(f"{len(found)} regression step(s), {len(still)} still slower", err=True)
    if still:
        r = still[0]
        raise CheckFailedError(
            f"{len(still)} cell(s) still slower than before their regression; first: {r['cell']} "
            f"{r['metric']} {r['change_pct']:+.1f}% at run {r['run_id']} (from run {r['base_run_id']})"
        )


@cli.group("store")
def store_group() -> None:
    """The results store itself: put a results file's rows into it."""


@store_group.command("sync")
@click.argument("results", type=click.Path(dir_okay=False))
@db_option
@click.option(
    "--finish", is_flag=True,
    help="Also call finished a run still marked running whose rows are now all in the store "
    "(when the process that recorded it is gone).",
)  # fmt: skip
def store_sync(results: str, db: str | None, finish: bool) -> None:
    """Put into the store every row of RESULTS (.csv or .jsonl) it lacks, with its samples.

    \b
    For a run or sweep that went on while the store was away (PostgreSQL stopped, SQLite
    locked, a full disk): its rows are in the file and the run is 'incomplete' (or still
    'running' if the store never came back). A row is matched by its run, cell and the time
    it was measured, so a row is never recorded twice. A run that ended incomplete becomes
    finished once the store holds all its rows; rows of no run here go into one 'sync' run.
    """
    from sqlalchemy.exc import SQLAlchemyError

    path = Path(results)
    with Store.open(db) as store:
        url = shown_url(store.url)
        try:
            report = sync_file(store, path, finish=finish)
        except (SQLAlchemyError, OSError) as exc:
            raise StoreUnavailableError(
                f"cannot record into {url}: {first_line(getattr(exc, 'orig', None) or exc)}; "
                "nothing is lost: run this again when the store is back"
            ) from None
    for rid, n in report.added.items():
        click.echo(f"run {rid}: {n} row(s) recorded")
    click.echo(f"{report.total} row(s) of {path} recorded into {url}")
    for rid in report.finished:
        note(f"run {rid} is finished: the store holds every row of {path} for it")
    for rid in report.still_running:
        warn(f"run {rid} is still marked running; if its process is gone, add --finish")
