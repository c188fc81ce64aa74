"""What really ran, per layer: the runtimes' own reports turned into layers, MACs attributed
from the ONNX graph, and the shares per executed precision.

The TensorRT parser is tested on a hand-written inspector document in the documented layout;
that tests our parsing, never that a TensorRT engine reports it (see the ``trt`` tests)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from cnnbench.bench.measure.layer_report import file_artifact, graph_precision, report, row_fields
from cnnbench.cli import cli
from cnnbench.engines import create
from cnnbench.engines.base import BatchRange, EngineOptions
from cnnbench.engines.executed import (
    ExecutedLayer,
    attribute,
    ort_profile_layers,
    precision_word,
    summarize,
    trt_format_precision,
    trt_inspector_layers,
)
from cnnbench.errors import InvalidInputError
from cnnbench.export import graph
from cnnbench.export.onnx_macs import fused_outputs, node_macs
from cnnbench.precision import Precision
from tests.engines.conftest import artifact


def test_runtime_words_become_our_precisions() -> None:
    assert [precision_word(w) for w in ("u8", "I8", "f16", "bf16", "f32", "FP32", "")] == [
        "int8", "int8", "fp16", "bf16", "fp32", "fp32", None,
    ]  # fmt: skip
    assert (
        trt_format_precision("Thirty-two wide channel vectorized row major Int8 format") == "int8"
    )
    assert trt_format_precision("Channel major FP16 format where channel % 8 == 0") == "fp16"
    assert trt_format_precision("Row major linear FP32") == "fp32"
    assert trt_format_precision("") is None


def _event(name: str, op: str, inputs: list[dict[str, Any]], out: list[int]) -> dict[str, Any]:
    return {
        "cat": "Node", "name": f"{name}_kernel_time", "dur": 10,
        "args": {"op_name": op, "provider": "CPUExecutionProvider",
                 "input_type_shape": inputs, "output_type_shape": [{"float": out}]},
    }  # fmt: skip


def test_ort_profile_events_become_layers_with_kernel_precisions() -> None:
    events = [
        {"cat": "Session", "name": "model_run"},
        _event("conv_q", "QLinearConv",
               [{"uint8": [1, 3, 8, 8]}, {"float": []}, {"uint8": []}, {"int8": [4, 3, 3, 3]}],
               [1, 4, 8, 8]),
        _event("relu_nchwc", "Conv", [{"float": [1, 4, 8, 8]}, {"float": [4, 4, 3, 3]}],
               [1, 4, 8, 8]),
        _event("fc", "Gemm", [{"float16": [1, 256]}, {"float16": [10]}], [1, 10]),
        _event("fc_DequantizeLinear", "DequantizeLinear", [{"int8": [10, 256]}], [10, 256]),
        _event("conv_q", "QLinearConv", [{"uint8": [1, 3, 8, 8]}], [1, 4, 8, 8]),  # 2nd run
    ]  # fmt: skip
    layers = ort_profile_layers(events)
    assert [la.name for la in layers] == ["relu_nchwc", "fc", "fc_DequantizeLinear", "conv_q"]
    by = {la.name: la for la in layers}
    assert by["conv_q"].precision == "int8"  # an integer kernel, whatever its inputs
    assert by["relu_nchwc"].precision == "fp32" and by["fc"].precision == "fp16"
    assert by["relu_nchwc"].nodes == ("relu_nchwc", "relu")  # the chain's output tensor
    assert by["relu_nchwc"].shape_macs == 4 * 8 * 8 * 4 * 3 * 3
    assert by["fc"].shape_macs == 10 * 256
    assert by["fc_DequantizeLinear"].shape_macs is None


def test_trt_inspector_json_becomes_layers() -> None:
    doc = {
        "Layers": [
            {"Name": "/conv1/Conv + /relu/Relu", "LayerType": "CaskConvolution",
             "Inputs": [{"Name": "x", "Format/Datatype": "Thirty-two wide channel vectorized "
                                                           "row major Int8 format"}],
             "Outputs": [{"Name": "y", "Format/Datatype": "Row major linear FP32"}],
             "TacticName": "sm90_xmma_fprop_implicit_gemm_interleaved_i8i8",
             "Metadata": "[ONNX Layer: /conv1/Conv]\x1e[ONNX Layer: /relu/Relu]"},
            {"Name": "/fc/Gemm", "LayerType": "CaskGemmConvolution",
             "Inputs": [{"Name": "z", "Format/Datatype": "Channel major FP16 format"}],
             "TacticName": "t", "Metadata": ""},
        ],
        "Bindings": ["x", "logits"],
    }  # fmt: skip
    conv, fc = trt_inspector_layers(json.dumps(doc))
    assert (conv.precision, conv.kind, conv.nodes) == ("int8", "CaskConvolution",
                                                        ("/conv1/Conv", "/relu/Relu"))  # fmt: skip
    assert fc.precision == "fp16" and fc.nodes == ("/fc/Gemm",)  # no metadata: the name's parts
    # built without DETAILED verbosity, the inspector gives names only: precision unknown
    (only,) = trt_inspector_layers({"Layers": ["/conv1/Conv + /relu/Relu"]})
    assert only.precision is None and only.nodes == ("/conv1/Conv", "/relu/Relu")


def test_macs_are_attributed_once_per_onnx_node_and_summarized() -> None:
    graph = {"conv1": 600, "conv2": 300, "fc": 100}
    layers = [
        ExecutedLayer("a", "Conv", "int8", nodes=("conv1", "relu1")),
        ExecutedLayer("b", "Conv", "fp32", nodes=("relu2_out",)),  # a renamed fused chain
        ExecutedLayer("c", "Reorder", "int8", nodes=("conv1",)),  # conv1 again: not counted
        ExecutedLayer("d", "Gemm", "fp16", nodes=("x",), shape_macs=100),  # runtime's count
        ExecutedLayer("e", "Relu", "fp32", nodes=("relu9",)),
    ]
    got = attribute(layers, graph, {"relu2_out": "conv2"})
    assert [la.macs for la in got] == [600, 300, None, 100, None]
    s = summarize(got, total_macs=1000)
    assert s["macs_accounted"] == 1000 and s["macs_coverage"] == 1.0
    assert (s["macs_int8_share"], s["macs_fp32_share"], s["macs_fp16_share"]) == (0.6, 0.3, 0.1)
    assert s["weighted_layers_by_precision"] == {"int8": 1, "fp32": 1, "fp16": 1}
    empty = summarize([ExecutedLayer("e", "Relu", "fp32")], total_macs=1000)
    assert empty["macs_int8_share"] is None and empty["macs_coverage"] == 0.0


def test_graph_macs_count_what_the_graph_computes(onnx_fp32: Callable[[str], Path]) -> None:
    from cnnbench.analysis import analyze

    path = onnx_fp32("lenet5")
    macs = node_macs(path)
    zoo = {la.name: la.macs for la in analyze("lenet5").layers}
    # C1, C5 and F6 as the zoo counts them; C3's partial connection table (150,000 MACs in
    # the paper) runs as a dense conv with masked weights: the graph does 16*10*10*6*25
    assert macs == {
        "node_conv2d": zoo["c1"], "node_conv2d_1": 16 * 10 * 10 * 6 * 25,
        "node_conv2d_2": zoo["c5"], "node_linear": zoo["f6"],
    }  # fmt: skip
    # every weighted node is reachable from the tensors its fused chain produces
    assert set(macs) <= set(fused_outputs(path).values())


def test_fused_chains_take_the_conv_branch_of_a_residual_add(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 2, 1, 1], [1.0] * 4)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c1"], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w"], ["c2"], name="conv2"),
        helper.make_node("Add", ["c2", "r1"], ["s"], name="add"),  # identity: r1, two steps
        helper.make_node("Relu", ["s"], ["y"], name="relu2"),
    ]
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], [w],
    )  # fmt: skip
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "m.onnx")
    fused = fused_outputs(tmp_path / "m.onnx")
    assert fused == {"c1": "conv1", "r1": "conv1", "c2": "conv2", "s": "conv2", "y": "conv2"}
    assert node_macs(tmp_path / "m.onnx") == {"conv1": 2 * 16 * 2, "conv2": 2 * 16 * 2}


@pytest.fixture(scope="module")
def lenet_files(artifact_root: Path) -> dict[str, Path]:
    from cnnbench.export.convert import ensure_precision

    return {
        p: Path(ensure_precision("lenet5", p, out_dir=artifact_root, calib_samples=32,
                                 check=False).onnx_path)
        for p in (Precision.FP32, Precision.INT8)
    }  # fmt: skip


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_cpu_engines_report_what_ran(engine: str, lenet_files: dict[str, Path]) -> None:
    pytest.importorskip(engine)
    total = sum(node_macs(lenet_files["fp32"]).values())
    shares = {}
    for precision, path in lenet_files.items():
        eng = create(engine, EngineOptions(threads=1))
        with eng:
            eng.load(artifact("lenet5", precision, path), BatchRange.fixed(2))
            rep = report(eng)
            assert rep is not None
            eng.infer(np.zeros((2, 1, 32, 32), np.float32))  # the timed session still serves
        s = rep.summary
        assert s["macs_coverage"] == 1.0, rep.to_dict()  # every weighted node accounted for
        assert s["macs_accounted"] == total
        assert sum(s[f"macs_{p}_share"] for p in ("int8", "fp16", "bf16", "fp32")) == 1.0
        shares[precision] = s["macs_int8_share"]
    assert shares["fp32"] == 0.0
    if engine == "openvino":
        # LeNet's first conv (one input channel) stays float by the placement rules; the rest
        # runs in INT8 kernels
        assert 0.5 < shares["int8"] < 1.0


def test_the_row_records_the_shares_and_none_where_an_engine_cannot_say(
    lenet_files: dict[str, Path],
) -> None:
    pytest.importorskip("openvino")
    eng = create("openvino", EngineOptions(threads=1))
    with eng:
        eng.load(artifact("lenet5", "int8", lenet_files["int8"]), BatchRange.fixed(1))
        row = row_fields(eng)
    assert row["layers_source"].startswith("openvino runtime model")
    assert row["macs_int8_share"] > 0.5 and row["macs_coverage"] == 1.0
    torch_eng = create("torch", EngineOptions(threads=1))
    with torch_eng:
        torch_eng.load(artifact("lenet5"), BatchRange.fixed(1))
        assert set(row_fields(torch_eng).values()) == {None}


def test_a_users_file_gets_its_shape_and_precision_from_the_graph(
    lenet_files: dict[str, Path], tmp_path: Path
) -> None:
    art = file_artifact(lenet_files["int8"])
    assert (art.model, art.precision, art.input_shape, art.num_classes) == (
        "lenet5", "int8", (1, 32, 32), 10,
    )  # fmt: skip
    assert graph_precision(graph.load(lenet_files["fp32"])) == "fp32"
    with pytest.raises(InvalidInputError, match="ONNX file not found"):
        file_artifact(tmp_path / "missing.onnx")


def test_layers_command(lenet_files: dict[str, Path]) -> None:
    pytest.importorskip("openvino")
    runner = CliRunner()
    res = runner.invoke(cli, ["layers", str(lenet_files["int8"]), "-e", "ov", "--format", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["artifact_precision"] == "int8" and doc["summary"]["macs_coverage"] == 1.0
    # the layers left unquantized run in OpenVINO's default inference precision: bf16 on a CPU
    # with AVX-512-BF16 or AMX, else fp32
    import openvino as ov

    hint = str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
    rest = "bf16" if "bf16" in hint or "bfloat16" in hint else "fp32"
    assert {la["precision"] for la in doc["layers"] if la["macs"]} == {"int8", rest}
    res = runner.invoke(cli, ["layers", str(lenet_files["fp32"]), "-e", "ov",
                              "--engine-opt", "inference_precision=f32"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "MACs by executed precision: fp32 100.0%" in res.output
    for args, message in [
        (["-e", "torch"], "does not report the layers it ran"),
        (["-e", "ov", "--engine-opt", "hint=fast"], "hint: not a known value"),
        (["-e", "ov", "--engine-opt", "compile=true"], "no engine of this run has 'compile'"),
    ]:
        res = runner.invoke(cli, ["layers", str(lenet_files["fp32"]), *args])
        assert res.exit_code == 2 and message in res.output, res.output


def test_trt_inspector_reads_the_10x_and_the_11_3_schemas_alike() -> None:
    # issue 26: TensorRT 11.3 changed the inspector's JSON: Bindings became I/O Tensors, and a
    # tensor's format and data type became separate fields (fixtures: tests/fixtures/trt_inspector)
    folder = Path(__file__).resolve().parents[1] / "fixtures" / "trt_inspector"
    text = {
        s: (folder / f"engine_info_{s}.json").read_text(encoding="utf-8") for s in ("10x", "11x")
    }
    seen = {
        s: [(la.kind, la.precision, la.kernel, la.nodes) for la in trt_inspector_layers(t)]
        for s, t in text.items()
    }
    assert [p for _, p, _, _ in seen["11x"]] == ["fp32", "fp16", "int8", "fp16", "fp32"]
    assert seen["10x"] == seen["11x"]
    conv = trt_inspector_layers(text["11x"])[2]
    assert conv.nodes == ("/layer1/layer1.0/conv1/Conv", "/layer1/layer1.0/relu/Relu")
    assert conv.extra["format"].startswith("Thirty-two wide channel vectorized row major Int8")
    from cnnbench.engines.executed import trt_io_tensors

    assert trt_io_tensors(text["10x"]) == trt_io_tensors(text["11x"]) == ["input", "logits"]
