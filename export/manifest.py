"""The manifest.json written beside every exported ONNX file, and checks against it.

Layout (``schema`` 1; keys are stable, extend freely)::

    {
      "schema": 1,
      "model": "resnet18", "precision": "fp32", "opset": 18,
      "exporter": "dynamo" | "torchscript" | "<converter name>",
      "input":  {"name": "input",  "shape": ["batch", 3, 224, 224], "dtype": "float32"},
      "output": {"name": "logits", "shape": ["batch", 1000], "dtype": "float32"},
      "dynamic_axes": {"input": {"0": "batch"}, "logits": {"0": "batch"}},
      "batch": {"min": 1, "opt": 8, "max": 64},
      "onnx": {"file": "model.onnx", "sha256": "...", "bytes": 123, "external_data": null},
      "weights": "sha256:<hex>" | "seeded-init:<seed>",
      "versions": {"cnnbench": ..., "torch": ..., "onnx": ..., "onnxruntime": ..., ...},
      "parity": {...ParityReport.to_dict()..., "reference": "torch-eager-fp32", ...} | null,
      "timings_s": {"export": 1.2, "check": 0.1, ...},
      "created": "2025-01-01T00:00:00+00:00",
      "extra": {...}          # converter / calibration info for other precisions
    }
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from cnnbench import __version__
from cnnbench.artifacts import atomic_write_json, require_file, sha256_file
from cnnbench.batch import BatchRange
from cnnbench.errors import ArtifactError

__all__ = [
    "MANIFEST_NAME",
    "ONNX_NAME",
    "SCHEMA",
    "ExportResult",
    "build_manifest",
    "library_versions",
    "read_manifest",
    "validate_manifest",
    "verify_artifact",
    "weights_id",
    "write_manifest",
]

SCHEMA = 1
MANIFEST_NAME = "manifest.json"
ONNX_NAME = "model.onnx"
REQUIRED = (
    "schema",
    "model",
    "precision",
    "opset",
    "exporter",
    "input",
    "output",
    "dynamic_axes",
    "batch",
    "onnx",
    "weights",
    "versions",
    "parity",
    "timings_s",
)
_VERSIONED = ("cnnbench", "torch", "onnx", "onnxruntime", "onnxscript", "onnxslim", "numpy")


@dataclass(frozen=True)
class ExportResult:
    """An exported, verified artifact: its ONNX file, its manifest file and the manifest itself."""

    onnx_path: Path
    manifest_path: Path
    manifest: dict[str, Any] = field(compare=False)

    @property
    def sha256(self) -> str:
        return str(self.manifest["onnx"]["sha256"])

    @property
    def precision(self) -> str:
        return str(self.manifest["precision"])

    @property
    def batch(self) -> BatchRange:
        b = self.manifest["batch"]
        return BatchRange(int(b["min"]), int(b["opt"]), int(b["max"]))


def library_versions(extra: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Installed versions of the libraries that shape an artifact (None when not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in _VERSIONED + extra:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    # an editable install's metadata can lag; the package's own version is the truth

    out["cnnbench"] = __version__
    return out


def weights_id(weights: str | Path | None, seed: int = 0) -> str:
    """``sha256:<hex>`` of a weights file, or ``seeded-init:<seed>`` without one."""
    if weights is None:
        return f"seeded-init:{seed}"
    return "sha256:" + sha256_file(require_file(weights, "weights file"))


def build_manifest(
    *,
    model: str,
    precision: str,
    opset: int,
    exporter: str,
    onnx_path: Path,
    input_shape: tuple[int, ...],
    num_classes: int,
    batch: BatchRange,
    dynamic: bool,
    weights: str,
    parity: dict[str, Any] | None,
    timings: dict[str, float],
    input_name: str = "input",
    output_name: str = "logits",
    external_data: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a manifest; hashes ``onnx_path`` (the file must be in its final form)."""
    onnx_path = Path(onnx_path)
    lead: str | int = "batch" if dynamic else batch.opt
    axes = {input_name: {"0": "batch"}, output_name: {"0": "batch"}} if dynamic else {}
    return {
        "schema": SCHEMA,
        "model": model,
        "precision": precision,
        "opset": int(opset),
        "exporter": exporter,
        "input": {"name": input_name, "shape": [lead, *input_shape], "dtype": "float32"},
        "output": {"name": output_name, "shape": [lead, num_classes], "dtype": "float32"},
        "dynamic_axes": axes,
        "batch": {"min": batch.min, "opt": batch.opt, "max": batch.max},
        "onnx": {
            "file": onnx_path.name,
            "sha256": sha256_file(onnx_path),
            "bytes": onnx_path.stat().st_size,
            "external_data": external_data or None,
        },
        "weights": weights,
        "versions": library_versions(),
        "parity": parity,
        "timings_s": dict(timings),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "extra": dict(extra or {}),
    }


