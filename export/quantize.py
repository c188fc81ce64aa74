"""INT8 and FP8 (E4M3) files from the verified FP32 file: calibrated by the request's recipe,
quantized by ONNX Runtime's static quantizer (INT8) or ModelOpt's ONNX PTQ (INT8, FP8), then
checked for TensorRT's Q/DQ form and placement (:func:`export.int8.describe_qdq`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnnbench.errors import ArtifactError
from cnnbench.export import int8, modelopt_run
from cnnbench.export.calibration import CalibrationSet, cache_key, calibrate
from cnnbench.precision import Precision
from cnnbench.progress import Steps

#: each quantizer's steps, as the progress lines and the step history name them
STEPS = {"ort": ["pre-process", "calibrate", "quantize"], "modelopt": ["calibrate+quantize"]}


def quantized_file(
    src: Path,
    staged: Path,
    stage: Path,
    calib: CalibrationSet,
    method: str,
    fp32_sha: str,
    fp32_manifest: dict[str, Any],
    steps: Steps,
    quantizer: str = "ort",
    prec: Precision = Precision.INT8,
    target: str = "tensorrt",
) -> dict[str, Any]:
    """``staged``: ``src`` at ``prec`` by ``quantizer`` (FP8: ModelOpt), Q/DQ placed for
    ``target``, its form and placement checked by that target's rules. Returns the manifest's
    record: quantizer (name, version, mode), calibration, Q/DQ, the target."""
    input_name = str(fp32_manifest["input"]["name"])
    calibration: dict[str, Any] = {**calib.describe(), "method": method}
    if quantizer == "modelopt":
        with steps.step("calibrate+quantize"):  # ModelOpt calibrates inside its quantize
            record = modelopt_run.quantize(src, staged, calib, method, input_name, prec)
        calibration.update(calibrator=modelopt_run.QUANTIZER, cache_key=None, cache_hit=False)
    else:
        pre = stage / "preprocessed.onnx"
        with steps.step("pre-process"):
            int8.preprocess(src, pre)
        ckey = cache_key(fp32_sha, calib, method)
        with steps.step("calibrate"):
            ranges, hit = calibrate(
                pre, input_name, calib, method, key=ckey, op_types=int8.op_types()
            )
        with steps.step("quantize"):
            record = {**int8.quantize(pre, staged, ranges, method, target), "mode": "int8"}
        pre.unlink(missing_ok=True)
        calibration.update(calibrator="onnxruntime.quantization", cache_key=ckey, cache_hit=hit)
    qdq = int8.describe_qdq(staged, prec, target)
    if not qdq["ok"]:
        raise ArtifactError(
            f"{prec} file for {src} does not have {target}'s Q/DQ form: {json.dumps(qdq)[:200]}"
        )
    if not qdq["placement"]["ok"]:
        raise ArtifactError(
            f"{prec} file for {src} breaks {target}'s Q/DQ placement rules: "
            f"{qdq['placement']['violations'][0]}"
        )
    return {"converter": record, "calibration": calibration, "qdq": qdq, "qdq_target": target}
