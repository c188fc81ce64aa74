"""A user's ONNX file brought in as the FP32 artifact (``DIR/<name>/fp32/model.onnx``) that every
engine and conversion starts from, gated on parity with the user's own file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnbench.artifacts import DEFAULT_ARTIFACTS, new_dir, probe_writable
from cnnbench.batch import BatchRange
from cnnbench.export import graph
from cnnbench.export.fp32_artifact import (
    DEFAULT_DYNAMIC_BATCH,
    artifact_dir,
    gate_inputs,
    publish_fp32,
)
from cnnbench.export.gate import OrtReference, gate, parity_record
from cnnbench.export.manifest import MANIFEST_NAME, ONNX_NAME, ExportResult, write_manifest
from cnnbench.export.onnx_export import INPUT_NAME, OUTPUT_NAME
from cnnbench.export.parity import FP32_GATE, ParityReport, Tolerances
from cnnbench.models.user import UserModel
from cnnbench.precision import Precision
from cnnbench.progress import StepHistory, Steps

#: the parity reference of an imported ONNX file: ONNX Runtime on the CPU, on the user's file
USER_ONNX_REFERENCE = "onnxruntime-cpu on the user's ONNX file (no PyTorch source)"


def import_onnx(
    um: UserModel,
    *,
    out_dir: str | Path = DEFAULT_ARTIFACTS,
    check: bool = True,
    data_dir: str | Path | None = None,
    seed: int = 0,
    samples: int = 3,
    parity_batch: int | None = None,
    tolerances: Tolerances = FP32_GATE,
    batch: BatchRange | None = None,
) -> ExportResult:
    """Bring a user's ONNX file in as ``out_dir/<name>/fp32/model.onnx``, the artifact every
    engine and conversion starts from: its input and output renamed to ours, checked, shapes
    inferred, made deterministic, and gated on parity with the user's file run by ONNX Runtime
    on the CPU (there is no PyTorch source; the manifest's parity ``reference`` says so)."""
    import onnx

    spec = um.spec()
    dest = artifact_dir(out_dir, um.name)
    probe_writable(dest, what="artifacts")
    src = Path(um.source)
    dyn = um.dynamic_batch
    proto = graph.load(src)
    brange = batch or (
        BatchRange.fixed(um.fixed_batch) if um.fixed_batch else DEFAULT_DYNAMIC_BATCH
    )
    steps = Steps(
        f"import {um.name}",
        plan=["check", *(["parity"] if check else [])],
        history=StepHistory("import", um.name, size=src.stat().st_size),
    )
    meta = {
        "cnnbench.model": um.name,
        "cnnbench.weights": um.weights_id,
        "cnnbench.precision": Precision.FP32,
    }
    with steps.step("check"):
        _rename_io(proto, um.input_name, proto.graph.output[0].name)
        graph.make_deterministic(proto, meta)
        graph.check(proto, what=f"ONNX file {src}")
        proto = graph.infer_shapes(proto)
    opset = graph.opset_of(proto)
    inputs = gate_inputs(samples, parity_batch, dyn, brange, seed, data_dir)
    with new_dir(dest), graph.staging_dir(dest) as stage:
        staged = stage / ONNX_NAME
        extra_files = graph.save(proto, staged)
        del proto
        report: ParityReport | None = None
        record = None
        if check:
            with steps.step("parity"):
                ref: Any = OrtReference(src)
                report = gate(ref, staged, spec, inputs, tolerances, what=f"{um.name} fp32")
            record = {**parity_record(report, inputs), "reference": USER_ONNX_REFERENCE}
        manifest = publish_fp32(
            stage, dest, extra_files, model=um.name, opset=opset,
            exporter=f"user ONNX file {src} (imported, I/O renamed), onnx {onnx.__version__}",
            spec=spec, batch=brange, dynamic=dyn, weights=um.weights_id, parity=record,
            timings=steps.timings, extra={"source": str(src), "source_sha256": um.sha256},
        )  # fmt: skip
    manifest_path = write_manifest(dest / MANIFEST_NAME, manifest)
    return ExportResult(dest / ONNX_NAME, manifest_path, manifest)


def _rename_io(proto: Any, old_in: str, old_out: str) -> None:
    """Call the graph's input ``input`` and its output ``logits``, as our exports do."""
    names = {old_in: INPUT_NAME, old_out: OUTPUT_NAME}
    g = proto.graph
    for vi in [*g.input, *g.output, *g.value_info]:
        vi.name = names.get(vi.name, vi.name)
    for node in g.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
