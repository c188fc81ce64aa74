"""Commands: run (measure cells), sweep (a YAML grid, one process per cell), compare (CI gate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cnnbench.cli.app import cli, emit_csv, emit_json, emit_table, format_option, seed_option
from cnnbench.errors import CheckFailedError, InvalidInputError

TABLE_COLUMNS = (
    "model", "engine", "precision", "device", "batch", "scenario", "latency_ms_p50",
    "latency_ms_p90", "latency_ms_p99", "throughput_ips", "samples", "gmacs_per_s",
    "efficiency", "host_peak_rss_mb", "device_mem_peak_mb", "error",
)  # fmt: skip


def _names(text: str | None, what: str) -> list[str]:
    items = [t.strip() for t in (text or "").split(",")]
    if text is None or not all(items):
        raise InvalidInputError(f"--{what} needs a name or a comma-separated list, got {text!r}")
    return items


def _batches(text: str) -> list[int]:
    out = []
    for t in text.split(","):
        t = t.strip()
        try:
            n = int(t)
        except ValueError:
            raise InvalidInputError(
                f"--batch must be positive integers (N or N,M,...), got {text!r}"
            ) from None
        if n < 1:
            raise InvalidInputError(f"--batch must be >= 1, got {n}")
        out.append(n)
    return out


def _default_device(engine: str) -> str:
    """cpu, unless the engine runs only on a GPU (tensorrt): then cuda."""
    from cnnbench import engines

    devices = engines.get_engine_class(engine).devices
    return "cpu" if "cpu" in devices else "cuda"


def _print_rows(rows: list[dict[str, Any]], fmt: str, title: str) -> None:
    from cnnbench.bench.results import THROUGHPUT_DEFINITION, columns_for
    from cnnbench.bench.stats import CI_METHOD, PERCENTILE_METHOD

    if fmt == "json":
        emit_json(rows)
        return
    if fmt == "csv":
        emit_csv(rows, columns_for(rows))
        return
    emit_table(rows, [c for c in TABLE_COLUMNS if any(r.get(c) is not None for r in rows)], title)
    click.echo(f"throughput: {THROUGHPUT_DEFINITION}")
    click.echo(f"percentiles: {PERCENTILE_METHOD}; median CI: 95% {CI_METHOD}")
    click.echo("efficiency: achieved GMAC/s / measured matmul peak GMAC/s (same device, dtype)")


_OPTION_FIELDS = (
    "warmup_count", "warmup_time", "min_count", "min_time", "max_time", "ci_target",
    "target_qps", "max_queue_delay_ms", "latency_bound_ms", "find_peak", "peak_time",
)  # fmt: skip


def _as_options(exc: ValueError) -> InvalidInputError:
    """A config ValueError with its field names spelled as the CLI options."""
    msg = str(exc)
    for f in _OPTION_FIELDS:
        msg = msg.replace(f, "--" + f.replace("_", "-"))
    return InvalidInputError(msg)


def _stop_rule(**kw: Any) -> Any:
    from cnnbench.bench.timing import StopRule

    given = {k: v for k, v in kw.items() if v is not None}
    try:
        return StopRule(**given)
    except ValueError as exc:
        raise _as_options(exc) from None


@cli.command()
@click.option(
    "--model",
    "-m",
    default=None,
    help="Model(s), comma-separated. Default: the zoo's ImageNet models.",
)
@click.option(
    "--engine",
    "-e",
    default="onnxruntime",
    show_default=True,
    help="Engine(s): torch, onnxruntime (ort), openvino (ov), tensorrt (trt), null.",
)
@click.option(
    "--precision",
    "-p",
    default="fp32",
    show_default=True,
    help="fp32, fp16, bf16, int8 (comma-separated for several).",
)
@click.option(
    "--batch",
    "-b",
    default=None,
    help="Batch size(s) N[,N...]. Default: the scenario's (1; multi-stream and server 8).",
)
@click.option(
    "--scenario",
    "-s",
    default="offline",
    show_default=True,
    help="single-stream | multi-stream | offline | server (LoadGen).",
)
@click.option(
    "--device",
    default=None,
    help="cpu, cuda or cuda:N. Default: cpu, or cuda for GPU-only engines (tensorrt).",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(dir_okay=False),
    default=None,
    help="Append rows to FILE.csv or FILE.jsonl.",
)
@click.option("--warmup-count", type=int, default=None, help="Warm-up calls (default 5).")
@click.option(
    "--warmup-time", type=float, default=None, help="Warm-up seconds (default 0.2); both are met."
)
@click.option("--min-count", type=int, default=None, help="Minimum timed queries (default 20).")
@click.option("--min-time", type=float, default=None, help="Minimum measured seconds (default 2).")
@click.option("--max-time", type=float, default=None, help="Maximum measured seconds (default 60).")
@click.option(
    "--ci-target",
    type=float,
    default=None,
    help="Also run until the median's 95% CI half-width is <= this percent.",
)
@click.option("--threads", type=int, default=None, help="Intra-op threads for CPU engines.")
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    default=None,
    help="State dict for the (single) model.",
)
@click.option(
    "--artifacts",
    type=click.Path(file_okay=False),
    default="artifacts",
    show_default=True,
    help="Where exported ONNX files are cached.",
)
@click.option(
    "--target-qps", type=float, default=None, help="Server: Poisson arrival rate (queries/s)."
)
@click.option(
    "--max-queue-delay-ms",
    type=float,
    default=2.0,
    show_default=True,
    help="Server: dynamic batcher's max wait.",
)
@click.option(
    "--latency-bound-ms",
    type=float,
    default=None,
    help="Server: p99 bound (required with --find-peak).",
)
@click.option(
    "--find-peak", is_flag=True, help="Server: search the highest QPS whose p99 meets the bound."
)
@click.option(
    "--peak-time",
    type=float,
    default=60.0,
    show_default=True,
    help="Server: time budget of --find-peak (s).",
)
@click.option("--isolate", is_flag=True, help="Run each cell in its own process (as sweep does).")
@click.option("--dry-run", is_flag=True, help="List the cells and exit.")
@seed_option
@format_option()
def run(**o: Any) -> None:  # fmt: skip
    """Measure latency, throughput and memory of models on an engine.

    \b
    Builds what the engine needs first (ONNX export, precision conversion; cached).
    Throughput: images/s = batch x completed queries / wall time of the measured window.
    Percentiles: numpy 'linear' (Hyndman-Fan type 7); median CI: distribution-free
    order-statistic 95% interval (binomial). Stop rule: min count AND min time, optionally
    the CI target, never past max time.
    """
    from cnnbench.bench.results import append_row
    from cnnbench.bench.runner import RunSpec, check_runtime, run_cell_safe
    from cnnbench.bench.scenarios import SCENARIOS, canonical_scenario
    from cnnbench.bench.server import ServerConfig
    from cnnbench.models import list_models
    from cnnbench.progress import note

    models = (
        _names(o["model"], "model") if o["model"] is not None else list_models(imagenet_only=True)
    )
    engine_names = _names(o["engine"], "engine")
    precisions = _names(o["precision"], "precision")
    scenario = canonical_scenario(o["scenario"])
    batches = (
        _batches(o["batch"]) if o["batch"] is not None else [SCENARIOS[scenario].default_batch]
    )
    if o["weights"] and len(models) > 1:
        raise InvalidInputError("--weights applies to one model; give a single --model")
    if o["out"]:
        from cnnbench.bench.results import format_of

        format_of(o["out"])
    stop = _stop_rule(
        warmup_count=o["warmup_count"], warmup_time=o["warmup_time"], min_count=o["min_count"],
        min_time=o["min_time"], max_time=o["max_time"], ci_target=o["ci_target"],
    )  # fmt: skip
    server = None
    if scenario == "server":
        try:
            server = ServerConfig(
                max_batch=max(batches), target_qps=o["target_qps"],
                max_queue_delay_ms=o["max_queue_delay_ms"], latency_bound_ms=o["latency_bound_ms"],
                find_peak=o["find_peak"], peak_time=o["peak_time"], seed=o["seed"],
            )  # fmt: skip
        except ValueError as exc:
            raise _as_options(exc) from None
    specs = [
        RunSpec(
            model=m,
            engine=e,
            precision=p,
            batch=b,
            scenario=scenario,
            device=o["device"] or _default_device(e),
            threads=o["threads"],
            stop=stop,
            server=server,
            weights=o["weights"],
            artifacts=o["artifacts"],
            seed=o["seed"],
        )  # fmt: skip
        for m in models
        for e in engine_names
        for p in precisions
        for b in batches
    ]
    if o["dry_run"]:
        for s in specs:
            click.echo(s.key())
        click.echo(f"{len(specs)} cell(s)")
        return
    for key in dict.fromkeys((s.engine, s.device, s.precision) for s in specs):
        check_runtime(*key)
    rows = []
    for spec in specs:
        note(f"run: {spec.key()} ...")
        if o["isolate"]:
            from cnnbench.bench.sweep import run_isolated

            row = run_isolated(spec, timeout_s=max(600.0, stop.max_time * 4))
        else:
            row = run_cell_safe(spec)
        if o["out"]:
            append_row(o["out"], row)
        rows.append(row)
    _print_rows(rows, o["fmt"], "cnnbench run")
    if o["out"]:
        click.echo(str(Path(o["out"])))
    failed = [r for r in rows if r.get("error")]
    if failed:
        raise CheckFailedError(f"{len(failed)} of {len(rows)} cell(s) failed: {failed[0]['error']}")


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
@format_option()
def sweep(config: str, out: str, resume: bool, dry_run: bool, fmt: str) -> None:  # fmt: skip
    """Run a grid of models x engines x precisions x batches x scenarios from CONFIG.yaml.

    \b
    Each cell runs in its own process: a crash, out-of-memory kill or timeout becomes a row
    with its error, and the sweep goes on. Rows are appended (one fsynced write each), so
    Ctrl-C keeps every finished row; --resume skips them next time.
    """
    from cnnbench.bench.results import format_of
    from cnnbench.bench.sweep import load_config, pending_cells, run_sweep

    format_of(out)
    cfg = load_config(config)
    specs, skipped = cfg.cells()
    if dry_run:
        todo, done = pending_cells(specs, Path(out), resume) if Path(out).exists() else (specs, 0)
        for s in todo:
            click.echo(s.key())
        click.echo(
            f"{len(todo)} cell(s) to run, {done} done, {len(skipped)} skipped (single-stream runs batch 1 only)"
        )
        return
    rows = run_sweep(cfg, Path(out), resume=resume)
    if rows:
        _print_rows(rows, fmt, f"cnnbench sweep {config}")
    click.echo(str(Path(out)))
    failed = [r for r in rows if r.get("error")]
    if failed:
        raise CheckFailedError(
            f"{len(failed)} of {len(rows)} cell(s) failed; see the error column of {out}"
        )


@cli.command()
@click.argument("base", type=click.Path(dir_okay=False))
@click.argument("new", type=click.Path(dir_okay=False))
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
@format_option()
def compare(base: str, new: str, threshold: str, metrics: tuple[str, ...], out: str | None, fmt: str) -> None:  # fmt: skip
    """Compare two results files cell by cell; exit 1 on a regression beyond the threshold.

    \b
    Lower is better for latencies and memory; higher for throughput_ips, gmacs_per_s,
    efficiency. ratio = new / base. ci_overlap (latency_ms_p50): whether the two medians'
    95% CIs overlap, i.e. whether the change may be noise.
    """
    from cnnbench.bench.compare import DEFAULT_METRICS, compare_files, parse_threshold
    from cnnbench.bench.results import format_of, write_rows

    thr = parse_threshold(threshold)
    names = (
        tuple(m.strip() for ms in metrics for m in ms.split(",") if m.strip()) or DEFAULT_METRICS
    )
    if out:
        format_of(out)
    cmp = compare_files(base, new, metrics=names, threshold_pct=thr)
    if out:
        write_rows(out, cmp.rows)
    if fmt == "json":
        emit_json(cmp.rows)
    elif fmt == "csv":
        emit_csv(cmp.rows)
    else:
        cols = [
            "model",
            "engine",
            "precision",
            "batch",
            "scenario",
            "metric",
            "base",
            "new",
            "ratio",
            "change_pct",
            "status",
        ]
        if any("ci_overlap" in r for r in cmp.rows):
            cols.append("ci_overlap")
        emit_table(cmp.rows, cols, f"{base} -> {new} (threshold {thr:g}%)")
    for k in cmp.missing_in_new:
        click.echo(f"missing in new: {k}", err=True)
    for e in cmp.errors:
        click.echo(e, err=True)
    if out:
        click.echo(str(Path(out)))
    if cmp.regressions:
        cells = "; ".join(
            f"{r['model']}/{r['engine']}/{r['precision']}/b{r['batch']}/{r['scenario']} {r['metric']} {r['change_pct']:+.1f}%"
            for r in cmp.regressions
        )
        raise CheckFailedError(f"{len(cmp.regressions)} regression(s) beyond {thr:g}%: {cells}")
