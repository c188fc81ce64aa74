"""onnxruntime and openvino run the FP16 and INT8 files and say what precision ran (lenet5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnbench.engines import create, probe
from cnnbench.engines.base import BatchRange
from cnnbench.export.parity import FP16_GATE, Tolerances
from cnnbench.export.parity import compare as parity
from cnnbench.precision import Precision
from tests.engines.conftest import artifact, inputs, reference

# INT8 (Q/DQ, entropy calibration on 32 random images) against torch FP32: a sanity bound.
INT8_SANITY = Tolerances(min_cosine=0.99, min_top1_agreement=0.75)


@pytest.fixture(scope="module")
def precision_files(artifact_root: Path) -> dict[str, Path]:
    from cnnbench.export.convert import ensure_precision

    root = artifact_root
    return {
        p: Path(
            ensure_precision("lenet5", p, out_dir=root, calib_samples=32, check=False).onnx_path
        )
        for p in (Precision.FP16, Precision.INT8)
    }


@pytest.mark.parametrize("precision", ["fp16", "int8"])
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_runs_precision_file(precision_files: dict[str, Path], engine: str, precision: str) -> None:
    if not probe(engine).available:
        pytest.skip(f"{engine} unavailable")
    x = inputs("lenet5", batch=4)
    with create(engine) as eng:
        eng.load(artifact("lenet5", precision, precision_files[precision]), BatchRange(1, 4, 4))
        out = eng.infer(x)
        info = eng.describe()
    assert info["artifact_precision"] == precision
    if precision == "int8":
        assert info["effective_precision"] == "int8"
    elif engine == "onnxruntime":
        assert info["effective_precision"] == "fp16" and "note" in info  # CPU EP upcasts some nodes
    else:  # OpenVINO computes an FP16 file in its inference precision
        assert info["effective_precision"] == info["inference_precision"]
    tol = FP16_GATE if precision == "fp16" else INT8_SANITY
    report = parity(reference("lenet5", x), out, tol)
    assert report, report.explain()
