"""Command: profile (where the time goes, per layer, on any engine; and two profiles compared)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import numpy as np

from cnnbench import limits
from cnnbench.batch import BatchRange
from cnnbench.bench.measure.profile import measure_p50, profile_engine, read_profile
from cnnbench.bench.measure.profile_diff import diff
from cnnbench.bench.measure.profile_text import headline, summary_lines
from cnnbench.bench.results.files import check_output
from cnnbench.bench.run.prepare import prepare
from cnnbench.cli.common import cli, emit_csv, emit_json, emit_table, format_option
from cnnbench.cli.flags import (
    artifacts_option,
    batch_option,
    bounded,
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
from cnnbench.precision import Precision

#: the engines with a per-layer profiler (Engine.profile_layers)
PROFILED = ("openvino", "onnxruntime", "tensorrt", "torch")
_COLUMNS = ("name", "type", "precision", "kernel", "time_ms", "pct", "mmacs", "gmacs_per_s",
            "intensity", "kb", "added", "nodes")  # fmt: skip
_LABELS = {"time_ms": "ms", "pct": "%", "mmacs": "MMACs", "gmacs_per_s": "GMAC/s",
           "intensity": "MAC/B", "kb": "KB moved", "added": "added"}  # fmt: skip
_DIFF_COLUMNS = ("group", "type", "precision_a", "precision_b", "time_ms_a", "time_ms_b",
                 "ratio", "delta_ms")  # fmt: skip


@cli.command("profile")
@click.argument("target", metavar="MODEL|FILE.onnx", required=False)
@engine_option(
    "openvino", many=False,
    help="openvino (ov), onnxruntime (ort), tensorrt (trt) or torch: the runtime profiled.",
)  # fmt: skip
@precision_option(
    None, many=False,
    help="MODEL: which file to load (default fp32). FILE: the precision it holds, when its "
    "graph says otherwise.",
)  # fmt: skip
@batch_option("1", many=False, help="Batch size profiled (default 1).")
@device_option
@threads_option
@weights_option
@artifacts_option
@int8_options
@engine_opt_option
@seed_option
@click.option("--queries", type=bounded(limits.QUERIES), default=30, show_default=True,
              help="Profiled queries (after warm-up); each layer's time is its median.")  # fmt: skip
@click.option("--top", type=bounded(limits.SHOWN_LAYERS), default=20, show_default=True,
              help="Table: the layers taking most time (0: every layer, in order).")  # fmt: skip
@click.option("--diff", nargs=2, type=click.Path(), default=None, metavar="A.json B.json",
              help="Compare two profiles (written with -o, or by run --profile).")  # fmt: skip
@click.option("-o", "--out", type=click.Path(), default=None, help="Write the profile JSON here.")
@format_option()
def profile_cmd(**o: Any) -> None:
    """Where the time goes: each layer's time per query on ENGINE, aligned to the ONNX nodes.

    \b
    Per layer: the ONNX nodes it covers, its type, executed precision and kernel, its median
    time over --queries profiled queries and share, its MACs, the bytes it moves (weights,
    inputs, outputs at the executed precision), its GMAC/s and arithmetic intensity (MACs per
    byte). Layers the runtime added (reorders, reformats, casts, Q/DQ that did not fuse) are
    marked as conversion overhead. The sum of the layers is printed beside the cell's p50,
    measured first on the unprofiled session; a gap over 15% is flagged.
    Sources: OpenVINO's performance counters, ONNX Runtime's profiler, TensorRT's IProfiler,
    torch module hooks. --format json is a stable contract (docs/measuring.md).
    --diff A.json B.json compares two profiles node by node and says why one is slower.
    """
    if o["diff"]:
        if o["target"]:
            raise click.UsageError("give MODEL|FILE or --diff A.json B.json, not both")
        _diff(o)
        return
    if not o["target"]:
        raise click.UsageError("give MODEL or FILE.onnx to profile, or --diff A.json B.json")
    if o["engines"] not in PROFILED:  # before any export
        raise InvalidInputError(
            f"engine {o['engines']} has no per-layer profiler; use --engine {', '.join(PROFILED)}"
        )
    if o["out"]:
        check_output(o["out"])
    prof = _profile_target(o)
    doc = prof.to_dict()
    if o["out"]:
        Path(o["out"]).write_text(json.dumps(doc, indent=1) + "\n", "utf-8")
    if o["fmt"] == "json":
        emit_json(doc)
    elif o["fmt"] == "csv":
        emit_csv(_table_rows(prof, 0), _COLUMNS)
    else:
        _print_profile(prof, o["top"])
    if o["out"]:
        click.echo(str(o["out"]), err=o["fmt"] != "table")


def _profile_target(o: dict[str, Any]) -> Any:
    """Load the target on its engine, measure its p50 there, then profile it."""
    eng, art, spec = engine_and_artifact(o, o["engines"])
    batch = int(o["batches"] or 1)
    onnx = art.onnx_path
    if onnx is None and spec is not None:  # torch: its modules line up with the FP32 file's nodes
        onnx = prepare(
            replace(spec, engine="onnxruntime", precision=Precision.FP32)
        ).artifact.onnx_path
    x = np.random.default_rng(o["seed"]).random((batch, *art.input_shape), dtype=np.float32)
    with eng:
        eng.load(art, BatchRange.fixed(batch))
        p50 = measure_p50(eng, x)
        return profile_engine(eng, x, queries=o["queries"], p50_ms=p50, model=art.model, onnx=onnx)


def _table_rows(prof: Any, top: int) -> list[dict[str, Any]]:
    layers = prof.layers
    if top:
        layers = sorted(layers, key=lambda layer: -layer.time_ms)[:top]
    return [
        {
            "name": layer.name,
            "type": layer.type,
            "precision": layer.precision,
            "kernel": layer.kernel,
            "time_ms": round(layer.time_ms, 4),
            "pct": round(100 * layer.share, 1),
            "mmacs": round(layer.macs / 1e6, 2) if layer.macs else None,
            "gmacs_per_s": layer.gmacs_per_s,
            "intensity": layer.intensity,
            "kb": round(layer.bytes["total"] / 1e3, 1),
            "added": "yes" if layer.conversion else "",
            "nodes": ", ".join(layer.nodes[:2]) + (" …" if len(layer.nodes) > 2 else ""),
        }
        for layer in layers
    ]


def _print_profile(prof: Any, top: int) -> None:
    shown = len(prof.layers) if not top else min(top, len(prof.layers))
    title = (
        f"{prof.model} {prof.precision} on {prof.engine} {prof.engine_version} "
        f"({prof.device}, batch {prof.batch}): {shown} of {len(prof.layers)} layers"
        + (" by time" if top else "")
    )
    emit_table(_table_rows(prof, top), _COLUMNS, title=title, labels=_LABELS)
    for line in (headline(prof), *summary_lines(prof)):
        click.echo(line)


def _diff(o: dict[str, Any]) -> None:
    a, b = (read_profile(Path(p)) for p in o["diff"])
    if a.model and b.model and a.model != b.model:
        raise InvalidInputError(
            f"{o['diff'][0]} profiles {a.model} and {o['diff'][1]} {b.model}; compare two "
            "cells of one model"
        )
    d = diff(a, b, top=o["top"] or 10)
    if o["fmt"] == "json":
        emit_json(d)
        return
    rows = d["top"] if o["fmt"] == "table" else d["rows"]
    if o["fmt"] == "csv":
        emit_csv(rows, _DIFF_COLUMNS)
        return
    la, lb = d["a"]["label"], d["b"]["label"]
    emit_table(
        rows, _DIFF_COLUMNS,
        title=f"{lb} against {la}: the node groups that explain most of the difference",
        labels={"precision_a": f"{la} prec", "precision_b": f"{lb} prec",
                "time_ms_a": f"{la} ms", "time_ms_b": f"{lb} ms", "delta_ms": "Δ ms"},
    )  # fmt: skip
    click.echo(d["summary"])
