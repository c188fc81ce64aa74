"""INT8: explicit Q/DQ in TensorRT's form, calibration sources and cache, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cnnbench.errors import CheckFailedError, InvalidInputError
from cnnbench.export.int8 import describe_qdq
from cnnbench.precision import Precision


@pytest.fixture(scope="module")
def art_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared with test_fp16 (same session base dir), so LeNet's FP32 export happens once."""
    root = tmp_path_factory.getbasetemp() / "shared-artifacts"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("calib-cache")


@pytest.fixture(autouse=True)
def _private_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNBENCH_CACHE", str(cache))


@pytest.fixture(scope="module")
def fp32(art_root: Path, cache: Path):
    from cnnbench.export.pipeline import ensure_fp32

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNBENCH_CACHE", str(cache))
        return ensure_fp32("lenet5", out_dir=art_root)


@pytest.fixture(scope="module")
def lenet_int8(fp32, art_root: Path, cache: Path):
    from cnnbench.export.convert import convert

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNBENCH_CACHE", str(cache))
        return convert(
            "lenet5", fp32, Precision.INT8, out_dir=art_root / "int8-tests", calib_samples=64
        )


def _onnx(path: Path):
    import onnx

    return onnx.load(str(path))


def test_int8_has_tensorrt_qdq_form(lenet_int8) -> None:
    d = describe_qdq(lenet_int8.onnx_path)
    assert d["ok"], d
    assert d["qdq_pairs"] > 0 and d["qdq_pairs"] == d["quantize_linear"]
    assert d["zero_points"]["all_zero"] and d["zero_points"]["types"] == ["INT8"]
    assert d["int8"] and d["int32_dq"] == 0
    assert d["activation_per_tensor"] and d["weight_axes_ok"]
    # C3, C5 (convs) and F6 (Gemm); C1 (1 -> 6 channels) stays float: no INT8 kernel gains there
    assert d["per_channel_weights"] >= 3
    assert d["placement"]["float_small_convs"] == ["node_conv2d"]
    assert d["linear_weights_per_tensor"] == 0
    assert d["quantized_ops"]["Conv"] >= 2 and d["quantized_ops"]["Gemm"] >= 1
    assert lenet_int8.manifest["extra"]["qdq"] == d


def test_weight_scales_are_per_output_channel(lenet_int8) -> None:
    from onnx import TensorProto, numpy_helper

    g = _onnx(lenet_int8.onnx_path).graph
    inits = {t.name: t for t in g.initializer}
    users = {i: n for n in g.node for i in n.input}
    checked = 0
    for dq in (n for n in g.node if n.op_type == "DequantizeLinear"):
        user = users.get(dq.output[0])
        if dq.input[0] not in inits or user is None or user.op_type not in ("Conv", "Gemm"):
            continue
        w = inits[dq.input[0]]
        scale = numpy_helper.to_array(inits[dq.input[1]])
        zp = numpy_helper.to_array(inits[dq.input[2]])
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        trans_b = next((a.i for a in user.attribute if a.name == "transB"), 0)
        want = 0 if user.op_type == "Conv" or trans_b else 1
        assert axis == want and scale.shape == (w.dims[want],)
        assert w.data_type == TensorProto.INT8 and zp.dtype == np.int8 and not zp.any()
        q = numpy_helper.to_array(w)
        assert q.min() >= -127  # symmetric weights: -128 unused, as TensorRT requires
        checked += 1
    assert checked >= 3  # C3, C5, F6 (C1 stays float)


def test_biases_stay_float_for_tensorrt(lenet_int8) -> None:
    from onnx import TensorProto

    g = _onnx(lenet_int8.onnx_path).graph
    inits = {t.name: t for t in g.initializer}
    for n in g.node:
        if n.op_type == "Conv" and len(n.input) > 2:
            assert inits[n.input[2]].data_type == TensorProto.FLOAT


