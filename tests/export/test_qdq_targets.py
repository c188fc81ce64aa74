"""Q/DQ placed per target runtime: a recorded choice (recipe, request key, folder, manifest, the
cell's key), checked against each target's rules, and INT8 where ONNX Runtime runs it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnbench.errors import InvalidInputError
from cnnbench.export.qdq_check import check_placement
from cnnbench.precision import Int8Recipe, Precision, default_qdq_target
from tests.export.test_qdq_placement import _block


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_each_engine_gets_its_own_placement_unless_one_is_said() -> None:
    assert Int8Recipe().for_engine("onnxruntime").qdq_target == "onnxruntime"
    assert Int8Recipe().for_engine("openvino").qdq_target == "openvino"
    assert Int8Recipe().for_engine("tensorrt").qdq_target == "tensorrt"
    assert Int8Recipe().for_engine("null").qdq_target == "tensorrt"
    # ONNX Runtime that hands the graph to TensorRT wants TensorRT's placement
    assert default_qdq_target("onnxruntime", {"providers": ["tensorrt", "cuda"]}) == "tensorrt"
    assert Int8Recipe(qdq_target="openvino").for_engine("onnxruntime").qdq_target == "openvino"
    assert Int8Recipe(quantizer="modelopt").for_engine("onnxruntime").qdq_target == "tensorrt"
    assert Int8Recipe().target == "tensorrt"  # an export with no engine: TensorRT's


def test_a_target_the_quantizer_cannot_place_for_is_one_line() -> None:
    with pytest.raises(InvalidInputError, match="modelopt places Q/DQ for tensorrt only"):
        Int8Recipe(quantizer="modelopt", qdq_target="onnxruntime")
    with pytest.raises(InvalidInputError, match="unknown Q/DQ target 'tvm'"):
        Int8Recipe(qdq_target="tvm")


def test_openvino_wants_both_residual_inputs_quantized_and_tensorrt_one() -> None:
    both = _block(projection=False, quantize=True, quantize_branch=True)
    one = _block(projection=False, quantize=True)
    ov_both, ov_one = check_placement(both, "openvino"), check_placement(one, "openvino")
    assert ov_both["ok"], ov_both["violations"]
    assert ov_both["residual_adds_both_dq"] == 1 and ov_both["quantized_weighted_outputs"] == 0
    assert not ov_one["ok"] and "openvino runs it in INT8 with both" in ov_one["violations"][0]
    assert check_placement(one, "tensorrt")["ok"]
    assert not check_placement(both, "tensorrt")["ok"]


def test_onnxruntime_counts_conv_outputs_left_float() -> None:
    """ONNX Runtime fuses DQ -> Conv -> Q only: a float conv output is a note (it costs speed,
    not correctness); the small-conv exception of TensorRT does not apply."""
    report = check_placement(_block(projection=False, quantize=True), "onnxruntime")
    assert report["weighted_outputs_float"] == 2 and report["notes"]
    assert report["float_small_convs"] == []
    assert not report["ok"]  # one quantized input of the Add: not INT8 on ORT either


@pytest.mark.usefixtures("cache")
def test_every_target_makes_its_own_file_and_says_so(tmp_path: Path) -> None:
    from cnnbench.export.convert import ensure_precision

    art = tmp_path / "art"
    made = {
        t: ensure_precision("lenet5", Precision.INT8, out_dir=art, calib_samples=16, qdq_target=t)
        for t in ("tensorrt", "onnxruntime", "openvino")
    }
    assert len({r.onnx_path for r in made.values()}) == 3
    for target, res in made.items():
        extra = res.manifest["extra"]
        assert extra["qdq_target"] == target and extra["qdq"]["placement"]["target"] == target
        assert extra["qdq"]["placement"]["ok"], extra["qdq"]["placement"]["violations"]
        assert extra["qdq"]["placement"]["outputs_from_dq"] == []  # logits float everywhere
        if res.onnx_path.parent.name != "int8":
            assert res.onnx_path.parent.name.startswith(f"int8-{target}-")
    again = ensure_precision(
        "lenet5", Precision.INT8, out_dir=art, calib_samples=16, qdq_target="openvino"
    )
    assert again.onnx_path == made["openvino"].onnx_path  # the request's own file, reused


@pytest.mark.usefixtures("cache")
def test_the_onnxruntime_placement_runs_int8_kernels_on_onnxruntime(tmp_path: Path) -> None:
    """The same model and calibration: TensorRT's placement runs float convs between Q/DQ on
    ONNX Runtime's CPU provider; ONNX Runtime's own runs QLinearConv/QGemm."""
    from cnnbench.batch import BatchRange
    from cnnbench.bench.measure.layer_report import file_artifact, report
    from cnnbench.engines.onnxruntime_engine import OrtEngine
    from cnnbench.export.convert import ensure_precision

    shares = {}
    for target in ("tensorrt", "onnxruntime"):
        res = ensure_precision(
            "lenet5", Precision.INT8, out_dir=tmp_path, calib_samples=16, qdq_target=target
        )
        with OrtEngine() as eng:
            eng.load(file_artifact(res.onnx_path, Precision.INT8), BatchRange.fixed(1))
            rep = report(eng)
        assert rep is not None
        shares[target] = rep.summary["macs_int8_share"]
        kinds = {layer.kind for layer in rep.layers if layer.macs}
        if target == "onnxruntime":
            assert kinds <= {"QLinearConv", "QGemm", "QLinearMatMul"}, kinds
    assert shares["onnxruntime"] == 1.0
    assert shares["tensorrt"] < 0.5