def validate_manifest(manifest: Any, where: str | Path = "manifest") -> dict[str, Any]:
    """Return ``manifest`` if it has the required shape, else raise a one-line ArtifactError."""
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{where} is not a JSON object; re-run cnnbench export")
    missing = [k for k in REQUIRED if k not in manifest]
    if missing:
        raise ArtifactError(
            f"{where} lacks {', '.join(missing)}; re-run cnnbench export to rebuild it"
        )
    onnx_info = manifest["onnx"]
    if not isinstance(onnx_info, dict) or not isinstance(onnx_info.get("sha256"), str):
        raise ArtifactError(f"{where} has no onnx.sha256; re-run cnnbench export")
    if not isinstance(manifest["input"], dict) or "name" not in manifest["input"]:
        raise ArtifactError(f"{where} has no input.name; re-run cnnbench export")
    b = manifest["batch"]
    try:
        BatchRange(int(b["min"]), int(b["opt"]), int(b["max"]))
    except (TypeError, KeyError, ValueError):
        raise ArtifactError(f"{where} has an invalid batch range; re-run cnnbench export") from None
    return manifest


def write_manifest(path: str | Path, manifest: dict[str, Any]) -> Path:
    """Validate and write ``manifest`` atomically (sorted keys, so diffs are readable)."""
    validate_manifest(manifest, path)
    return atomic_write_json(path, manifest)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and validate a manifest; missing, corrupt or incomplete files raise ArtifactError.

    ``path`` may be the manifest itself, the artifact folder, or the ONNX file beside it.
    """
    p = _manifest_path(Path(path))
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactError(f"manifest not found: {p}; re-run cnnbench export") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"cannot read manifest {p}: {exc}") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArtifactError(
            f"manifest {p} is corrupt (line {exc.lineno}: {exc.msg}); re-run cnnbench export"
        ) from None
    return validate_manifest(obj, p)


def verify_artifact(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """Check that an artifact's ONNX file matches its manifest's sha256.

    Args:
        path: the artifact folder, its manifest.json, or its ONNX file.

    Returns:
        (onnx_path, manifest).

    Raises:
        ArtifactError: missing/corrupt manifest, missing ONNX file, or a sha256 mismatch.
    """
    mpath = _manifest_path(Path(path))
    manifest = read_manifest(mpath)
    onnx_path = mpath.parent / str(manifest["onnx"].get("file") or ONNX_NAME)
    if not onnx_path.is_file():
        raise ArtifactError(f"ONNX file not found: {onnx_path}; re-run cnnbench export")
    actual = sha256_file(onnx_path)
    if actual != manifest["onnx"]["sha256"]:
        raise ArtifactError(
            f"{onnx_path} does not match its manifest (sha256 {actual[:12]}… != "
            f"{manifest['onnx']['sha256'][:12]}…); re-run cnnbench export"
        )
    for name in manifest["onnx"].get("external_data") or []:
        if not (onnx_path.parent / name).is_file():
            raise ArtifactError(f"external data file missing: {onnx_path.parent / name}")
    return onnx_path, manifest


def _manifest_path(p: Path) -> Path:
    if p.is_dir():
        return p / MANIFEST_NAME
    if p.suffix == ".onnx":
        return p.with_name(MANIFEST_NAME)
    return p