def test_int8_manifest_records_calibration_and_accuracy(lenet_int8, fp32) -> None:
    m = lenet_int8.manifest
    cal = m["extra"]["calibration"]
    assert cal["kind"] == "digits" and cal["samples"] == 64 and cal["method"] == "entropy"
    assert cal["source"] == "digits:train[:64]" and cal["meaningful"] is True
    conv = m["extra"]["converter"]
    assert conv["quantizer"] == "onnxruntime.quantization"
    assert conv["options"]["extra_options"]["ActivationSymmetric"] is True
    assert m["parity"]["tolerances"] == {k: None for k in m["parity"]["tolerances"]}
    acc = m["extra"]["accuracy"]
    assert acc["dataset"] == "digits:test" and acc["samples"] == 450
    assert acc["drop_points"] == pytest.approx((acc["fp32_top1"] - acc["top1"]) * 100, abs=1e-3)
    assert m["extra"]["source"]["sha256"] == fp32.sha256


def test_int8_runs_on_onnxruntime(lenet_int8, fp32) -> None:
    import onnxruntime as ort

    from cnnbench.data import digits

    x = digits.load_split("test").images[:32]
    outs = []
    for p in (fp32.onnx_path, lenet_int8.onnx_path):
        s = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
        outs.append(s.run(None, {"input": x})[0])
    assert outs[1].dtype == np.float32 and outs[1].shape == (32, 10)
    cos = (
        (outs[0] * outs[1]).sum(1)
        / np.linalg.norm(outs[0], axis=1)
        / np.linalg.norm(outs[1], axis=1)
    )
    assert cos.min() > 0.99


@pytest.mark.parametrize("method", ["max", "percentile"])
def test_other_calibration_methods(method: str, fp32, tmp_path) -> None:
    from cnnbench.export.convert import convert

    res = convert(
        "lenet5", fp32, Precision.INT8, out_dir=tmp_path, calib_method=method, calib_samples=32
    )
    assert describe_qdq(res.onnx_path)["ok"]
    assert res.manifest["extra"]["calibration"]["method"] == method


def test_calibration_cache_hit_and_corrupt_entry_rebuilt(fp32, tmp_path, capfd) -> None:
    from cnnbench.export.calibration import cache_path
    from cnnbench.export.convert import convert

    first = convert("lenet5", fp32, Precision.INT8, out_dir=tmp_path, calib_samples=40)
    cal = first.manifest["extra"]["calibration"]
    assert cal["cache_hit"] is False
    second = convert("lenet5", fp32, Precision.INT8, out_dir=tmp_path, calib_samples=40)
    assert second.manifest["extra"]["calibration"]["cache_hit"] is True
    assert second.sha256 == first.sha256  # the same ranges give the same file
    entry = cache_path(cal["cache_key"])
    entry.write_text(entry.read_text()[:50])  # truncated JSON
    capfd.readouterr()
    third = convert("lenet5", fp32, Precision.INT8, out_dir=tmp_path, calib_samples=40)
    assert "corrupt" in capfd.readouterr().err
    assert third.manifest["extra"]["calibration"]["cache_hit"] is False
    assert third.sha256 == first.sha256
    json.loads(entry.read_text())  # rebuilt, valid again


def test_cache_key_depends_on_file_data_method_and_samples(fp32) -> None:
    from cnnbench.export.calibration import cache_key, calibration_set
    from cnnbench.models import get_spec

    spec = get_spec("lenet5")
    a = calibration_set(spec, "digits", samples=16)
    b = calibration_set(spec, "digits", samples=24)
    c = calibration_set(spec, "random", samples=16)
    keys = {
        cache_key(fp32.sha256, a, "entropy"),
        cache_key(fp32.sha256, a, "max"),
        cache_key(fp32.sha256, b, "entropy"),
        cache_key(fp32.sha256, c, "entropy"),
        cache_key("0" * 64, a, "entropy"),
    }
    assert len(keys) == 5
    assert cache_key(fp32.sha256, a, "entropy") == cache_key(
        fp32.sha256, calibration_set(spec, "digits", samples=16), "entropy"
    )


def test_random_calibration_warns_loudly(capfd) -> None:
    from cnnbench.export.calibration import calibration_set
    from cnnbench.models import get_spec

    cal = calibration_set(get_spec("lenet5"), "random", samples=8, seed=3)
    assert cal.samples == 8 and not cal.meaningful
    err = capfd.readouterr().err
    assert "WARNING" in err and "MEANINGLESS" in err


