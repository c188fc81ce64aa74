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
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.errors import ArtifactError, RuntimeUnavailableError
from cnnbench.export.calibration import CalibrationSet
from cnnbench.export.graph import quiet
from cnnbench.precision import QUANTIZER_METHODS, Int8Recipe

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
    """ModelOpt's name for calibration ``method``, or Int8Recipe's one-line error."""
    Int8Recipe(quantizer="modelopt", calib_method=method)  # the one place the rule is stated
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

    ModelOpt runs in a child process: importing it patches ONNX Runtime's calibrators for the
    whole process (its ``ort_patching``), which would change what ``--quantizer ort`` does in
    this one afterwards.

    Returns:
        The quantizer record for the manifest (name, version, options).
    """
    mo_method = check_method(method)
    if version() is None:
        raise RuntimeUnavailableError(f"ModelOpt is not installed; {INSTALL}")
    data = np.ascontiguousarray(np.concatenate(calib.batches, axis=0), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="cnnbench-modelopt-") as tmp:
        npy, errlog = Path(tmp) / "calib.npy", Path(tmp) / "stderr.txt"
        np.save(npy, data, allow_pickle=False)
        cmd = [sys.executable, "-m", "cnnbench.export.modelopt_int8",
               str(src), str(dst), str(npy), mo_method, input_name]  # fmt: skip
        with open(errlog, "wb") as err:
            code = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err).returncode
        lines = errlog.read_text("utf-8", "replace").splitlines()
    said = [ln[len(_ERR) :] for ln in lines if ln.startswith(_ERR)]
    if code == _UNAVAILABLE:
        raise RuntimeUnavailableError(said[-1] if said else f"ModelOpt cannot load; {INSTALL}")
    if code != 0 or not dst.is_file():
        why = said[-1] if said else (lines[-1].strip() if lines else f"exit code {code}")
        raise ArtifactError(f"ModelOpt INT8 quantization of {src} failed: {why[:200]}")
    return {
        "quantizer": QUANTIZER,
        "quantizer_version": version(),
        "function": "modelopt.onnx.quantization.quantize",
        "options": {**OPTIONS, "calibration_method": mo_method},
        "process": "child (ModelOpt patches ONNX Runtime on import)",
    }


_ERR = "cnnbench-modelopt-error: "
_UNAVAILABLE = 3


def _main(argv: list[str]) -> int:
    """The child: ``src dst calib.npy method input_name``; one error line on stderr."""
    src, dst, npy, method, input_name = argv
    try:
        mq = _load()
    except RuntimeUnavailableError as exc:
        print(_ERR + str(exc), file=sys.stderr)
        return _UNAVAILABLE
    data = np.load(npy, allow_pickle=False)
    logging.getLogger("modelopt").setLevel(logging.ERROR)
    try:
        with quiet():
            mq.quantize(
                src,
                calibration_data={input_name: data},
                calibration_method=method,
                output_path=dst,
                log_level="ERROR",
                **OPTIONS,
            )
    except Exception as exc:  # ModelOpt raises what its passes raise
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        print(_ERR + (first[:200] or type(exc).__name__), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
