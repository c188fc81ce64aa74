"""Commands: ``engines`` (what can run here) and ``build`` (a TensorRT engine, cached)."""

from __future__ import annotations

from pathlib import Path

import click

from cnnbench import limits
from cnnbench.batch import BatchRange
from cnnbench.cli.common import cli, emit_csv, emit_json, emit_table, format_option
from cnnbench.cli.flags import DeviceType, bounded, precision_option, weights_option
from cnnbench.engines import engine_names, get_engine_class, probe_all
from cnnbench.engines.tensorrt_engine import TensorRTEngine
from cnnbench.engines.trt_build import ensure_engine, require_trt
from cnnbench.engines.trt_cache import BuildOptions
from cnnbench.export.convert import ensure_precision
from cnnbench.models import get_spec
from cnnbench.precision import Precision

_COLUMNS = ("name", "available", "version", "devices", "precisions", "reason", "install")


_OPTION_COLUMNS = ("engine", "option", "values", "keyed", "help")


@cli.command("engines")
@click.option(
    "--options",
    "show_options",
    is_flag=True,
    help="List each engine's options (run --engine-opt KEY=VALUE, sweep engine_options:).",
)
@format_option()
def engines_cmd(show_options: bool, fmt: str) -> None:
    """List every engine: available here or not, version, devices, precisions.

    An unavailable engine shows why, and the extra that installs it
    (e.g. pip install 'cnnbench[openvino]'). With --options: every engine option, its values,
    and whether it is part of a cell's identity (keyed) in compare.
    """
    if show_options:
        opts = [
            {"engine": e, "option": o.name, "values": o.describe().partition("=")[2],
             "keyed": o.identity, "help": o.help}
            for e in engine_names() for o in get_engine_class(e).option_schema
        ]  # fmt: skip
        if fmt == "json":
            emit_json(opts)
        elif fmt == "csv":
            emit_csv(opts, _OPTION_COLUMNS)
        else:
            emit_table(opts, _OPTION_COLUMNS, title="engine options")
        return
    rows = [a.to_dict() for a in probe_all()]
    if fmt == "json":
        emit_json(rows)
        return
    flat = [
        {
            **r,
            "devices": ",".join(r["devices"]),  # type: ignore[arg-type]
            # per device where they differ (torch: fp32 on cpu, fp16/bf16 too on cuda)
            "precisions": _precisions_text(r["precisions_by_device"]),  # type: ignore[arg-type]
        }
        for r in rows
    ]
    if fmt == "csv":
        emit_csv(flat, _COLUMNS)
        return
    emit_table(flat, _COLUMNS, title="engines")


def _precisions_text(by_device: dict[str, list[str]]) -> str:
    lists = {",".join(ps) for ps in by_device.values()}
    if len(lists) <= 1:
        return next(iter(lists), "")
    return "; ".join(f"{d}: {','.join(ps)}" for d, ps in by_device.items())


def _batch_range(ctx: click.Context, param: click.Parameter, value: str) -> object:
    try:
        return BatchRange.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command("build")
@click.argument("model")
@precision_option(
    "fp16", many=False, choices=TensorRTEngine.precisions, what="TensorRT", dest="precision",
    help="Which verified ONNX file to build from (the network is strongly typed).",
)  # fmt: skip
@click.option(
    "--batch",
    "-b",
    "batches",
    default="1",
    show_default=True,
    callback=_batch_range,
    help="Optimisation profile: N (fixed, the profile `run -e trt -b N` uses, so run reuses "
    "the engine) or MIN:OPT:MAX (`run -s server -b N` uses 1:N:N).",
)
@click.option(
    "--workspace", type=bounded(limits.WORKSPACE_MB), default=None, help="Workspace limit, MB."
)
@click.option(
    "--opt-level", type=click.IntRange(0, 5), default=None, help="Builder optimisation level 0-5."
)
@click.option(
    "--device", type=DeviceType(), default="cuda", show_default=True,
    help="CUDA device: cuda or cuda:N.",
)  # fmt: skip
@click.option(
    "--out",
    "-o",
    type=click.Path(file_okay=False),
    default="artifacts",
    show_default=True,
    help="Where the ONNX files live (exported there when missing).",
)
@click.option("--rebuild", is_flag=True, help="Ignore a cached engine and build again.")
@weights_option
def build_cmd(
    model: str,
    precision: Precision,
    batches: object,
    workspace: int | None,
    opt_level: int | None,
    device: str,
    out: str,
    rebuild: bool,
    weights: str | None,
) -> None:
    """Build (or reuse from the cache) a TensorRT engine for MODEL; print the engine's path last.

    The ONNX file of the precision is exported and verified first if it is missing. Engines are
    cached by ONNX sha256, TensorRT version, GPU, profile and options.
    """
    get_spec(model)  # unknown names fail here, with suggestions
    if not device.startswith("cuda"):
        raise click.BadParameter("TensorRT runs on cuda or cuda:N", param_hint="--device")
    require_trt(device)  # one line and exit 2 before any export when TensorRT or a GPU is missing
    options = BuildOptions(precision, batches, workspace, opt_level)  # type: ignore[arg-type]
    onnx_path = Path(
        ensure_precision(model, precision, weights=weights, out_dir=Path(out)).onnx_path
    )
    entry = ensure_engine(onnx_path, options, device=device, rebuild=rebuild)
    click.echo(str(entry.path))
