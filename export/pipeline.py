"""The FP32 export pipeline: export -> check -> simplify -> parity gate -> publish + manifest.

``export_fp32`` always exports; ``ensure_fp32`` reuses ``DIR/<model>/fp32`` when its manifest
matches the request and the file's sha256 matches the manifest. Every file is written in a
staging folder and renamed into place only after the gate passed, so a failure (or Ctrl-C)
leaves the folder as it was: either the previous verified artifact or nothing.

A user's ONNX file is imported instead (:mod:`export.onnx_import`); the artifact's folder and
its publication are :mod:`export.fp32_artifact`'s, shared by both.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from cnnbench.artifacts import DEFAULT_ARTIFACTS, new_dir, probe_writable
from cnnbench.batch import BatchRange
from cnnbench.errors import ArtifactError, CnnbenchError
from cnnbench.export import graph
from cnnbench.export.fp32_artifact import (
    DEFAULT_DYNAMIC_BATCH,
    artifact_dir,
    gate_inputs,
    publish_fp32,
)
from cnnbench.export.gate import GateInputs, gate, parity_record
from cnnbench.export.manifest import (
    MANIFEST_NAME,
    ONNX_NAME,
    ExportResult,
    library_versions,
    read_manifest,
    verify_artifact,
    weights_id,
    write_manifest,
)
from cnnbench.export.onnx_export import Exported, export_module, resolve_opset
from cnnbench.export.onnx_import import import_onnx
from cnnbench.export.parity import FP32_GATE, ParityReport, Tolerances
from cnnbench.export.verify import verify_onnx  # noqa: E402  (re-exported: the stage's public API)
from cnnbench.models import get_model, get_spec, user_model
from cnnbench.models.spec import ModelSpec
from cnnbench.precision import Precision
from cnnbench.progress import StepHistory, Steps, note

__all__ = [
    "ExportResult",
    "ensure_fp32",
    "export_fp32",
    "verify_onnx",
]

#: versions that, when changed, invalidate a cached artifact
_CACHE_VERSIONS = ("cnnbench", "torch", "onnx", "onnxscript", "onnxslim")


def _weights_id(model: str, weights: str | Path | None, seed: int) -> str:
    """What the FP32 file was made from: weights (or seed), and for a user model its source."""
    um = user_model(model)
    if um is None:
        return weights_id(weights, seed)
    if um.kind == "onnx":
        return um.weights_id  # the file's sha256: an edited file is imported again
    return f"{um.weights_id}|{weights_id(weights, seed)}"


def _batch_spec(batch: BatchRange | None, dynamic: bool | None) -> tuple[BatchRange, bool]:
    if batch is None:
        return DEFAULT_DYNAMIC_BATCH, True
    return batch, (batch.min != batch.max) if dynamic is None else dynamic


def _export_steps(model: str, opset: int, module: Any, check: bool) -> Steps:
    """The export's steps, recorded in the step history sized by the model's parameter count."""
    params = sum(int(p.numel()) for p in module.parameters())
    return Steps(
        f"export {model}",
        plan=["export", "check", "simplify", *(["parity"] if check else [])],
        history=StepHistory("export", f"{model} opset{opset}", size=params),
    )


def _check_in_memory(
    exported: Exported, meta: dict[str, str], steps: Steps
) -> tuple[Any, list[str], bool]:
    """The exported proto made deterministic (``meta`` in its metadata), checked, shape-inferred
    and simplified; one over 2 GiB is only made deterministic (it is checked once saved, and
    not simplified). Returns the proto, the exporter's notes and whether it is that large."""
    proto, notes = exported.proto, list(exported.notes)
    large = graph.needs_external_data(proto)
    if large:
        # protobuf cannot serialise > 2 GiB in one message: check the saved file instead
        notes.append("over 2 GiB: external data, checked from file, onnxslim skipped")
        graph.make_deterministic(proto, meta)
        steps.skip("simplify")
    else:
        with steps.step("check"):
            graph.make_deterministic(proto, meta)
            graph.check(proto)
            proto = graph.infer_shapes(proto)
        with steps.step("simplify"):
            proto = graph.simplify(proto)
            graph.make_deterministic(proto, meta)
            graph.check(proto, what="simplified model")
    return proto, notes, large


