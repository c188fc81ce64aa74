"""TensorRT 11's precision path (issue #26): FP8 (E4M3) Q/DQ by ModelOpt's ONNX PTQ, placed the
way TensorRT fuses it and gated on ONNX Runtime's CPU provider; FP16 by ModelOpt's AutoCast
with FP32 I/O. Both need the ``modelopt`` extra; ResNet-18 runs in the slow suite."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cnnbench.errors import InvalidInputError
from cnnbench.precision import Int8Recipe, Precision

ROOT = Path(__file__).resolve().parents[2]
HAS_MODELOPT = importlib.util.find_spec("modelopt") is not None
needs_modelopt = pytest.mark.skipif(not HAS_MODELOPT, reason="nvidia-modelopt not installed")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _cli(cwd: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CNNBENCH_CACHE": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "cnnbench", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=900,
    )  # fmt: skip


def _images(folder: Path, n: int = 24) -> Path:
    """Smooth coloured images with a square each: enough structure for calibration ranges."""
    from PIL import Image, ImageFilter

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((256, 256), Image.BICUBIC)
        a = np.asarray(img.filter(ImageFilter.GaussianBlur(3))).copy()
        x, y = rng.integers(0, 200, 2)
        a[y : y + 40, x : x + 40] = rng.integers(0, 256, 3)
        Image.fromarray(a).save(folder / f"img{i:03d}.png")
    return folder


def test_fp8_conv_rules_are_modelopts() -> None:
    from cnnbench.export.qdq_convs import fp8_conv_supported, int8_conv_supported

    conv = SimpleNamespace(op_type="Conv", attribute=[])
    assert fp8_conv_supported(conv, [64, 64, 3, 3])
    assert not fp8_conv_supported(conv, [64, 3, 7, 7])  # the stem: 3 channels, 49 taps
    assert not fp8_conv_supported(conv, [64, 64, 7, 7])  # a filter over 32 taps
    assert not fp8_conv_supported(conv, [16, 64, 3, 3])  # 16 channels or fewer
    assert int8_conv_supported(conv, [64, 3, 7, 7], first_layer=True)  # INT8 takes the stem


def test_fp8_is_listed_only_for_engines_that_compute_it() -> None:
    from cnnbench.engines import get_engine_class

    assert Precision.FP8 in get_engine_class("tensorrt").precisions
    for name in ("onnxruntime", "openvino", "torch"):
        assert Precision.FP8 not in get_engine_class(name).precisions, name


def test_fp8_takes_modelopts_calibration_methods(tmp_path: Path) -> None:
    from cnnbench.bench.run.sweep_config import load_config

    cfg = tmp_path / "s.yaml"
    cfg.write_text(
        "models: [lenet5]\nengines: [tensorrt]\nprecisions: [fp8]\nbatches: [1]\n"
        "scenarios: [offline]\ncalib_method: percentile\n"
    )
    with pytest.raises(InvalidInputError, match="modelopt calibrates with entropy or max"):
        load_config(cfg)
    assert Int8Recipe().quantizer == "ort"  # INT8's default; FP8 is ModelOpt's whatever it says


def test_an_fp8_qdq_graph_is_described_as_e4m3(tmp_path: Path) -> None:
    # a hand-made conv with E4M3 Q/DQ on its input and weight: the form check reads the type
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from cnnbench.export.int8 import describe_qdq

    w = np.random.default_rng(0).standard_normal((32, 32, 3, 3)).astype(np.float32)
    e4m3 = TensorProto.FLOAT8E4M3FN
    inits = [  # the weight stored in E4M3 behind its DequantizeLinear, as ModelOpt's dq_only
        helper.make_tensor("wq", e4m3, list(w.shape), (w / 0.01).ravel().tolist()),
        numpy_helper.from_array(np.array(0.05, dtype=np.float32), "s"),
        helper.make_tensor("z", e4m3, [], [0.0]),
        numpy_helper.from_array(np.full(32, 0.01, dtype=np.float32), "ws"),
        helper.make_tensor("wz", e4m3, [32], [0.0] * 32),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 8, 8])], inits,
    )  # fmt: skip
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), path)
    d = describe_qdq(path, Precision.FP8)
    assert d["element_type"] == "FLOAT8E4M3FN" and d["typed"] and not d["int8"]
    assert d["ok"] and d["placement"]["ok"], d
    assert d["quantized_ops"] == {"Conv": 2}  # its input and its weight
    assert not describe_qdq(path, Precision.INT8)["ok"]  # not an INT8 file


@needs_modelopt
def test_export_fp8_lenet5(tmp_path: Path, cache: Path) -> None:
    res = _cli(tmp_path, cache, "export", "lenet5", "--precision", "fp8", "--calib-data",
               "digits", "--calib-samples", "64", "-o", "art")  # fmt: skip
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "art/lenet5/fp8/manifest.json").read_text())
    conv = manifest["extra"]["converter"]
    assert (conv["quantizer"], conv["mode"]) == ("modelopt.onnx.quantization", "fp8")
    assert conv["quantizer_version"] and manifest["extra"]["qdq"]["ok"]
    assert (
        manifest["parity"]["passed"]
        and "basic graph optimisations" in manifest["parity"]["runtime"]
    )
    assert manifest["parity"]["tolerances"]["min_cosine"] == Precision.FP8.gate.min_cosine


@pytest.mark.slow
@needs_modelopt
def test_export_resnet18_fp8_from_an_image_folder(tmp_path: Path, cache: Path) -> None:
    # the acceptance of issue 26: conv inputs and weights through FLOAT8E4M3FN Q/DQ, placed the
    # TensorRT way, and the parity gate passes on ONNX Runtime CPU
    import onnx

    from cnnbench.export.int8 import describe_qdq
    from cnnbench.export.qdq_convs import float_convs

    _images(tmp_path / "imgs")
    res = _cli(tmp_path, cache, "export", "resnet18", "--precision", "fp8", "--calib-data",
               "imgs", "--calib-samples", "24", "-o", "art")  # fmt: skip
    assert res.returncode == 0, res.stderr
    path = tmp_path / "art/resnet18/fp8/model.onnx"
    assert res.stdout.strip().splitlines()[-1] == str(Path("art/resnet18/fp8/model.onnx"))
    d = describe_qdq(path, Precision.FP8)
    assert d["ok"] and d["placement"]["ok"], d["placement"]["violations"]
    assert d["element_type"] == "FLOAT8E4M3FN" and d["zero_points"]["types"] == ["FLOAT8E4M3FN"]
    g = onnx.load(str(path)).graph
    producer = {o: n for n in g.node for o in n.output}
    left_float = set(float_convs(g, Precision.FP8))
    assert left_float == {next(n.name for n in g.node if n.op_type == "Conv")}  # the 7x7 stem
    for n in g.node:
        if n.op_type == "Conv" and n.name not in left_float:
            for i in n.input[:2]:  # activation and weight, each through an E4M3 DQ
                assert producer[i].op_type == "DequantizeLinear", (n.name, i)
    manifest = json.loads(path.with_name("manifest.json").read_text())
    assert manifest["parity"]["passed"] and manifest["extra"]["converter"]["mode"] == "fp8"
    # verify re-checks it against PyTorch FP32 at FP8's gate, on the same ONNX Runtime settings
    again = _cli(tmp_path, cache, "verify", str(path))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == f"PASS {path}"


@pytest.mark.slow
@needs_modelopt
def test_export_resnet18_fp16_by_autocast_keeps_fp32_io(tmp_path: Path, cache: Path) -> None:
    from cnnbench.export.fp16 import describe_fp16

    res = _cli(tmp_path, cache, "export", "resnet18", "--precision", "fp16", "--fp16-converter",
               "autocast", "-o", "art")  # fmt: skip
    assert res.returncode == 0, res.stderr
    path = tmp_path / "art/resnet18/fp16/model.onnx"
    d = describe_fp16(path)
    assert d["inputs"] == {"input": "FLOAT"} and d["outputs"] == {"logits": "FLOAT"}
    assert d["fp16_nodes"] > 40 and d["casts"] >= 2
    manifest = json.loads(path.with_name("manifest.json").read_text())
    conv = manifest["extra"]["converter"]
    assert (conv["converter"], conv["mode"]) == ("modelopt.onnx.autocast", "autocast")
    assert conv["converter_version"] and manifest["exporter"].startswith("modelopt.onnx.autocast")
    assert manifest["parity"]["passed"]
