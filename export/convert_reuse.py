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
from cnnbench.export import int8, modelopt_int8
from cnnbench.export.calibration import CalibrationSet
from cnnbench.export.manifest import MANIFEST_NAME, library_versions, read_manifest, verify_artifact
from cnnbench.export.parity import Tolerances
from cnnbench.precision import Precision

_KEY_VERSIONS = ("cnnbench", "onnx", "onnxruntime", "onnxconverter-common")


def artifact_folder(
    out_dir: str | Path, model: str, prec: Precision, key: str, label: str = ""
) -> Path:
    """Where the file of request ``key`` lives: ``<model>/<precision>/``, unless that folder
    holds a good file made from another INT8 request (other data, method, quantizer...), which
    is never overwritten: then ``<model>/int8-<label>-<key[:10]>/`` (``label``: what tells the
    file apart at a glance, e.g. its Q/DQ target)."""
    base = Path(out_dir) / model / prec.onnx_dir
    if prec != "int8":
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
    quantizer: str = "ort",
    qdq_target: str = "tensorrt",
) -> str:
    """What a converted file was made from; equal keys mean the file can be reused."""
    versions = library_versions(("onnxconverter-common",))
    req: dict[str, Any] = {
        "fp32": fp32_sha256,
        "precision": precision,
        "versions": {k: versions.get(k) for k in _KEY_VERSIONS},
        "tolerances": (tolerances or precision.gate).to_dict(),
        "max_accuracy_drop": max_accuracy_drop,
    }
    if precision == "int8":
        req["placement"] = int8.PLACEMENT_SCHEME
        req["quantizer"] = quantizer
        req["qdq_target"] = qdq_target
        if quantizer == "modelopt":
            req["quantizer_version"] = modelopt_int8.version()
    if precision == "int8" and calib is not None:
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
