"""The Q/DQ placement rules, on small graphs built here and on the zoo's INT8 files."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnbench.export.qdq_check import check_placement
from cnnbench.export.qdq_placement import quantize_identities, residual_adds
from cnnbench.precision import Precision


def _w(name: str, shape: tuple[int, ...]) -> Any:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.full(shape, 0.1, dtype=np.float32), name)


def _qdq(nodes: list[Any], inits: list[Any], src: str, tag: str) -> str:
    """Append Q->DQ of ``src``; returns the DQ output."""
    from onnx import helper, numpy_helper

    inits += [
        numpy_helper.from_array(np.array(0.05, dtype=np.float32), f"{tag}_s"),
        numpy_helper.from_array(np.array(0, dtype=np.int8), f"{tag}_z"),
    ]
    nodes.append(helper.make_node("QuantizeLinear", [src, f"{tag}_s", f"{tag}_z"], [f"{tag}_q"]))
    nodes.append(
        helper.make_node("DequantizeLinear", [f"{tag}_q", f"{tag}_s", f"{tag}_z"], [f"{tag}_dq"])
    )
    return f"{tag}_dq"


def _block(*, projection: bool, quantize: bool, quantize_branch: bool = False) -> Any:
    """x -> relu -> [conv1 -> relu -> conv2] + [identity or 1x1 projection] -> relu -> y."""
    import onnx
    from onnx import TensorProto, helper

    nodes: list[Any] = [helper.make_node("Relu", ["x"], ["r0"], name="relu0")]
    inits = [_w("w1", (16, 16, 3, 3)), _w("w2", (16, 16, 3, 3)), _w("wp", (16, 16, 1, 1))]
    src = _qdq(nodes, inits, "r0", "r0") if quantize else "r0"
    pads = [1, 1, 1, 1]
    nodes.append(helper.make_node("Conv", [src, "w1"], ["c1"], name="conv1", pads=pads))
    nodes.append(helper.make_node("Relu", ["c1"], ["r1"], name="relu1"))
    r1 = _qdq(nodes, inits, "r1", "r1") if quantize else "r1"
    nodes.append(helper.make_node("Conv", [r1, "w2"], ["c2"], name="conv2", pads=pads))
    branch = _qdq(nodes, inits, "c2", "c2") if quantize_branch else "c2"
    identity = src
    if projection:
        nodes.append(helper.make_node("Conv", [src, "wp"], ["cp"], name="proj"))
        identity = "cp"
    nodes.append(helper.make_node("Add", [branch, identity], ["s"], name="add"))
    nodes.append(helper.make_node("Relu", ["s"], ["y"], name="relu_out"))
    g = helper.make_graph(
        nodes, "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8, 8])],
        inits,
    )  # fmt: skip
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def test_the_identity_of_a_plain_block_is_its_input() -> None:
    (add,) = residual_adds(_block(projection=False, quantize=False).graph)
    assert add.branch == "c2" and add.identity == "r0" and not add.identity_from_weighted_op


def test_the_identity_of_a_projection_block_is_the_shorter_conv_branch() -> None:
    (add,) = residual_adds(_block(projection=True, quantize=False).graph)
    assert add.identity == "cp" and add.branch == "c2" and add.identity_from_weighted_op


def test_an_add_of_two_unweighted_tensors_is_not_a_residual() -> None:
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Sigmoid", ["x"], ["b"]),
         helper.make_node("Add", ["a", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )  # fmt: skip
    assert residual_adds(g) == []


def test_a_well_placed_block_passes_and_a_float_block_does_not() -> None:
    import onnx

    good = _block(projection=False, quantize=True)
    # the identity reads r0 through the pair the conv uses: what ORT does when it shares a DQ
    add = next(n for n in good.graph.node if n.op_type == "Add")
    assert add.input[1] == "r0_dq"
    report = check_placement(good)
    assert report["ok"], report["violations"]
    assert report["residual_adds"] == report["residual_adds_one_dq"] == 1
    assert report["quantized_ops"] == {"Add": 1, "Conv": 2} and report["float_outputs"] == ["y"]
    bad = check_placement(_block(projection=False, quantize=False))
    assert not bad["ok"] and bad["weighted_unquantized"] == 2
    assert any("residual Add add has 0 quantized input" in v for v in bad["violations"])
    _ = onnx  # imported for the checker in _block


def test_a_quantized_conv_branch_breaks_the_rules_and_is_undone(tmp_path: Path) -> None:
    import onnx

    model = _block(projection=False, quantize=True, quantize_branch=True)
    report = check_placement(model)
    assert report["quantized_weighted_outputs"] == 1
    assert any("2 quantized input" in v for v in report["violations"])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    counts = quantize_identities(path, tmp_path / "unused.json")
    assert counts["branch_unquantized"] == 1
    fixed = onnx.load(str(path))
    assert check_placement(fixed)["ok"]
    assert not any(n.input[0] == "c2" for n in fixed.graph.node if n.op_type == "QuantizeLinear")


def test_a_projection_identity_gets_a_pair_from_its_calibrated_range(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationMethod,
        TensorData,
        TensorsData,
        save_tensors_data,
    )

    model = _block(projection=True, quantize=True)
    assert not check_placement(model)["ok"]  # the Add has no quantized input yet
    path, ranges = tmp_path / "m.onnx", tmp_path / "ranges.json"
    onnx.save(model, str(path))
    data = {"cp": TensorData(lowest=np.float32(-2.54), highest=np.float32(1.0))}
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), ranges)
    counts = quantize_identities(path, ranges)
    assert counts["identity_inserted"] == 1
    fixed = onnx.load(str(path))
    onnx.checker.check_model(fixed)
    report = check_placement(fixed)
    assert report["ok"], report["violations"]
    scale = next(t for t in fixed.graph.initializer if t.name == "cp_identity_scale")
    assert onnx.numpy_helper.to_array(scale) == pytest.approx(2.54 / 127)
    x = np.random.default_rng(0).standard_normal((1, 16, 8, 8)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"x": x})[0].shape == (1, 16, 8, 8)  # topologically sorted, runs


def _int8_of(model: str, tmp: Path, quantizer: str = "ort") -> Path:
    from cnnbench.export.convert import convert
    from cnnbench.export.pipeline import ensure_fp32

    fp32 = ensure_fp32(model, out_dir=tmp, check=False)
    # ModelOpt calibrates with entropy or max (its own percentile differs): max for both
    method = "max" if quantizer == "modelopt" else "entropy"
    return convert(
        model, fp32, Precision.INT8, out_dir=tmp, calib_samples=8, calib_method=method, check=False,
        quantizer=quantizer,
    ).onnx_path  # fmt: skip


def _assert_acceptance(path: Path, *, residual: bool) -> None:
    import onnx

    model = onnx.load(str(path))
    g = model.graph
    report = check_placement(model)
    assert report["ok"], report["violations"]
    producer = {o: n for n in g.node for o in n.output}
    adds = {a.identity: a for a in residual_adds(g)}
    projections = {producer[a.identity].input[0] for a in adds.values()}
    projections = {producer[t].input[0] for t in projections if t in producer}
    for q in (n for n in g.node if n.op_type == "QuantizeLinear"):
        src = producer.get(q.input[0])
        if src is not None and src.op_type in ("Conv", "Gemm", "MatMul"):
            # a conv output is quantized only as a residual Add's identity (downsample)
            assert q.input[0] in projections, q.input[0]
    for out in g.output:
        assert producer[out.name].op_type != "DequantizeLinear"
    if residual:
        adds_all = [n for n in g.node if n.op_type == "Add" and not any(
            i in {t.name for t in g.initializer} for i in n.input)]  # fmt: skip
        assert adds_all and all(
            sum(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"
                for i in n.input) == 1
            for n in adds_all
        )  # fmt: skip


@pytest.fixture
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "cache"))


HAS_MODELOPT = importlib.util.find_spec("modelopt") is not None
_MODELOPT = pytest.param(
    "modelopt",
    marks=[pytest.mark.slow, pytest.mark.skipif(not HAS_MODELOPT, reason="cnnbench[modelopt]")],
)


@pytest.mark.usefixtures("_cache")
@pytest.mark.parametrize("quantizer", ["ort", _MODELOPT])
def test_resnet18_int8_places_qdq_the_tensorrt_way(tmp_path: Path, quantizer: str) -> None:
    _assert_acceptance(_int8_of("resnet18", tmp_path, quantizer), residual=True)


@pytest.mark.slow
@pytest.mark.usefixtures("_cache")
@pytest.mark.parametrize("quantizer", ["ort", _MODELOPT])
def test_googlenet_int8_places_qdq_the_tensorrt_way(tmp_path: Path, quantizer: str) -> None:
    _assert_acceptance(_int8_of("googlenet", tmp_path, quantizer), residual=False)


def test_a_conv_too_narrow_for_int8_kernels_may_stay_float() -> None:
    from onnx import TensorProto, helper

    from cnnbench.export.qdq_convs import float_convs

    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="c1")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 4, 4])],
        [_w("w", (6, 1, 5, 5))],
    )  # fmt: skip
    assert float_convs(g) == ["c1"]  # LeNet's C1: 1 -> 6 channels
    report = check_placement(helper.make_model(g))
    assert report["weighted_unquantized"] == 0 and report["float_small_convs"] == ["c1"]
    g.initializer[0].CopyFrom(_w("w", (8, 1, 5, 5)))  # 8 outputs on the first layer: INT8
    assert float_convs(g) == []
