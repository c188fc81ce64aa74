"""Commands: report (comparison.csv, plots and index.html) and compare (the CI gate)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from cnnbench.bench.report.build import write_report
from cnnbench.bench.report.recommend import decision_lines
from cnnbench.bench.results.compare import (
    DEFAULT_METRICS,
    Comparison,
    Source,
    compare_sources,
    file_source,
    parse_threshold,
)
from cnnbench.bench.results.files import format_of, write_rows
from cnnbench.bench.results.history import db_source, is_ref, machine_filter, parse_when
from cnnbench.bench.results.store import Store
from cnnbench.bench.results.store_url import shown_url
from cnnbench.cli.common import cli, emit_csv, emit_json, emit_table, format_option
from cnnbench.cli.flags import EngineType
from cnnbench.cli.output_options import db_option
from cnnbench.cli.recommend_cmds import constraint_options, constraints_from
from cnnbench.errors import CheckFailedError

_LABELS = {
    "precision": "prec", "top1": "top-1 %", "top1_source": "top-1 from",
    "latency_ms_p50_b1": "p50 b1 ms", "latency_ms_p99_b1": "p99 b1 ms",
    "best_throughput_ips": "best img/s", "best_batch": "batch", "speedup_throughput": "speed-up",
    "speedup_baseline": "vs",
}  # fmt: skip
_SHOWN = (
    "model", "engine", "precision", "device", "params", "gmacs", "top1", "top1_source",
    "latency_ms_p50_b1", "latency_ms_p99_b1", "best_throughput_ips", "best_batch",
    "speedup_throughput", "speedup_baseline", "errors",
)  # fmt: skip


@cli.command()
@click.argument("results", nargs=-1, type=click.Path(dir_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="report",
    show_default=True,
    help="Folder for comparison.csv, the plots (PNG + SVG) and index.html.",
)
@db_option
@click.option(
    "--history",
    "with_history",
    is_flag=True,
    help="Add the store's history figures (implied when --db or --since is given).",
)
@click.option("--since", default=None, help="History from this time (2026-12-01, 7d, 12h).")
@click.option("--machine", default=None, help="History of this machine only ('this': here).")
@click.option(
    "--zoo-context", is_flag=True,
    help="Add every zoo model's published top-1 to the accuracy figure, as labelled context.",
)  # fmt: skip
@click.option(
    "--baseline-engine", type=EngineType(), default=None,
    help="Speed-ups against this engine's FP32 (default: torch where it ran, else the slowest).",
)  # fmt: skip
@click.option(
    "--include-null", is_flag=True, help="Keep the null engine's rows (harness overhead)."
)
@constraint_options
@format_option()
def report(
    results: tuple[str, ...],
    out: str,
    db: str | None,
    with_history: bool,
    since: str | None,
    machine: str | None,
    fmt: str,
    zoo_context: bool,
    baseline_engine: str | None,
    include_null: bool,
    **constraints: Any,
) -> None:
    """Turn RESULTS files (.csv / .jsonl from run, sweep or eval) into a comparison report.

    \b
    Writes into --out:
      comparison.csv          one row per model x engine x precision x device: params, GMACs,
                              top-1 and its source (measured | published), batch-1 p50/p99,
                              best throughput and its batch, memory, speed-up vs torch FP32
                              on the same device, efficiency (share of measured peak)
      top1_vs_gmacs.*         every ImageNet zoo model, bubble area = parameters
      top1_vs_latency.*       top-1 vs batch-1 latency per engine + precision
      throughput_vs_batch.*   memory_vs_batch.*
      index.html              the plots and the table; opens offline from disk
      latency_over_time.*    with --db / --history: per cell, p50 and throughput over time
      throughput_over_time.* from the results store, invalid rows marked
    Top-1 is measured where `cnnbench eval --data DIR --out RESULTS` rows exist for the cell,
    else the spec's published figure; every value says which. Without RESULTS the table is
    the store's newest run of each cell. The last line printed is the path of index.html.
    """
    kw: dict[str, Any] = dict(
        constraints=constraints_from(constraints), zoo_context=zoo_context,
        baseline_engine=baseline_engine, include_null=include_null,
    )  # fmt: skip
    if not results and not (db is not None or with_history or since):
        raise click.UsageError("give RESULTS files, or --db URL for the results store")
    if db is not None or with_history or since or not results:
        with Store.open(db) as store:
            rows = store.cells(
                machine=machine_filter(machine), since=parse_when(since), finished_only=True
            )
            label = f"{shown_url(store.url)}" + (f" since {since}" if since else "")
        rep = write_report(list(results), out, store_rows=rows, store_label=label, **kw)
    else:
        rep = write_report(list(results), out, **kw)
    if fmt in ("json", "csv"):
        # Keep stdout machine-readable; the path goes to stderr.
        (emit_json if fmt == "json" else emit_csv)(rep.rows)
        click.echo(str(rep.index_html), err=True)
        return
    for line in decision_lines(rep.decision):
        click.echo(line)
    emit_table(rep.rows, _SHOWN, title=f"comparison ({len(rep.rows)} cells)", labels=_LABELS)
    click.echo(f"wrote {rep.comparison_csv} and {2 * len(rep.plots)} plot files")
    click.echo(str(rep.index_html))


@cli.command()
@click.argument("base")
@click.argument("new")
@click.option(
    "--threshold",
    default="5%",
    show_default=True,
    help="Regression threshold in percent (5%, 5 or 0.05).",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    help="Metric column(s) to compare; repeat or comma-separate. Default: latency_ms_p50, throughput_ips.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write the comparison to FILE.csv or FILE.jsonl.",
)
@click.option(
    "--fail-on-inconclusive",
    is_flag=True,
    help="Exit 1 on an inconclusive cell too (an invalid row, or a change within the noise).",
)
@click.option(
    "--interleaved",
    is_flag=True,
    help="BASE and NEW were measured in alternating passes on one machine (bench/ci/"
    "benchmark.sh --base): a repeat invalid only for the machine's load is kept.",
)
@db_option
@click.option(
    "--machine",
    default=None,
    help="db:latest / db:latest~N among runs recorded on this machine ('this': here).",
)
@format_option()
def compare(
    base: str,
    new: str,
    threshold: str,
    metrics: tuple[str, ...],
    out: str | None,
    fail_on_inconclusive: bool,
    interleaved: bool,
    db: str | None,
    machine: str | None,
    fmt: str,
) -> None:
    """Compare two results cell by cell; exit 1 only on a real regression.

    \b
    BASE and NEW are results files (.csv / .jsonl) or runs in the results store: db:RUN_ID,
    db:latest (the newest finished run), db:latest~N (N runs before it); see `cnnbench
    history`. --db names the store, --machine narrows db:latest to one machine's runs.

    \b
    Lower is better for latencies and memory; higher for throughput_ips, gmacs_per_s,
    efficiency. ratio = new / base. A change beyond the threshold is a regression only when
    it is significant: the 95% bootstrap CI of the ratio, from both rows' stored latency
    samples, lies beyond 1 + threshold (without samples: the medians' CIs do not overlap).
    A cell with an invalid row on either side, or a change within the noise, is
    inconclusive: exit 0 unless --fail-on-inconclusive. p_value: Mann-Whitney U.
    """
    thr = parse_threshold(threshold)
    names = _metric_names(metrics)
    if out:
        format_of(out)
    cmp, sides = _compare_refs(
        base, new, names, thr, db=db, machine=machine, interleaved=interleaved
    )
    if out:
        write_rows(out, cmp.rows)
    _emit_comparison(cmp, fmt, f"{sides[0].label} -> {sides[1].label} (threshold {thr:g}%)")
    _note_summary(cmp)
    if out:
        click.echo(str(Path(out)))
    _gate(cmp, thr, fail_on_inconclusive)


def _metric_names(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """The --metric columns, repeated or comma-separated; the default metrics without any."""
    return tuple(m.strip() for ms in metrics for m in ms.split(",") if m.strip()) or DEFAULT_METRICS


def _compare_refs(
    base: str,
    new: str,
    names: tuple[str, ...],
    thr: float,
    *,
    db: str | None,
    machine: str | None,
    interleaved: bool = False,
) -> tuple[Comparison, list[Source]]:
    """BASE and NEW as comparison sides (results files, or runs in the store, which is opened
    once for both) and their comparison."""
    with contextlib.ExitStack() as stack:
        sides = []
        store: Store | None = None
        for ref in (base, new):
            if is_ref(ref):
                if store is None:
                    store = stack.enter_context(Store.open(db))
                sides.append(db_source(store, ref, machine=machine_filter(machine)))
            else:
                sides.append(file_source(ref))
        cmp = compare_sources(
            sides[0], sides[1], metrics=names, threshold_pct=thr, interleaved=interleaved
        )
    return cmp, sides


def _emit_comparison(cmp: Comparison, fmt: str, title: str) -> None:
    """The compared rows on stdout: JSON, CSV, or a table under ``title``."""
    if fmt == "json":
        emit_json(cmp.rows)
    elif fmt == "csv":
        emit_csv(cmp.rows)
    else:
        cols = ["model", "engine", "precision", "batch", "scenario", "metric", "base", "new",
                "change_pct", "ratio_ci_low", "ratio_ci_high", "p_value", "status", "note"]  # fmt: skip
        labels = {"change_pct": "change %", "ratio_ci_low": "ratio CI low",
                  "ratio_ci_high": "ratio CI high", "p_value": "p (MWU)", "scenario": "scen.",
                  "precision": "prec"}  # fmt: skip
        emit_table(cmp.rows, cols, title, labels=labels)


def _note_summary(cmp: Comparison) -> None:
    """On stderr: cells missing in NEW, errors, and the counts of regressions and inconclusive
    cells."""
    for k in cmp.missing_in_new:
        click.echo(f"missing in new: {k}", err=True)
    for e in cmp.errors:
        click.echo(e, err=True)
    counts = {s: sum(r["status"] == s for r in cmp.rows) for s in ("regression", "inconclusive")}
    click.echo(
        f"{counts['regression']} regression(s), {counts['inconclusive']} inconclusive, "
        f"{len(cmp.rows)} compared",
        err=True,
    )


def _gate(cmp: Comparison, thr: float, fail_on_inconclusive: bool) -> None:
    """Fail (exit 1) on a regression beyond ``thr``, or on an inconclusive cell when asked."""
    if cmp.regressions:
        cells = "; ".join(
            f"{r['model']}/{r['engine']}/{r['precision']}/b{r['batch']}/{r['scenario']} {r['metric']} {r['change_pct']:+.1f}%"
            for r in cmp.regressions
        )
        raise CheckFailedError(f"{len(cmp.regressions)} regression(s) beyond {thr:g}%: {cells}")
    if fail_on_inconclusive and cmp.inconclusive:
        r = cmp.inconclusive[0]
        raise CheckFailedError(
            f"{len(cmp.inconclusive)} inconclusive cell(s) (--fail-on-inconclusive): "
            f"{r['model']}/{r['engine']}/b{r['batch']}/{r['scenario']} {r['metric']}: {r['note']}"
        )
