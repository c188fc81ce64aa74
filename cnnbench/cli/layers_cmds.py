"""Command: layers (what really ran, per layer, in which precision, as the runtime says)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cnnbench.batch import BatchRange
from cnnbench.bench.measure.layer_report import SOURCES, file_artifact
from cnnbench.bench.measure.layer_report import report as layer_report
from cnnbench.bench.measure.layer_report import summary_text as layers_summary_text
from cnnbench.bench.run.cell import check_runtime
from cnnbench.bench.run.prepare import prepare
from cnnbench.bench.run.sweep_config import SweepConfig
from cnnbench.cli.bench_options import (
    INT8_FIELDS,
    artifacts_option,
    check_inputs,
    engine_opt_option,
    int8_options,
    int8_recipe,
)
from cnnbench.cli.common import (
    PrecisionType,
    cli,
    emit_csv,
    emit_json,
    emit_table,
    format_option,
    seed_option,
)
from cnnbench.engines import canonical, default_device, get_engine_class
from cnnbench.engines.base import EngineOptions
from cnnbench.engines.options import parse_assignments
from cnnbench.errors import InvalidInputError
from cnnbench.precision import Precision

_LAYER_COLUMNS = ("name", "kind", "precision", "kernel", "mmacs", "nodes")


@cli.command("layers")
@click.argument("target", metavar="MODEL|FILE.onnx")
@click.option(
    "--engine",
    "-e",
    default="openvino",
    show_default=True,
    help="openvino (ov), onnxruntime (ort) or tensorrt (trt): the runtime that says what ran.",
)
@click.option(
    "--precision",
    "-p",
    type=PrecisionType(),
    default=None,
    help="MODEL: which file to load (default fp32). FILE: the precision it holds, when its "
    "graph says otherwise.",
)
@click.option("--device", default=None, help="cpu, cuda or cuda:N (default as for run).")
@click.option("--threads", type=int, default=None, help="Intra-op threads for CPU engines.")
@click.option(
    "--weights", type=click.Path(dir_okay=False), default=None, help="MODEL's state dict."
)
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
    engine = canonical(o["engine"])
    if engine not in SOURCES:
        raise InvalidInputError(
            f"engine {engine} does not report the layers it ran; use --engine {', '.join(SOURCES)}"
        )
    if target.suffix.lower() == ".onnx":
        given = {k: o[k] for k in INT8_FIELDS if o.get(k) is not None}
        if given or o["weights"]:
            raise click.UsageError("--weights and the INT8 recipe are for a MODEL, not a file")
        art = file_artifact(target, o["precision"])
        schema = {engine: get_engine_class(engine).option_schema}
        extra = parse_assignments(o["engine_opts"], schema, canonical).get(engine, {})
        device = o["device"] or default_device(engine)
        try:
            eng = get_engine_class(engine)(EngineOptions(device, o["threads"], extra))
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from None
        check_runtime(engine, eng.device, art.precision)
    else:
        o["precisions"] = (o["precision"] or Precision.FP32,)
        cfg = SweepConfig.from_flags(
            models=(o["target"],), engines=(engine,), precisions=o["precisions"], batches=(1,),
            scenario="offline", stop={}, server={}, device=o["device"], threads=o["threads"],
            weights=o["weights"], artifacts=o["artifacts"], seed=o["seed"],
            int8=int8_recipe(o), engine_opts=o["engine_opts"],
        )  # fmt: skip
        check_inputs(cfg)
        spec = cfg.cells()[0][0]
        check_runtime(spec.engine, spec.device, spec.precision)  # before any export
        art = prepare(
            spec.model, spec.engine, spec.precision, weights=spec.weights,
            artifacts=Path(spec.artifacts), seed=spec.seed, int8=spec.int8,
        ).artifact  # fmt: skip
        eng = spec.make_engine()
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
