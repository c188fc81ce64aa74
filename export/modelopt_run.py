"""NVIDIA ModelOpt's ONNX tools (the ``modelopt`` extra), each run in a child process:

- post-training quantization (``--quantizer modelopt`` for INT8; FP8 E4M3 always):
  ``modelopt.onnx.quantization.quantize`` places Q/DQ the way TensorRT fuses it
  (export.qdq_placement's rules), calibrates on ONNX Runtime's CPU provider and writes the
  weights in the low precision behind DequantizeLinear (``dq_only``), with the rest of the
  graph in FP32 (``high_precision_dtype="fp32"``). Its GEMV detection is off: it would leave a
  classifier that runs at batch 1 unquantized, against rule 1, and make the file depend on the
  batch. FP8 is E4M3 (``FLOAT8E4M3FN``), ModelOpt's ``quantize_mode="fp8"``: it calibrates as
  for INT8 and rescales to E4M3's range;
- AutoCast (``--fp16-converter autocast``): ``modelopt.onnx.autocast``'s
  ``convert_to_mixed_precision`` to FP16 with FP32 graph inputs and outputs, keeping in FP32 the
  nodes whose values its reference run (seeded random inputs) finds out of FP16's safe range:
  NVIDIA's recommended way to make an FP16 file for TensorRT 11, which reads precision from
  the graph.

Both run in a child process: importing ModelOpt patches ONNX Runtime's calibrators for the
whole process (its ``ort_patching``), which would change what ``--quantizer ort`` does in this
one afterwards. ModelOpt is told that TensorRT is absent where only TensorRT's type stubs are
installed (they import as an empty namespace package that it would take for TensorRT).

Installed by the ``modelopt`` extra, which pins nvidia-modelopt without its ``[onnx]`` extra, so
``onnxruntime-gpu`` never lands beside the CPU ``onnxruntime`` (they overwrite each other).
"""

from __future__ import annotations

import importlib
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
from cnnbench.precision import QUANTIZER_METHODS, Int8Recipe, Precision

