"""Command: layers (what really ran, per layer, in which precision, as the runtime says)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cnnbench.batch import BatchRange
from cnnbench.bench.measure.layer_report import SOURCES, file_artifact
from cnnbench.bench.measure.layer_report import report as layer_report
from cnnbench.bench.measure.layer_report import summary_text as layers_summary_text
from cnnbench.bench.run.cell import check_runtime, make_engine
from cnnbench.bench.run.prepare import prepare
from cnnbench.cli.common import cli, emit_csv, emit_json, emit_table, format_option
from cnnbench.cli.flags import (
    INT8_FIELDS,
    artifacts_option,
    device_option,
    engine_opt_option,
    engine_option,
    int8_options,
    precision_option,
    seed_option,
    threads_option,
    weights_option,
)
from cnnbench.cli.run_options import RunOptions, check_inputs
from cnnbench.engines import get_engine_class
from cnnbench.engines.base import EngineOptions
from cnnbench.errors import InvalidInputError
from cnnbench.footprint import check_fits

_LAYER_COLUMNS = ("name", "kind", "precision", "kernel", "mmacs", "nodes")


@cli.command("layers")
@click.argument("target", metavar="MODEL|FILE.onnx")
@engine_option(
    "openvino", many=False,
    help="openvino (ov), onnxruntime (ort) or tensorrt (trt): the runtime that says what ran.",
)  # fmt: skip
@precision_option(
    None, many=False,
    help="MODEL: which file to load (default fp32). FILE: the precision it holds, when its "
    "graph says otherwise.",
)  # fmt: skip
@device_option
@threads_option
@weights_option
@artifacts_option
@int8_options
@engine_opt_option
@click.option("--all", "show_all", is_flag=True, help="Every layer, not only those doing MACs.")
@seed_option
@format_option()
def layers_cmd(**o: Any) -> None:
    """What really ran, per layer, in which precision, as the runtime reports it.

    \b
    OpenVINO: the compiled model's runtime graph (runtimePrecision, primitive per node).
    ONNX Runtime: its profiler's kernel per node (a profiled session of the same file).
    TensorRT: the engine inspector's layer information (formats and tactic per layer).
    The summary gives the share of MACs that ran in INT8, FP16, BF16 and FP32, with MACs
    counted on the ONNX graph; each cell's row records the same shares.
    """
    target = Path(o["target"])
    engine = o["engines"]
    if engine not in SOURCES:
        raise InvalidInputError(
            f"engine {engine} does not report the layers it ran; use --engine {', '.join(SOURCES)}"
        )
    if target.suffix.lower() == ".onnx":
        given = {k: o[k] for k in INT8_FIELDS if o.get(k) is not None}
        if given or o["weights"]:
            raise click.UsageError("--weights and the INT8 recipe are for a MODEL, not a file")
        art = file_artifact(target, o["precisions"])
        check_fits(str(target), art.input_shape, {"measurement": 1})
        opts = RunOptions.from_params({**o, "model": None})
        device = opts.device_of(engine)
        extra = opts.engine_options.get(engine, {})
        eng = get_engine_class(engine)(EngineOptions(device, opts.threads, extra))
        check_runtime(engine, device, art.precision)
    else:
        opts = RunOptions.from_params({**o, "model": o["target"]})
        cfg = opts.grid()
        check_inputs(cfg)
        spec = cfg.cells()[0][0]
        check_runtime(spec.engine, spec.device, spec.precision)  # before any export
        art = prepare(spec).artifact
        eng = make_engine(spec)
    with eng:
        eng.load(art, BatchRange.fixed(1))
        rep = layer_report(eng)
    assert rep is not None  # every engine in SOURCES reports its layers
    if o["fmt"] == "json":
        emit_json(rep.to_dict())
        return
    shown = [
        {
            **layer.to_dict(),
            "mmacs": round(layer.macs / 1e6, 2) if layer.macs else None,
            "nodes": ", ".join(layer.nodes[:3]) + (" …" if len(layer.nodes) > 3 else ""),
        }
        for layer in rep.layers
        if o["show_all"] or layer.macs
    ]
    if o["fmt"] == "csv":
        emit_csv(shown, _LAYER_COLUMNS)
        return
    title = f"{rep.engine} {rep.engine_version}: {rep.onnx_path} ({rep.artifact_precision})"
    emit_table(shown, _LAYER_COLUMNS, title=title, labels={"mmacs": "MMACs"})
    click.echo(layers_summary_text(rep))
