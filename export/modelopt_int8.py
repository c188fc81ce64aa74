"""INT8 by NVIDIA ModelOpt's ONNX post-training quantization (``--quantizer modelopt``).

ModelOpt places Q/DQ the way TensorRT fuses it (export.qdq_placement's rules), calibrates on
ONNX Runtime's CPU provider and writes int8 weights behind DequantizeLinear (``dq_only``),
with the rest of the graph in FP32 (``high_precision_dtype="fp32"``). Two of its defaults are
changed, and the manifest says so:

- its GEMV detection is off: it would leave a classifier that runs at batch 1 unquantized,
  against rule 1 (every weighted op quantized), and make the file depend on the batch;
- it is told that TensorRT is absent where only TensorRT's type stubs are installed (they
  import as an empty namespace package that ModelOpt would take for TensorRT).

Installed by the ``modelopt`` extra, which pins nvidia-modelopt without its ``[onnx]`` extra, so
``onnxruntime-gpu`` never lands beside the CPU ``onnxruntime`` (they overwrite each other).
"""

from __future__ import annotations

import logging
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.errors import ArtifactError, InvalidInputError, RuntimeUnavailableError
from cnnbench.export.calibration import CalibrationSet
from cnnbench.export.graph import quiet
from cnnbench.precision import QUANTIZER_METHODS

QUANTIZER = "modelopt.onnx.quantization"
INSTALL = "pip install 'cnnbench[modelopt]'"
#: our calibration method names -> ModelOpt's (it has no percentile calibrator for INT8)
METHODS = {m: m for m in QUANTIZER_METHODS["modelopt"]}
OPTIONS: dict[str, Any] = {
    "quantize_mode": "int8",
    "high_precision_dtype": "fp32",
    "dq_only": True,
    "calibration_eps": ["cpu"],
    "enable_gemv_detection_for_trt": False,
}


def version() -> str | None:
    try:
        return metadata.version("nvidia-modelopt")
    except metadata.PackageNotFoundError:
        return None


def check_method(method: str) -> str:
    """ModelOpt's name for calibration ``method``, or a one-line error."""
    if method not in METHODS:
        raise InvalidInputError(
            f"--quantizer modelopt calibrates with {' or '.join(METHODS)}, not {method}; "
            "choose --calib-method entropy|max, or --quantizer ort"
        )
    return METHODS[method]


def _load() -> Any:
    """ModelOpt's ONNX quantization module, or a one-line error saying how to install it."""
    if version() is None:
        raise RuntimeUnavailableError(f"ModelOpt is not installed; {INSTALL}")
    try:
        with quiet():
            import modelopt.onnx.quantization as mq
            import modelopt.onnx.trt_utils as trt_utils
    except ImportError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RuntimeUnavailableError(
            f"ModelOpt cannot load its ONNX quantizer ({first}); {INSTALL}"
        ) from None
    if getattr(trt_utils, "TRT_PYTHON_AVAILABLE", False):
        trt = sys.modules.get("tensorrt")
        if trt is None or getattr(trt, "__version__", None) is None:
            trt_utils.TRT_PYTHON_AVAILABLE = False  # only the stubs: no TensorRT to ask
    return mq


def quantize(src: Path, dst: Path, calib: CalibrationSet, method: str, input_name: str) -> dict:
    """Quantize the FP32 file ``src`` into ``dst`` with ModelOpt, calibrated on ``calib``.

    Returns:
        The quantizer record for the manifest (name, version, options).
    """
    mo_method = check_method(method)
    mq = _load()
    data = np.ascontiguousarray(np.concatenate(calib.batches, axis=0), dtype=np.float32)
    logs = logging.getLogger("modelopt")
    level = logs.level
    try:
        with quiet():
            mq.quantize(
                str(src),
                calibration_data={input_name: data},
                calibration_method=mo_method,
                output_path=str(dst),
                log_level="ERROR",
                **OPTIONS,
            )
    except Exception as exc:  # ModelOpt raises what its passes raise
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        raise ArtifactError(
            f"ModelOpt INT8 quantization of {src} failed: {first[:200] or type(exc).__name__}"
        ) from None
    finally:
        logs.setLevel(level)
    if not dst.is_file():
        raise ArtifactError(f"ModelOpt wrote no file for {src}; run with a newer nvidia-modelopt")
    return {
        "quantizer": QUANTIZER,
        "quantizer_version": version(),
        "function": "modelopt.onnx.quantization.quantize",
        "options": {**OPTIONS, "calibration_method": mo_method},
    }