QUANTIZER = "modelopt.onnx.quantization"
AUTOCAST = "modelopt.onnx.autocast"
INSTALL = "pip install 'cnnbench[modelopt]'"
#: our calibration method names -> ModelOpt's (it has no percentile calibrator)
METHODS = {m: m for m in QUANTIZER_METHODS["modelopt"]}
OPTIONS: dict[str, Any] = {
    "high_precision_dtype": "fp32",
    "dq_only": True,
    "calibration_eps": ["cpu"],
    "enable_gemv_detection_for_trt": False,
}
#: ModelOpt's quantize_mode per precision
MODES = {Precision.INT8: "int8", Precision.FP8: "fp8"}
AUTOCAST_OPTIONS: dict[str, Any] = {
    "low_precision_type": "fp16",
    "keep_io_types": True,
    "providers": ["cpu"],
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


def _load(module: str = QUANTIZER) -> Any:
    """A ModelOpt ONNX module, or a one-line error saying how to install it."""
    if version() is None:
        raise RuntimeUnavailableError(f"ModelOpt is not installed; {INSTALL}")
    try:
        with quiet():
            loaded = importlib.import_module(module)
            import modelopt.onnx.trt_utils as trt_utils
    except ImportError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RuntimeUnavailableError(
            f"ModelOpt cannot load {module} ({first}); {INSTALL}"
        ) from None
    if getattr(trt_utils, "TRT_PYTHON_AVAILABLE", False):
        trt = sys.modules.get("tensorrt")
        if trt is None or getattr(trt, "__version__", None) is None:
            trt_utils.TRT_PYTHON_AVAILABLE = False  # only the stubs: no TensorRT to ask
    return loaded


def quantize(
    src: Path,
    dst: Path,
    calib: CalibrationSet,
    method: str,
    input_name: str,
    precision: Precision = Precision.INT8,
) -> dict[str, Any]:
    """Quantize the FP32 file ``src`` into ``dst`` at ``precision`` (INT8 or FP8 E4M3),
    calibrated on ``calib``.

    Returns:
        The quantizer record for the manifest (name, version, mode, options).
    """
    mo_method = check_method(method)
    mode = MODES[precision]
    data = np.ascontiguousarray(np.concatenate(calib.batches, axis=0), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="cnnbench-modelopt-") as tmp:
        npy = Path(tmp) / "calib.npy"
        np.save(npy, data, allow_pickle=False)
        _child(["quantize", mode, str(src), str(dst), str(npy), mo_method, input_name], src, dst)
    return {
        "quantizer": QUANTIZER,
        "quantizer_version": version(),
        "mode": mode,
        "function": "modelopt.onnx.quantization.quantize",
        "options": {**OPTIONS, "quantize_mode": mode, "calibration_method": mo_method},
        "process": "child (ModelOpt patches ONNX Runtime on import)",
    }


def autocast(src: Path, dst: Path) -> dict[str, Any]:
    """FP16 with FP32 I/O from the FP32 file ``src`` into ``dst``, by AutoCast.

    Returns:
        The converter record for the manifest (name, version, mode, options).
    """
    _child(["autocast", str(src), str(dst)], src, dst)
    return {
        "converter": AUTOCAST,
        "converter_version": version(),
        "mode": "autocast",
        "function": "modelopt.onnx.autocast.convert_to_mixed_precision",
        "options": {**AUTOCAST_OPTIONS, "reference_inputs": "AutoCast's seeded random inputs"},
        "process": "child (ModelOpt patches ONNX Runtime on import)",
    }


_ERR = "cnnbench-modelopt-error: "
_UNAVAILABLE = 3


def _child(args: list[str], src: Path, dst: Path) -> None:
    """Run one ModelOpt task in a child process; one line when it fails."""
    if version() is None:
        raise RuntimeUnavailableError(f"ModelOpt is not installed; {INSTALL}")
    with tempfile.TemporaryDirectory(prefix="cnnbench-modelopt-") as tmp:
        errlog = Path(tmp) / "stderr.txt"
        cmd = [sys.executable, "-m", "cnnbench.export.modelopt_run", *args]
        with open(errlog, "wb") as err:
            code = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err).returncode
        lines = errlog.read_text("utf-8", "replace").splitlines()
    said = [ln[len(_ERR) :] for ln in lines if ln.startswith(_ERR)]
    if code == _UNAVAILABLE:
        raise RuntimeUnavailableError(said[-1] if said else f"ModelOpt cannot load; {INSTALL}")
    if code != 0 or not dst.is_file():
        why = said[-1] if said else (lines[-1].strip() if lines else f"exit code {code}")
        raise ArtifactError(f"ModelOpt {args[0]} of {src} failed: {why[:200]}")


def _run_quantize(mode: str, src: str, dst: str, npy: str, method: str, input_name: str) -> None:
    mq = _load(QUANTIZER)
    data = np.load(npy, allow_pickle=False)
    mq.quantize(
        src, calibration_data={input_name: data}, calibration_method=method,
        output_path=dst, log_level="ERROR", quantize_mode=mode, **OPTIONS,
    )  # fmt: skip


def _run_autocast(src: str, dst: str) -> None:
    import onnx

    ac = _load(AUTOCAST)
    model = ac.convert_to_mixed_precision(src, **AUTOCAST_OPTIONS)
    onnx.save(model, dst)


def _main(argv: list[str]) -> int:
    """The child: ``quantize MODE SRC DST CALIB.npy METHOD INPUT`` or ``autocast SRC DST``;
    one error line on stderr."""
    task, args = argv[0], argv[1:]
    logging.getLogger("modelopt").setLevel(logging.ERROR)
    try:
        with quiet():
            if task == "quantize":
                _run_quantize(*args)
            else:
                _run_autocast(*args)
    except RuntimeUnavailableError as exc:
        print(_ERR + str(exc), file=sys.stderr)
        return _UNAVAILABLE
    except Exception as exc:  # ModelOpt raises what its passes raise
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        print(_ERR + (first[:200] or type(exc).__name__), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