def export_fp32(
    model: str,
    *,
    weights: str | Path | None = None,
    out_dir: str | Path = DEFAULT_ARTIFACTS,
    opset: int | None = None,
    batch: BatchRange | None = None,
    dynamic: bool | None = None,
    check: bool = True,
    data_dir: str | Path | None = None,
    seed: int = 0,
    samples: int = 3,
    parity_batch: int | None = None,
    tolerances: Tolerances = FP32_GATE,
    weights_source: str | None = None,
) -> ExportResult:
    """Export ``model`` to ``out_dir/<model>/fp32/model.onnx`` with its manifest.

    Args:
        model: zoo name.
        weights: state dict to load strictly; None means seeded init (``seed``).
        out_dir: artifact root.
        opset: ONNX opset (None: the exporter's native 18).
        batch: batch range; None means a dynamic batch axis recorded as 1:8:64. A range with
            min == max gives a fixed-batch file unless ``dynamic`` says otherwise.
        dynamic: force a dynamic (True) or fixed (False) batch axis.
        check: run the parity gate (ONNX Runtime vs PyTorch eager).
        data_dir: real images for the gate instead of seeded random ones.
        seed: weight-init seed (without weights) and the gate's input seed.
        samples: number of batches the gate compares.
        parity_batch: batch size of the gate's inputs (default 2; a fixed file uses its batch).
        tolerances: the gate's bounds.
        weights_source: where the weights came from (``torchvision:NAME``, ``url:URL``, ...),
            recorded in the manifest beside their sha256.

    Raises:
        InvalidInputError: bad opset, unwritable ``out_dir``, bad data folder.
        ArtifactError: the exporter, checker or ONNX Runtime failed.
        ParityGateError: the gate failed (its table was printed on stderr).
    """
    spec = get_spec(model)
    um = user_model(model)
    if um is not None and um.kind == "onnx":
        return import_onnx(
            um, out_dir=out_dir, check=check, data_dir=data_dir, seed=seed, samples=samples,
            parity_batch=parity_batch, tolerances=tolerances, batch=batch,
        )  # fmt: skip
    opset = resolve_opset(opset)
    brange, dyn = _batch_spec(batch, dynamic)
    dest = _writable_dest(out_dir, model)
    wid = _weights_id(model, weights, seed)
    inputs = _checked_inputs(spec, check, samples, parity_batch, dyn, brange, seed, data_dir)
    module = get_model(model, weights=weights, seed=seed)

    steps = _export_steps(model, opset, module, check)
    with steps.step("export"):
        exported = export_module(module, spec.input_shape, opset=opset, batch=brange, dynamic=dyn)
    meta = {"cnnbench.model": model, "cnnbench.weights": wid, "cnnbench.precision": Precision.FP32}
    proto, notes, large = _check_in_memory(exported, meta, steps)

    with new_dir(dest), graph.staging_dir(dest) as stage:
        staged = stage / ONNX_NAME
        extra_files = graph.save(proto, staged)
        del proto
        if large:
            with steps.step("check"):
                graph.check(staged)
        report: ParityReport | None = None
        if check:
            with steps.step("parity"):
                report = gate(module, staged, spec, inputs, tolerances, what=f"{model} fp32")
        manifest = publish_fp32(
            stage, dest, extra_files, model=model, opset=opset, exporter=exported.exporter,
            spec=spec, batch=brange, dynamic=dyn, weights=wid,
            parity=parity_record(report, inputs) if report is not None else None,
            timings=steps.timings,
            extra={"exporter_notes": notes, "weights_source": weights_source or wid},
        )  # fmt: skip
    manifest_path = write_manifest(dest / MANIFEST_NAME, manifest)
    return ExportResult(dest / ONNX_NAME, manifest_path, manifest)


def _writable_dest(out_dir: str | Path, model: str) -> Path:
    """The model's FP32 folder (created only when there is a file to put in it), checked to be
    writable: an unwritable --out fails before the export."""
    dest = artifact_dir(out_dir, model)
    probe_writable(dest, what="artifacts")
    return dest


