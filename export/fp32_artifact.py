"""The FP32 artifact's folder, the inputs of its parity gate, and its publication: shared by the
export of a zoo model (:mod:`export.pipeline`) and the import of a user's ONNX file
(:mod:`export.onnx_import`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnbench.artifacts import sha256_file
from cnnbench.batch import BatchRange
from cnnbench.export import graph
from cnnbench.export.gate import GateInputs
from cnnbench.export.manifest import MANIFEST_NAME, ONNX_NAME, build_manifest
from cnnbench.export.onnx_export import INPUT_NAME, OUTPUT_NAME
from cnnbench.models.spec import ModelSpec
from cnnbench.precision import Precision

#: the batch range recorded for a dynamic export when none is given (the file serves any batch)
DEFAULT_DYNAMIC_BATCH = BatchRange(1, 8, 64)


def artifact_dir(out_dir: str | Path, model: str, precision: Precision = Precision.FP32) -> Path:
    """``out_dir/<model>/<precision>``: the folder of the precision's ONNX file."""
    return Path(out_dir) / model / precision.onnx_dir


def gate_inputs(
    samples: int,
    parity_batch: int | None,
    dynamic: bool,
    batch: BatchRange,
    seed: int,
    data_dir: str | Path | None,
) -> GateInputs:
    """The FP32 gate's inputs: batches of ``parity_batch`` (2) for a dynamic file, else of the
    file's fixed batch."""
    return GateInputs(
        samples=samples,
        batch=(parity_batch or 2) if dynamic else batch.opt,
        seed=seed,
        data_dir=Path(data_dir) if data_dir is not None else None,
    )


def publish_fp32(
    stage: Path,
    dest: Path,
    extra_files: list[str],
    *,
    model: str,
    opset: int,
    exporter: str,
    spec: ModelSpec,
    batch: BatchRange,
    dynamic: bool,
    weights: str,
    parity: dict[str, Any] | None,
    timings: dict[str, float],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The manifest of the FP32 file staged in ``stage`` (with its external data files and their
    sha256, added to ``extra``), then the files moved into ``dest``; returns the manifest, which
    the caller writes once the staging folder is gone."""
    staged = stage / ONNX_NAME
    external = {n: sha256_file(stage / n) for n in extra_files}
    manifest = build_manifest(
        model=model,
        precision=Precision.FP32,
        opset=opset,
        exporter=exporter,
        onnx_path=staged,
        input_shape=spec.input_shape,
        num_classes=spec.num_classes,
        batch=batch,
        dynamic=dynamic,
        weights=weights,
        parity=parity,
        timings=timings,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        external_data=list(external) or None,
        extra={**extra, "external_data_sha256": external},
    )
    # the old manifest goes first: a crash mid-publish leaves no manifest claiming new bytes
    (dest / MANIFEST_NAME).unlink(missing_ok=True)
    graph.publish(stage, dest, [ONNX_NAME, *extra_files])
    return manifest
