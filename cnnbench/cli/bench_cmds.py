"""Commands: run (cells from flags) and sweep (cells from a YAML grid), one cell path for both.

``run`` builds a :class:`SweepConfig` from its typed options (:class:`RunOptions`) and
measures its cells with the same :func:`run_cells` and :class:`CellRunner` as ``sweep``: each
cell in a fresh process, after its preparation; ``--in-process`` measures in this one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from cnnbench import limits
from cnnbench.bench.measure.cuda_timing import END_TO_END, GPU_COMPUTE, TIMING_ABOUT
from cnnbench.bench.measure.stats import CI_METHOD, PERCENTILE_METHOD
from cnnbench.bench.measure.timing import StopRule
from cnnbench.bench.results.files import THROUGHPUT_DEFINITION, check_output, columns_for
from cnnbench.bench.run.cell import check_runtime
from cnnbench.bench.run.cell_spec import CellSpec
from cnnbench.bench.run.local import (
    CellRunner,
    Record,
    check_fresh,
    load_config,
    pending_cells,
    resume_run_id,
    run_cells,
    run_sweep,
)
from cnnbench.bench.run.max_batch import find_max_batch
from cnnbench.bench.run.ray_executor import run_sweep_on_ray
from cnnbench.cli.common import cli, emit_csv, emit_json, emit_table, format_option
from cnnbench.cli.flags import (
    ScenarioType,
    artifacts_option,
    batch_option,
    bounded,
    device_option,
    engine_opt_option,
    engine_option,
    int8_options,
    precision_option,
    seed_option,
    server_options,
    stop_options,
    threads_option,
    timing_option,
    user_model_options,
    weights_option,
)
from cnnbench.cli.output_options import columns_option, record_options
from cnnbench.cli.run_options import RunOptions, check_inputs, say_random_weights
from cnnbench.cli.store_cmds import record_into_store
from cnnbench.errors import CheckFailedError, InvalidInputError, ResultsWriteError
from cnnbench.progress import note, warn

TABLE_COLUMNS = (
    "model", "engine", "precision", "device", "batch", "scenario", "timing_mode", "latency_ms_p50",
    "latency_ms_p90", "latency_ms_p99", "throughput_ips", "samples", "ci_half_width_pct",
    "efficiency", "host_peak_rss_mb", "device_mem_peak_mb", "valid", "error",
)  # fmt: skip
#: short headers that carry their units, so no header is cut to ``latency_…``
LABELS = {
    "precision": "prec", "scenario": "scen.", "timing_mode": "timing", "latency_ms_p50": "p50 ms",
    "latency_ms_p90": "p90 ms", "latency_ms_p99": "p99 ms", "latency_ms_mean": "mean ms",
    "throughput_ips": "img/s", "samples": "n", "ci_half_width_pct": "CI ±%",
    "gmacs_per_s": "GMAC/s", "efficiency": "eff.", "host_peak_rss_mb": "RSS MB",
    "device_mem_peak_mb": "dev MB", "effective_precision": "eff. prec",
    "foreign_cpu_cores": "foreign cores", "invalid_reason": "why invalid",
}  # fmt: skip


def _print_rows(
    rows: list[dict[str, Any]], fmt: str, title: str, columns: str | None = None
) -> None:
    if fmt == "json":
        emit_json(rows)
        return
    if fmt == "csv":
        emit_csv(rows, columns_for(rows))
        return
    if columns:
        cols = [c.strip() for c in columns.split(",") if c.strip()]
        known = {k for r in rows for k in r}
        unknown = [c for c in cols if c not in known]
        if unknown:
            raise InvalidInputError(
                f"--columns: no column '{unknown[0]}' in the rows; see --format csv for all"
            )
    else:
        cols = [c for c in TABLE_COLUMNS if any(r.get(c) is not None for r in rows)]
    emit_table(rows, cols, title, labels=LABELS)
    for r in rows:
        if not r.get("error") and not r.get("valid"):
            click.echo(f"invalid: {r.get('cell')}: {r.get('invalid_reason')}")
    click.echo(f"throughput: {THROUGHPUT_DEFINITION}")
    if any(r.get("timing_mode") for r in rows):  # GPU rows: latency and img/s in their mode
        click.echo(f"timing: {TIMING_ABOUT[END_TO_END]}; {TIMING_ABOUT[GPU_COMPUTE]}")
    click.echo(f"percentiles: {PERCENTILE_METHOD}; median CI: 95% {CI_METHOD}")
    click.echo("efficiency: achieved GMAC/s / measured matmul peak GMAC/s (same device, dtype)")


@cli.command()
@click.option(
    "--model",
    "-m",
    "models",
    default=None,
    help="Model(s), comma-separated: zoo names, your ONNX file (x.onnx) or your PyTorch "
    "module factory (package.module:callable). Default: the zoo's ImageNet models.",
)
@engine_option("onnxruntime")
@precision_option()
@batch_option()
@click.option(
    "--scenario",
    "-s",
    type=ScenarioType(),
    default="offline",
    show_default=True,
    help="single-stream | multi-stream | offline | server (LoadGen).",
)
@device_option
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    help="Append rows to FILE.csv or FILE.jsonl.",
)
@stop_options
@threads_option
@weights_option
@artifacts_option
@server_options
@int8_options
@click.option(
    "--in-process",
    is_flag=True,
    help="Measure in this process, after preparing there (for debugging: memory and timing "
    "then include export and earlier cells).",
)
@click.option("--isolate", is_flag=True, hidden=True, help="The default now; kept for old scripts.")
@engine_opt_option
@timing_option
@click.option(
    "--profile",
    is_flag=True,
    help="After measuring each cell, profile it per layer (cnnbench profile): the row gains "
    "its time shares per executed precision and conversion_time_share; with --out, the "
    "profile JSON goes to FILE.profiles/.",
)
@click.option(
    "--repeats",
    type=bounded(limits.REPEATS),
    default=1,
    show_default=True,
    help="Measure each cell N times, each in its own process: compare then sees run-to-run noise.",
)
@click.option(
    "--find-max-batch",
    is_flag=True,
    help="On a GPU: find the largest batch that fits (doubling, then a binary search that "
    "catches out-of-memory), then measure it; --batch is the search's start.",
)
@click.option(
    "--max-batch-limit",
    type=bounded(limits.BATCH),
    default=4096,
    show_default=True,
    help="The largest batch --find-max-batch tries.",
)
@click.option("--dry-run", is_flag=True, help="List the cells and exit.")
@record_options
@user_model_options
@seed_option
@format_option()
@columns_option
def run(**o: Any) -> None:  # fmt: skip
    """Measure latency, throughput and memory of models on an engine.

    \b
    Builds what the engine needs first (ONNX export, precision conversion; cached), then
    measures each cell in a fresh process, so its memory and timing are the cell's alone.
    Throughput: images/s = batch x completed queries / wall time of the measured window.
    Percentiles: numpy 'linear' (Hyndman-Fan type 7); median CI: distribution-free
    order-statistic 95% interval (binomial). Stop rule: min count AND min time, then until
    the median's CI half-width is <= --ci-target (default 2%), never past max time.
    Every row has a verdict: valid, or invalid_reason (noisy median, foreign CPU load,
    hypervisor steal, few samples for p99, unstable clock); raw samples go to FILE.samples.
    """
    if o["out"]:
        check_output(o["out"])  # before any work: a bad --out never costs a measurement
    opts = RunOptions.from_params(o)
    cfg = opts.grid()
    specs, _ = cfg.cells()
    check_inputs(cfg)
    if o["dry_run"]:
        for s in specs:
            click.echo(s.key())
        click.echo(f"{len(specs)} cell(s)")
    # A runtime missing here is the user's to fix: one line and exit 2 before anything runs
    # (after a dry run's listing, which then says that these cells cannot run here).
    for key in dict.fromkeys((s.engine, s.device, s.precision) for s in specs):
        check_runtime(*key)
    if o["dry_run"]:
        return
    if o["in_process"] and o["isolate"]:
        raise click.UsageError("--in-process and --isolate are opposites; give one")
    runner = CellRunner(isolated=not o["in_process"], timeout_s=cfg.timeout_s)
    out = Path(o["out"]) if o["out"] else None
    try:
        with record_into_store(o, kind="run", cfg=cfg, out=out) as record:
            say_random_weights(cfg.models, {s.model: s.weights_id for s in specs})
            if o["find_max_batch"]:
                rows = _max_batch_rows(specs, runner, out, o["max_batch_limit"], record)
            else:
                rows = run_cells(specs, runner, out=out, label="run", record=record)
    except ResultsWriteError as exc:  # measured but not written: print the rows all the same
        _print_rows(exc.rows, o["fmt"], "cnnbench run (not written)", o["columns"])
        raise
    _print_rows(rows, o["fmt"], "cnnbench run", o["columns"])
    if out is not None:
        click.echo(str(out))
    failed = [r for r in rows if r.get("error")]
    if failed:
        raise CheckFailedError(f"{len(failed)} of {len(rows)} cell(s) failed: {failed[0]['error']}")


#: a search trial only has to show that the batch runs: a short window, no CI target
_TRIAL_STOP = StopRule(
    warmup_count=2, warmup_time=0.0, min_count=5, min_time=0.2, max_time=5.0, ci_target=None
)


def _max_batch_rows(
    specs: list[CellSpec], runner: CellRunner, out: Path | None, limit: int, record: Record | None
) -> list[dict[str, Any]]:
    """For each (model, engine, precision, options) of ``specs``: search the largest batch that
    fits on the GPU with short trials, then measure that batch with the full stop rule; the
    row carries the search (max_batch, max_batch_first_oom, max_batch_trials)."""
    groups: dict[tuple[str, ...], CellSpec] = {}
    for s in specs:
        if not s.device.startswith("cuda"):
            raise InvalidInputError(
                "--find-max-batch searches GPU memory: give --device cuda or cuda:N"
            )
        if s.scenario == "server":
            raise InvalidInputError("--find-max-batch needs a fixed-load scenario, not server")
        groups.setdefault((s.model, s.engine, s.precision, s.variant()), s)
    rows: list[dict[str, Any]] = []
    for template in groups.values():
        note(f"max batch: {template.model} on {template.engine} {template.precision}")

        def trial(b: int, t: CellSpec = template) -> dict[str, Any]:
            return runner(replace(t, batch=b, stop=_TRIAL_STOP, repeat=0))

        found = find_max_batch(trial, start=template.batch, limit=limit)
        assert found.best is not None
        if found.hit_limit:
            warn(f"max batch: {found.best} (the --max-batch-limit) still fits; raise the limit")
        rows += run_cells(
            [replace(template, batch=found.best)], runner, out=out, label="run",
            extra_fields=found.fields(), record=record,
        )  # fmt: skip
    return rows


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False),
    default="results.csv",
    show_default=True,
    help="Results file (.csv or .jsonl); rows are appended as cells finish.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue an existing results file: skip finished cells, retry failed ones.",
)
@click.option("--dry-run", is_flag=True, help="List the cells and exit.")
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: one cell after another here; ray: each cell a Ray task (pip install "
    "'cnnbench[ray]'), one timed cell per node or GPU at a time.",
)
@click.option(
    "--ray-address",
    default=None,
    metavar="auto|HOST:PORT|ray://HOST:PORT",
    help="An existing Ray cluster (default: a local one, started and stopped by the sweep).",
)
@record_options
@format_option()
@columns_option
def sweep(config: str, out: str, resume: bool, dry_run: bool, fmt: str, columns: str | None, **o: Any) -> None:  # fmt: skip
    """Run a grid of models x engines x precisions x batches x scenarios from CONFIG.yaml.

    \b
    Each cell runs in its own process: a crash, out-of-memory kill or timeout becomes a row
    with its error, and the sweep goes on. Rows are appended (one fsynced write each), so
    Ctrl-C keeps every finished row; --resume skips them next time. Rows are also recorded
    in the results store (--db; --no-db: not); a resumed sweep goes on in the same run.
    --executor ray spreads the cells over a Ray cluster (the same cells, rows and files).
    """
    check_output(out)
    cfg = load_config(config)
    check_inputs(cfg)
    if dry_run:
        specs, skipped = cfg.cells()
        todo, done = pending_cells(specs, Path(out), resume) if Path(out).exists() else (specs, 0)
        for s in todo:
            click.echo(s.key())
        click.echo(
            f"{len(todo)} cell(s) to run, {done} done, {len(skipped)} skipped (single-stream runs batch 1 only)"
        )
        return
    check_fresh(Path(out), resume)  # before a run is opened in the store
    resumed = resume_run_id(Path(out)) if resume else None
    try:
        with record_into_store(o, kind="sweep", cfg=cfg, out=Path(out), resume_run=resumed) as rec:
            say_random_weights(cfg.models, {s.model: s.weights_id for s in cfg.cells()[0]})
            if o["executor"] == "ray":
                rows = run_sweep_on_ray(
                    cfg, Path(out), resume=resume, record=rec, address=o["ray_address"]
                )
            else:
                rows = run_sweep(cfg, Path(out), resume=resume, record=rec)
    except ResultsWriteError as exc:
        _print_rows(exc.rows, fmt, f"cnnbench sweep {config} (not written)", columns)
        raise
    if rows:
        _print_rows(rows, fmt, f"cnnbench sweep {config}", columns)
    click.echo(str(Path(out)))
    failed = [r for r in rows if r.get("error")]
    if failed:
        raise CheckFailedError(
            f"{len(failed)} of {len(rows)} cell(s) failed; see the error column of {out}"
        )
