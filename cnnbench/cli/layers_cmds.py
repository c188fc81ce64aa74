"""Command: layers (what really ran, per layer, in which precision, as the runtime says)."""

from __future__ import annotations

from typing import Any

import click

from cnnbench.batch import BatchRange
from cnnbench.bench.measure.layer_report import SOURCES
from cnnbench.bench.measure.layer_report import report as layer_report
from cnnbench.bench.measure.layer_report import summary_text as layers_summary_text
from cnnbench.cli.common import cli, emit_csv, emit_json, emit_table, format_option
from cnnbench.cli.flags import (
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
from cnnbench.cli.targets import engine_and_artifact
from cnnbench.errors import InvalidInputError

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
    engine = o["engines"]
    if engine not in SOURCES:
        raise InvalidInputError(
            f"engine {engine} does not report the layers it ran; use --engine {', '.join(SOURCES)}"
        )
    eng, art, _ = engine_and_artifact(o, engine)
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
