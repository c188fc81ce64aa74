"""Commands: report (comparison.csv, plots and index.html from results files)."""

from __future__ import annotations

import click

from cnnbench.cli.app import cli, emit_csv, emit_json, emit_table, format_option

_SHOWN = (
    "model", "engine", "precision", "device", "params", "gmacs", "top1", "top1_source",
    "latency_ms_p50_b1", "latency_ms_p99_b1", "best_throughput_ips", "best_batch",
    "speedup_throughput", "errors",
)  # fmt: skip


@cli.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="report",
    show_default=True,
    help="Folder for comparison.csv, the plots (PNG + SVG) and index.html.",
)
@format_option()
def report(results: tuple[str, ...], out: str, fmt: str) -> None:
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
    Top-1 is measured where `cnnbench eval --data DIR --out RESULTS` rows exist for the cell,
    else the spec's published figure; every value says which. The last line printed is the
    path of index.html.
    """
    from cnnbench.bench.report import write_report

    rep = write_report(list(results), out)
    if fmt in ("json", "csv"):
        # Keep stdout machine-readable; the path goes to stderr.
        (emit_json if fmt == "json" else emit_csv)(rep.rows)
        click.echo(str(rep.index_html), err=True)
        return
    emit_table(rep.rows, _SHOWN, title=f"comparison ({len(rep.rows)} cells)")
    click.echo(f"wrote {rep.comparison_csv} and {2 * len(rep.plots)} plot files")
    click.echo(str(rep.index_html))