def _png(path: Path, size: int) -> None:
    from PIL import Image

    Image.fromarray(np.full((size, size), 128, dtype=np.uint8)).save(path)


def test_image_folder_and_npy_calibration(tmp_path) -> None:
    from cnnbench.export.calibration import calibration_set
    from cnnbench.models import get_spec

    spec = get_spec("lenet5")
    for i in range(5):
        _png(tmp_path / f"{i}.png", 40)
    cal = calibration_set(spec, tmp_path, samples=3)
    assert cal.kind == "images" and cal.samples == 3
    arr = np.zeros((6, 1, 32, 32), dtype=np.float32)
    np.save(tmp_path / "x.npy", arr)
    cal = calibration_set(spec, tmp_path / "x.npy", samples=4)
    assert cal.kind == "npy" and cal.samples == 4


@pytest.mark.parametrize("case", ["missing", "empty", "small-images", "wrong-npy", "zero-samples"])
def test_bad_calibration_data_is_one_line_and_writes_nothing(case: str, fp32, tmp_path) -> None:
    from cnnbench.export.convert import convert

    data = tmp_path / "data"
    samples = 8
    if case == "empty":
        data.mkdir()
    elif case == "small-images":
        data.mkdir()
        _png(data / "tiny.png", 8)  # lenet5 needs at least 16 px
    elif case == "wrong-npy":
        data = tmp_path / "x.npy"
        np.save(data, np.zeros((4, 3, 32, 32), dtype=np.float32))
    elif case == "zero-samples":
        samples = 0
    out = tmp_path / "out"
    with pytest.raises(InvalidInputError) as exc:
        convert("lenet5", fp32, Precision.INT8, out_dir=out, calib_data=data, calib_samples=samples)
    assert "\n" not in str(exc.value)
    assert not (out / "lenet5" / "int8" / "model.onnx").exists()
    assert not list(out.rglob(".staging-*"))


def test_accuracy_gate_failure_publishes_nothing(fp32, tmp_path) -> None:
    from cnnbench.export.convert import convert

    with pytest.raises(CheckFailedError, match="accuracy gate failed"):
        # a negative allowance cannot be met unless INT8 beats FP32
        convert(
            "lenet5",
            fp32,
            Precision.INT8,
            out_dir=tmp_path,
            calib_samples=32,
            max_accuracy_drop=-50.0,
        )
    folder = tmp_path / "lenet5" / "int8"
    assert not (folder / "model.onnx").exists() and not list(folder.glob(".staging-*"))


def test_fp32_file_is_not_qdq(fp32) -> None:
    d = describe_qdq(fp32.onnx_path)
    assert d["qdq_pairs"] == 0 and not d["ok"]


def test_export_cli_bad_calib_data_exits_2(fp32, art_root, tmp_path) -> None:
    from click.testing import CliRunner

    from cnnbench.cli import cli

    args = ["export", "lenet5", "--precision", "int8", "--out", str(art_root)]
    res = CliRunner().invoke(cli, [*args, "--calib-data", str(tmp_path / "nope")])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("cnnbench: error")]
    assert len(lines) == 1 and "calibration data not found" in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet18", "googlenet"])
def test_imagenet_int8_structure(model: str, art_root: Path) -> None:
    from cnnbench.export.convert import convert
    from cnnbench.export.pipeline import ensure_fp32

    fp32 = ensure_fp32(model, out_dir=art_root)
    res = convert(
        model, fp32, Precision.INT8, out_dir=art_root, calib_data="random", calib_samples=8
    )
    d = describe_qdq(res.onnx_path)
    assert d["ok"], d
    assert d["zero_points"]["all_zero"] and d["int8"] and d["int32_dq"] == 0
    convs = sum(1 for n in _onnx(res.onnx_path).graph.node if n.op_type in ("Conv", "Gemm"))
    assert d["per_channel_weights"] == convs  # every Conv/Gemm weight has per-channel scales
    assert res.manifest["extra"]["calibration"]["meaningful"] is False
