"""FP16 and INT8 files from a verified FP32 export, each verified against FP32 on ONNX Runtime.

``convert`` always converts; ``ensure_precision`` reuses ``DIR/<model>/<precision>`` when its
manifest records the same request (FP32 sha256, precision, calibration data hash, method,
samples, library versions) and the file's sha256 matches the manifest. Files are built in a
staging folder and published by rename only after verification, so a failure leaves the folder
as it was.

Verification runs the FP32 file and the candidate on ONNX Runtime (CPU) on the same inputs and
compares them with :mod:`export.parity` (FP16: ``FP16_GATE``; INT8: ``INT8_REPORT`` unless a
gate is given). With labelled data (digits) the top-1 of both and the drop in points are
recorded, and ``max_accuracy_drop`` (points) turns the drop into a gate.

The request key, the folder a request's file lives in and the reuse check are in
:mod:`export.convert_reuse`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnbench.artifacts import DEFAULT_ARTIFACTS, new_dir
from cnnbench.errors import InvalidInputError
from cnnbench.export import convert_check, graph, modelopt_run, quantize
from cnnbench.export.calibration import (
    METHODS,
    CalibrationSet,
    calibration_set,
)
from cnnbench.export.convert_reuse import artifact_folder, request_key, reuse_problem
from cnnbench.export.fp16 import convert_fp16, describe_fp16
from cnnbench.export.manifest import (
    MANIFEST_NAME,
    ONNX_NAME,
    ExportResult,
    build_manifest,
    verify_artifact,
    write_manifest,
)
from cnnbench.export.parity import Tolerances
from cnnbench.export.pipeline import ensure_fp32
from cnnbench.models import get_spec
from cnnbench.models.spec import ModelSpec
from cnnbench.naming import lookup
from cnnbench.precision import (
    DEFAULT_CALIB_SAMPLES,
    FP16_CONVERTERS,
    PRECISIONS,
    QDQ_TARGETS,
    QUANTIZERS,
    Precision,
    quantizer_for,
)
from cnnbench.progress import StepHistory, Steps, note

__all__ = ["CONVERTIBLE", "convert", "ensure_precision"]

#: the precisions converted from the FP32 export
CONVERTIBLE: tuple[Precision, ...] = tuple(p for p in PRECISIONS if p.from_fp32)


def _check_args(
    precision: Precision,
    calib_method: str,
    quantizer: str = "ort",
    fp16: str = "onnxconverter",
    target: str = "tensorrt",
) -> tuple[Precision, str, str]:
    """The precision and what makes it, checked: its quantizer (INT8; FP8: ModelOpt's alone)
    or its FP16 converter; and the runtime its Q/DQ is placed for (INT8: ``target``, which
    ModelOpt makes for TensorRT only; FP8: TensorRT's)."""
    lookup("calibration method", calib_method, {m: m for m in METHODS})
    lookup("quantizer", quantizer, {q: q for q in QUANTIZERS})
    lookup("FP16 converter", fp16, {c: c for c in FP16_CONVERTERS})
    lookup("Q/DQ target", target, {t: t for t in QDQ_TARGETS})
    if precision not in CONVERTIBLE:  # a Precision, parsed where it entered
        *rest, last = CONVERTIBLE
        raise InvalidInputError(
            f"conversion from FP32 makes {', '.join(rest)} or {last}, not {precision}"
        )
    if not precision.calibrated:
        return precision, fp16, ""
    quantizer = quantizer_for(precision, quantizer)
    if precision == Precision.FP8:
        target = "tensorrt"
    elif quantizer == "modelopt" and target != "tensorrt":
        raise InvalidInputError(
            f"--quantizer modelopt places Q/DQ for tensorrt only, not {target}; "
            "use --quantizer ort for --qdq-target onnxruntime or openvino"
        )
    if quantizer == "modelopt":
        modelopt_run.check_method(calib_method)
    return precision, quantizer, target


def convert(
    model: str,
    fp32: ExportResult,
    precision: Precision,
    *,
    out_dir: str | Path = DEFAULT_ARTIFACTS,
    calib_data: str | Path | None = None,
    calib_method: str = "entropy",
    calib_samples: int = DEFAULT_CALIB_SAMPLES,
    seed: int = 0,
    check: bool = True,
    tolerances: Tolerances | None = None,
    max_accuracy_drop: float | None = None,
    quantizer: str = "ort",
    qdq_target: str = "tensorrt",
    fp16_converter: str = "onnxconverter",
    _calib: CalibrationSet | None = None,
) -> ExportResult:
    """Make ``out_dir/<model>/<precision>/model.onnx`` (+ manifest) from the FP32 artifact.

    Args:
        model: zoo name (must match the FP32 manifest).
        fp32: the verified FP32 export (``export.pipeline.ensure_fp32``).
        precision: ``fp16``, ``int8`` or ``fp8`` (E4M3).
        out_dir: artifact root.
        calib_data: INT8 calibration source: an image folder, a .npy file, ``digits`` or
            ``random`` (default: digits for lenet5, random otherwise, with a warning).
        calib_method: ``entropy``, ``max`` (min-max) or ``percentile``.
        calib_samples: number of calibration inputs.
        seed: seed of random calibration and verification inputs.
        check: verify against FP32 on ONNX Runtime (and gate FP16).
        tolerances: parity bounds (default FP16_GATE for fp16, INT8_REPORT for int8).
        max_accuracy_drop: with labelled data, fail if top-1 drops by more points than this.
        quantizer: INT8 by ``ort`` (ONNX Runtime) or ``modelopt`` (NVIDIA ModelOpt); FP8 is
            always ModelOpt's.
        qdq_target: the runtime INT8's Q/DQ is placed for (``tensorrt``, ``onnxruntime``,
            ``openvino``; ModelOpt places for tensorrt only).
        fp16_converter: FP16 by ``onnxconverter`` (onnxconverter-common) or ``autocast``
            (NVIDIA ModelOpt's AutoCast); both keep FP32 inputs and outputs.

    Raises:
        UnknownNameError: unknown precision or calibration method.
        InvalidInputError: bad calibration data, or a model that does not match ``fp32``.
        ArtifactError: corrupt FP32 file, or a conversion ORT cannot load.
        CheckFailedError: the parity gate or the accuracy gate failed.
    """
    prec, made_by, target = _check_args(
        precision, calib_method, quantizer, fp16_converter, qdq_target
    )
    spec = get_spec(model)
    src, fp32_manifest, fp32_sha = _verified_fp32(model, fp32)
    calib = _calib or _calibration(spec, prec, calib_data, calib_samples, seed)
    tol = tolerances or prec.gate
    vset = convert_check.verification_set(spec, calib, seed=seed) if check else None
    key = request_key(fp32_sha, prec, calib, calib_method, tol, max_accuracy_drop, made_by, target)
    dest = artifact_folder(out_dir, model, prec, key, target if prec == Precision.INT8 else "")
    steps = _convert_steps(prec, model, made_by, calib_method, calib, src, check)
    extra: dict[str, Any] = {"key": key, "source": {"precision": "fp32", "sha256": fp32_sha,
                                                    "onnx": str(src)}}  # fmt: skip
    with new_dir(dest), graph.staging_dir(dest) as stage:
        staged = stage / ONNX_NAME
        made, exporter = _run_converter(
            prec, src, stage, calib, calib_method, fp32_sha, fp32_manifest, steps, (made_by, target)
        )  # fmt: skip
        extra.update(made)
        # The converters copy the FP32 file's metadata; the file must say what it now is.
        graph.set_metadata(staged, {"cnnbench.precision": prec})
        parity, extra["accuracy"] = _verify_against_fp32(
            src, staged, vset, tol, max_accuracy_drop, steps, what=f"{model} {prec}", basic=prec == Precision.FP8
        )  # fmt: skip
        manifest = _converted_manifest(
            model, prec, staged, spec, fp32, fp32_manifest, exporter, parity, steps, extra
        )
        (dest / MANIFEST_NAME).unlink(missing_ok=True)
        graph.publish(stage, dest, [ONNX_NAME])
    manifest_path = write_manifest(dest / MANIFEST_NAME, manifest)
    return ExportResult(dest / ONNX_NAME, manifest_path, manifest)


def _calibration(
    spec: ModelSpec, prec: Precision, data: str | Path | None, samples: int, seed: int
) -> CalibrationSet | None:
    """The calibration set of a calibrated precision (None for FP16)."""
    return calibration_set(spec, data, samples=samples, seed=seed) if prec.calibrated else None


def _verified_fp32(model: str, fp32: ExportResult) -> tuple[Path, dict[str, Any], str]:
    """The FP32 file of ``fp32``, checked to be ``model``'s and verified as it is on disk now:
    its path, its manifest and its sha256."""
    if fp32.manifest.get("model") != model or fp32.manifest.get("precision") != "fp32":
        raise InvalidInputError(
            f"{fp32.onnx_path} holds {fp32.manifest.get('model')} "
            f"{fp32.manifest.get('precision')}, not {model} fp32"
        )
    src, fp32_manifest = verify_artifact(fp32.onnx_path)  # corrupt or swapped files fail here
    graph.load(src, load_external_data=False)
    fp32_sha = str(fp32_manifest["onnx"]["sha256"])  # what is on disk now, verified
    return src, fp32_manifest, fp32_sha


def _convert_steps(
    prec: Precision,
    model: str,
    quantizer: str,
    calib_method: str,
    calib: CalibrationSet | None,
    src: Path,
    check: bool,
) -> Steps:
    """The conversion's steps (the quantizer's for INT8 and FP8, then verify), recorded in the
    step history under the request (``quantizer``: the FP16 converter for FP16) and sized by
    the FP32 file."""
    plan = ["convert"] if prec == Precision.FP16 else quantize.STEPS[quantizer]
    return Steps(
        f"{prec} {model}",
        plan=[*plan, *(["verify"] if check else [])],
        history=StepHistory(
            str(prec),
            f"{model} {quantizer} {calib_method} n{calib.samples}" if calib is not None else model,
            size=src.stat().st_size,
        ),
    )


def _run_converter(
    prec: Precision,
    src: Path,
    stage: Path,
    calib: CalibrationSet | None,
    calib_method: str,
    fp32_sha: str,
    fp32_manifest: dict[str, Any],
    steps: Steps,
    how: tuple[str, str],
) -> tuple[dict[str, Any], str]:
    """Convert ``src`` into ``stage``'s ONNX file: FP16 by the converter ``how`` names, or INT8 /
    FP8 by its quantizer, Q/DQ placed for its target. Returns what the manifest's ``extra``
    records of the conversion (the converter or quantizer, its version and its mode, the Q/DQ
    target), and the exporter's name."""
    quantizer, target = how
    staged = stage / ONNX_NAME
    if prec == "fp16":
        with steps.step("convert"):
            if quantizer == "autocast":
                record = {**modelopt_run.autocast(src, staged), "graph": describe_fp16(staged)}
            else:
                record = convert_fp16(src, staged)
        return {"converter": record}, f"{record['converter']} {record['converter_version']}"
    assert calib is not None
    record = quantize.quantized_file(
        src, staged, stage, calib, calib_method, fp32_sha, fp32_manifest, steps, quantizer, prec,
        target,
    )  # fmt: skip
    return record, f"{record['converter']['quantizer']} {record['converter']['quantizer_version']}"


def _verify_against_fp32(
    src: Path,
    staged: Path,
    vset: convert_check.VerificationSet | None,
    tol: Tolerances,
    max_accuracy_drop: float | None,
    steps: Steps,
    *,
    what: str,
    basic: bool = False,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Run the staged file and the FP32 file on the verification set and enforce the gates
    (``basic``: the candidate with ONNX Runtime's basic graph optimisations only); returns the
    manifest's parity record and the accuracy record (None, None: no verification set)."""
    if vset is None:
        return None, None
    with steps.step("verify"):
        report, acc = convert_check.verify(src, staged, vset, tol, basic=basic)
    parity = convert_check.parity_record(report, vset, basic=basic)
    convert_check.enforce(report, acc, max_accuracy_drop, what=what)
    return parity, acc


def _converted_manifest(
    model: str,
    prec: Precision,
    staged: Path,
    spec: ModelSpec,
    fp32: ExportResult,
    fp32_manifest: dict[str, Any],
    exporter: str,
    parity: dict[str, Any] | None,
    steps: Steps,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The manifest of the staged file: its batch axis, weights and I/O names are the FP32
    file's."""
    return build_manifest(
        model=model,
        precision=prec,
        opset=graph.opset_of(graph.load(staged, load_external_data=False)),
        exporter=exporter,
        onnx_path=staged,
        input_shape=spec.input_shape,
        num_classes=spec.num_classes,
        batch=fp32.batch,
        dynamic=bool(fp32_manifest.get("dynamic_axes")),
        weights=str(fp32_manifest["weights"]),
        parity=parity,
        timings=steps.timings,
        input_name=str(fp32_manifest["input"]["name"]),
        output_name=str(fp32_manifest["output"]["name"]),
        extra=extra,
    )


def ensure_precision(
    model: str,
    precision: Precision,
    *,
    weights: str | Path | None = None,
    out_dir: str | Path = DEFAULT_ARTIFACTS,
    calib_data: str | Path | None = None,
    calib_method: str = "entropy",
    calib_samples: int = DEFAULT_CALIB_SAMPLES,
    seed: int = 0,
    check: bool = True,
    tolerances: Tolerances | None = None,
    max_accuracy_drop: float | None = None,
    quantizer: str = "ort",
    qdq_target: str = "tensorrt",
    fp16_converter: str = "onnxconverter",
    **fp32_kwargs: Any,
) -> ExportResult:
    """Reuse the file made from the same request (see :func:`artifact_folder`), else build it.

    A converted file made from another request (other calibration data, method, sample count,
    quantizer, Q/DQ target or FP16 converter) is never overwritten: the new one goes beside it. ``fp32`` is accepted too (then
    this is ``ensure_fp32``). The FP32 file comes from ``ensure_fp32(model, weights=...,
    out_dir=..., seed=..., check=..., **fp32_kwargs)``.
    """
    if precision == "fp32":
        return ensure_fp32(
            model, weights=weights, out_dir=out_dir, seed=seed, check=check, **fp32_kwargs
        )
    prec, made_by, target = _check_args(
        precision, calib_method, quantizer, fp16_converter, qdq_target
    )
    calib = None
    if prec.calibrated:  # bad calibration data fails before any export
        calib = calibration_set(get_spec(model), calib_data, samples=calib_samples, seed=seed)
    fp32 = ensure_fp32(
        model, weights=weights, out_dir=out_dir, seed=seed, check=check, **fp32_kwargs
    )
    tol = tolerances or prec.gate
    key = request_key(
        fp32.sha256, prec, calib, calib_method, tol, max_accuracy_drop, made_by, target
    )
    folder = artifact_folder(out_dir, model, prec, key, target if prec == Precision.INT8 else "")
    reason = reuse_problem(folder, key, check)
    if reason is None:
        onnx_path, manifest = verify_artifact(folder)
        note(f"reusing verified {onnx_path} (sha256 {manifest['onnx']['sha256'][:12]})")
        return ExportResult(onnx_path, onnx_path.with_name(MANIFEST_NAME), manifest)
    base = Path(out_dir) / model / prec.onnx_dir
    if folder != base and reason == "no cached artifact":
        reason = f"{base} holds a {prec} file made otherwise (kept); this one goes to {folder}"
    note(f"converting {model} to {precision}: {reason}")
    return convert(
        model,
        fp32,
        precision,
        out_dir=out_dir,
        calib_data=calib_data,
        calib_method=calib_method,
        calib_samples=calib_samples,
        seed=seed,
        check=check,
        tolerances=tolerances,
        max_accuracy_drop=max_accuracy_drop,
        quantizer=quantizer,
        qdq_target=qdq_target,
        fp16_converter=fp16_converter,
        _calib=calib,
    )