def _checked_inputs(spec: ModelSpec, check: bool, *args: Any) -> GateInputs:
    """The parity gate's inputs (``gate_inputs(*args)``); a bad data folder fails now, not
    after a minute of exporting."""
    inputs = gate_inputs(*args)
    if inputs.data_dir is not None and check:
        inputs.batches(spec)
    return inputs


def _opset_for(model: str, opset: int | None) -> int:
    um = user_model(model)
    if um is not None and um.kind == "onnx":  # a user's file has the opset it has
        return graph.opset_of(graph.load(um.source, load_external_data=False))
    return resolve_opset(opset)


def ensure_fp32(
    model: str,
    *,
    weights: str | Path | None = None,
    out_dir: str | Path = DEFAULT_ARTIFACTS,
    opset: int | None = None,
    batch: BatchRange | None = None,
    dynamic: bool | None = None,
    check: bool = True,
    data_dir: str | Path | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> ExportResult:
    """Reuse ``out_dir/<model>/fp32`` if it was made from the same request, else export.

    Reused when: the manifest reads and validates, its model, weights (sha256 or seed), opset,
    batch axis (dynamic, or the same fixed size) and cnnbench/torch/onnx versions match, it
    passed the gate (when ``check``), and the ONNX file's sha256 matches the manifest. A dynamic
    file serves any batch range, so only the manifest's recorded range is updated.
    """
    args = dict(weights=weights, out_dir=out_dir, opset=opset, batch=batch, dynamic=dynamic)
    brange, dyn = _batch_spec(batch, dynamic)
    um = user_model(model)
    if um is not None and um.kind == "onnx" and batch is None and dynamic is None:
        # a user's file keeps its own batch axis: a fixed one is what it is reused for
        dyn = um.dynamic_batch
        if um.fixed_batch is not None:
            brange = BatchRange.fixed(um.fixed_batch)
    reason = _reuse_problem(
        artifact_dir(out_dir, model),
        model=model,
        wid=_weights_id(model, weights, seed),
        opset=_opset_for(model, opset),
        batch=brange,
        dynamic=dyn,
        check=check,
    )
    if reason is None:
        onnx_path, manifest = verify_artifact(artifact_dir(out_dir, model))
        if dyn and manifest["batch"] != _batch_dict(brange):
            manifest = {**manifest, "batch": _batch_dict(brange)}
            with contextlib.suppress(CnnbenchError):  # a read-only cache is still usable
                write_manifest(onnx_path.with_name(MANIFEST_NAME), manifest)
        note(f"reusing verified {onnx_path} (sha256 {manifest['onnx']['sha256'][:12]})")
        return ExportResult(onnx_path, onnx_path.with_name(MANIFEST_NAME), manifest)
    note(f"exporting {model}: {reason}")
    return export_fp32(model, **args, check=check, data_dir=data_dir, seed=seed, **kwargs)  # type: ignore[arg-type]


def _batch_dict(b: BatchRange) -> dict[str, int]:
    return {"min": b.min, "opt": b.opt, "max": b.max}


def _reuse_problem(
    folder: Path,
    *,
    model: str,
    wid: str,
    opset: int,
    batch: BatchRange,
    dynamic: bool,
    check: bool,
) -> str | None:
    """Why the cached artifact in ``folder`` cannot be reused, or None if it can."""
    if not (folder / MANIFEST_NAME).is_file():
        return "no cached artifact"
    try:
        m = read_manifest(folder)
        verify_artifact(folder)
    except ArtifactError as exc:
        return f"cached artifact unusable ({exc})"
    have_dynamic = bool(m.get("dynamic_axes"))
    wants = {
        "model": (m.get("model"), model),
        "precision": (m.get("precision"), Precision.FP32),
        "weights": (m.get("weights"), wid),
        "opset": (m.get("opset"), opset),
        "batch axis": (have_dynamic, dynamic),
    }
    if not dynamic:
        wants["batch"] = (m.get("batch"), _batch_dict(batch))
    now = library_versions()
    for lib in _CACHE_VERSIONS:
        wants[f"{lib} version"] = ((m.get("versions") or {}).get(lib), now.get(lib))
    for what, (have, want) in wants.items():
        if have != want:
            return f"cached {what} differs ({have} != {want})"
    if check and not (m.get("parity") or {}).get("passed"):
        return "cached artifact was not parity-checked"
    return None
