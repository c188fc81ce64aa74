"""The options ``run``, ``sweep`` and ``layers`` share (the stop rule, the server scenario, table
columns, the INT8 recipe, the store), and the checks of their inputs before any cell runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cnnbench.bench.run.sweep_config import SweepConfig
from cnnbench.cli.common import quantizer_option
from cnnbench.export.calibration import calibration_set
from cnnbench.models import check_weights, get_spec
from cnnbench.precision import CALIB_METHODS, Int8Recipe, Precision

#: the INT8 recipe's fields, as ``run`` passes them on (cnnbench.precision.Int8Recipe)
INT8_FIELDS = ("quantizer", "calib_data", "calib_method", "calib_samples")

#: the stop rule's and the server config's fields, as ``run`` passes them on
STOP_FIELDS = ("warmup_count", "warmup_time", "min_count", "min_time", "max_time", "ci_target")
SERVER_FIELDS = ("target_qps", "max_queue_delay_ms", "latency_bound_ms", "find_peak", "peak_time")


def options(*opts: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def wrap(f: Any) -> Any:
        for opt in reversed(opts):
            f = opt(f)
        return f

    return wrap


stop_options = options(
    click.option("--warmup-count", type=int, default=None, help="Warm-up calls (default 5)."),
    click.option(
        "--warmup-time",
        type=float,
        default=None,
        help="Warm-up seconds (default 0.2); both are met.",
    ),
    click.option(
        "--min-count",
        type=int,
        default=None,
        help="Minimum timed queries (default 100: what p99 needs).",
    ),
    click.option(
        "--min-time", type=float, default=None, help="Minimum measured seconds (default 2)."
    ),
    click.option(
        "--max-time", type=float, default=None, help="Maximum measured seconds (default 60)."
    ),
    click.option(
        "--ci-target",
        type=float,
        default=None,
        help="Run until the median's 95% CI half-width is <= this percent (default 2); the row is invalid if max time comes first.",
    ),
)

server_options = options(
    click.option(
        "--target-qps", type=float, default=None, help="Server: Poisson arrival rate (queries/s)."
    ),
    click.option(
        "--max-queue-delay-ms",
        type=float,
        default=2.0,
        show_default=True,
        help="Server: dynamic batcher's max wait.",
    ),
    click.option(
        "--latency-bound-ms",
        type=float,
        default=None,
        help="Server: p99 bound (required with --find-peak).",
    ),
    click.option(
        "--find-peak",
        is_flag=True,
        help="Server: search the highest QPS whose p99 meets the bound.",
    ),
    click.option(
        "--peak-time",
        type=float,
        default=60.0,
        show_default=True,
        help="Server: time budget of --find-peak (s).",
    ),
)


columns_option = click.option(
    "--columns",
    default=None,
    help="Table columns, comma-separated result columns (default: the usual figures).",
)

int8_options = options(
    quantizer_option,
    click.option(
        "--calib-data",
        default=None,
        help="INT8 calibration: an image folder, a .npy array of preprocessed inputs "
        "(N,C,H,W), 'digits' or 'random'. An INT8 file made from the same data is reused.",
    ),
    click.option(
        "--calib-method",
        type=click.Choice(CALIB_METHODS),
        default=None,
        help="INT8 calibration method (default entropy).",
    ),  # fmt: skip
    click.option(
        "--calib-samples",
        type=click.IntRange(min=1),
        default=None,
        help="INT8 calibration inputs used (default 256).",
    ),  # fmt: skip
)

#: where exported ONNX files are cached (run, layers)
artifacts_option = click.option(
    "--artifacts",
    type=click.Path(file_okay=False),
    default="artifacts",
    show_default=True,
    help="Where exported ONNX files are cached.",
)

#: ``--engine-opt KEY=VALUE``, repeatable (run, layers)
engine_opt_option = click.option(
    "--engine-opt",
    "engine_opts",
    multiple=True,
    metavar="KEY=VALUE",
    help="An engine option (repeatable; ENGINE.KEY=VALUE for one engine of several); "
    "see `cnnbench engines --options`. Part of the cell's identity in compare.",
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


def int8_recipe(o: dict[str, Any]) -> Int8Recipe:
    given = {k: o[k] for k in INT8_FIELDS if o.get(k) is not None}
    if given and Precision.INT8 not in o["precisions"]:
        flags = "/".join("--" + k.replace("_", "-") for k in given)
        raise click.UsageError(f"{flags}: for INT8 only; add --precision int8")
    if given.get("calib_data") not in (None, "digits", "random"):
        given["calib_data"] = str(Path(given["calib_data"]).absolute())  # cells run elsewhere
    return Int8Recipe(**given)


def check_inputs(cfg: SweepConfig) -> None:
    """Inputs that would fail every cell fail here, once, before the first: the weights, and
    INT8 calibration data given as a path (its images or array are read and checked)."""
    for model, path in cfg.weights.items():
        check_weights(model, path)
    data = cfg.int8.calib_data
    if Precision.INT8 in cfg.precisions and data not in (None, "digits", "random"):
        for model in cfg.models:
            calibration_set(get_spec(model), data, samples=cfg.int8.calib_samples)
