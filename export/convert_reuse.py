"""Which converted file a request maps to, and whether the one there can be reused: the request
key (FP32 sha256, precision, calibration data and method, quantizer, Q/DQ target, gates, library versions),
the folder the request's file lives in, and the reuse check of
:func:`export.convert.ensure_precision`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cnnbench.errors import ArtifactError
from cnnbench.export import int8, modelopt_run
from cnnbench.export.calibration import CalibrationSet
from cnnbench.export.manifest import MANIFEST_NAME, library_versions, read_manifest, verify_artifact
from cnnbench.export.parity import Tolerances
from cnnbench.precision import Precision

_KEY_VERSIONS = ("cnnbench", "onnx", "onnxruntime", "onnxconverter-common")


def artifact_folder(
    out_dir: str | Path, model: str, prec: Precision, key: str, label: str = ""
) -> Path:
    """Where the file of request ``key`` lives: ``<model>/<precision>/``, unless that folder
    holds a good file made from another request (other data, method, quantizer, Q/DQ target,
    FP16 converter...), which is never overwritten: then ``<model>/<precision>-<label>-<key[:10]>/``
    (``label``: what tells the file apart at a glance, e.g. its Q/DQ target; may be blank)."""
    base = Path(out_dir) / model / prec.onnx_dir
    if not prec.from_fp32:
        return base
    alt = base.with_name(f"{base.name}-{label + '-' if label else ''}{key[:10]}")
    for folder in (base, alt):
        if _made_from(folder) == key:
            return folder
    return base if _made_from(base) is None else alt


def _made_from(folder: Path) -> str | None:
    """The request key of the good file in ``folder``, or None (none there, or unusable)."""
    if not (folder / MANIFEST_NAME).is_file():
        return None
    try:
        manifest = read_manifest(folder)
        verify_artifact(folder)
    except ArtifactError:
        return None
    key = (manifest.get("extra") or {}).get("key")
    return str(key) if key else None


def request_key(
    fp32_sha256: str,
    precision: Precision,
    calib: CalibrationSet | None,
    calib_method: str,
    tolerances: Tolerances | None,
    max_accuracy_drop: float | None,
    made_by: str = "ort",
    qdq_target: str = "tensorrt",
) -> str:
    """What a converted file was made from; equal keys mean the file can be reused.
    ``made_by`` is the quantizer (INT8, FP8) or the FP16 converter; the FP16 default adds
    nothing to the key, so FP16 files made before AutoCast keep theirs."""
    versions = library_versions(("onnxconverter-common",))
    req: dict[str, Any] = {
        "fp32": fp32_sha256,
        "precision": precision,
        "versions": {k: versions.get(k) for k in _KEY_VERSIONS},
        "tolerances": (tolerances or precision.gate).to_dict(),
        "max_accuracy_drop": max_accuracy_drop,
    }
    if precision.calibrated:
        req["placement"] = int8.PLACEMENT_SCHEME
        req["quantizer"] = made_by
        if made_by == "modelopt":
            req["quantizer_version"] = modelopt_run.version()
        if precision == Precision.INT8:
            req["qdq_target"] = qdq_target
    if precision == Precision.FP16 and made_by == "autocast":
        req["fp16_converter"] = made_by
        req["converter_version"] = modelopt_run.version()
    if precision.calibrated and calib is not None:
        req["calibration"] = {
            "data": calib.sha256,
            "samples": calib.samples,
            "method": calib_method,
        }
    return hashlib.sha256(json.dumps(req, sort_keys=True).encode()).hexdigest()


def reuse_problem(folder: Path, key: str, check: bool) -> str | None:
    """Why the file in ``folder`` cannot be reused for request ``key``, or None if it can."""
    if not (folder / MANIFEST_NAME).is_file():
        return "no cached artifact"
    try:
        manifest = read_manifest(folder)
        verify_artifact(folder)
    except ArtifactError as exc:
        return f"cached artifact unusable ({exc})"
    if (manifest.get("extra") or {}).get("key") != key:
        return "cached artifact was made from a different request"
    if check and not (manifest.get("parity") or {}).get("passed"):
        return "cached artifact was not verified"
    return None
