"""Each profiler's parser, on recorded fixtures (ONNX Runtime and OpenVINO recorded here;
TensorRT written from NVIDIA's documented formats), and the alignment of runtime layers to the
ONNX nodes of the very files profiled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cnnbench.bench.measure.profile import build
from cnnbench.bench.measure.profile_graph import GraphFacts, graph_facts
from cnnbench.engines.executed import ExecutedLayer, trt_inspector_layers
from cnnbench.engines.layer_times import (
    LayerTimes,
    is_conversion,
    ort_layer_times,
    ov_layer_times,
    trt_layer_times,
    trtexec_layer_times,
)
from cnnbench.export.onnx_macs import node_macs

FIX = Path(__file__).resolve().parents[1] / "fixtures"
PROF = FIX / "profiles"


def _load(name: str) -> Any:
    return json.loads((PROF / name).read_text())


def _ov(name: str) -> LayerTimes:
    doc = _load(name)
    runtime = [ExecutedLayer(**{**d, "nodes": tuple(d["nodes"])}) for d in doc["runtime_layers"]]
    return ov_layer_times(doc["runs"], runtime)


def _profile(times: LayerTimes, onnx: str, precision: str = "fp32") -> Any:
    path = PROF / onnx
    return build(times, graph_facts(path), node_macs(path), engine="x", precision=precision,
                 batch=1, p50_ms=None)  # fmt: skip


def test_ort_times_are_the_last_queries_per_node_and_every_mac_is_aligned() -> None:
    events = _load("ort_lenet5_fp32.json")
    runs = [e["dur"] / 1e3 for e in events if e["name"] == "model_run"]
    times = ort_layer_times(events, queries=3)
    assert times.queries == 3 and times.wall_ms == runs[-3:]
    assert all(len(t) == 3 for t in times.times_ms)
    prof = _profile(times, "lenet5_fp32.onnx")
    macs = node_macs(PROF / "lenet5_fp32.onnx")
    # every weighted ONNX node is covered by exactly one layer, whatever ORT renamed it to
    covered = [n for layer in prof.layers for n in layer.nodes if n in macs]
    assert sorted(covered) == sorted(macs)
    assert sum(layer.macs or 0 for layer in prof.layers if layer.nodes) == sum(macs.values())


def test_ort_int8_placed_for_tensorrt_runs_float_convs_between_unfused_qdq() -> None:
    prof = _profile(ort_layer_times(_load("ort_lenet5_int8_tensorrt.json"), 3),
                    "lenet5_int8_tensorrt.onnx", "int8")  # fmt: skip
    mac_layers = [layer for layer in prof.layers if layer.macs and not layer.conversion]
    assert mac_layers and all(layer.precision == "fp32" for layer in mac_layers)
    dq = [layer for layer in prof.layers if layer.type == "DequantizeLinear"]
    assert dq and all(layer.conversion for layer in dq)
    assert prof.summary["conversion_time_share"] > 0


def test_ort_int8_placed_for_onnxruntime_runs_int8_kernels() -> None:
    prof = _profile(ort_layer_times(_load("ort_lenet5_int8_onnxruntime.json"), 3),
                    "lenet5_int8_onnxruntime.onnx", "int8")  # fmt: skip
    mac_layers = [layer for layer in prof.layers if layer.macs and not layer.conversion]
    assert {layer.type for layer in mac_layers} <= {"QLinearConv", "QGemm", "QLinearMatMul"}
    assert all(layer.precision == "int8" for layer in mac_layers)
    # NHWC transposes ORT inserted name no ONNX node: runtime-added, conversion overhead
    added = [layer for layer in prof.layers if layer.type == "Transpose"]
    assert added and all(layer.conversion and not layer.nodes for layer in added)


@pytest.mark.parametrize("name", ["fp32", "int8_tensorrt", "int8_onnxruntime"])
def test_openvino_layers_are_the_executed_nodes_joined_with_the_runtime_model(name: str) -> None:
    doc = _load(f"ov_lenet5_{name}.json")
    times = _ov(f"ov_lenet5_{name}.json")
    executed = {r["node_name"] for r in doc["runs"][0] if r["status"] == "EXECUTED"}
    assert {layer.name for layer in times.layers} == executed  # NOT_RUN ones were fused
    assert all(len(t) == 3 for t in times.times_ms)
    prof = _profile(times, f"lenet5_{name}.onnx", "int8" if "int8" in name else "fp32")
    macs = node_macs(PROF / f"lenet5_{name}.onnx")
    covered = {n for layer in prof.layers for n in layer.nodes if n in macs}
    assert covered == set(macs)
    real = sum(r["real_time_ms"] for r in doc["runs"][1])
    assert prof.layer_time_ms_total == pytest.approx(
        sum(sorted(t)[1] for t in times.times_ms), rel=1e-6
    )  # the median of 3
    assert real > 0


def test_trt_iprofiler_calls_and_trtexec_profile_read_alike() -> None:
    inspector = trt_inspector_layers((FIX / "trt_inspector" / "engine_info_10x.json").read_text())
    calls = [[(n, ms) for n, ms in run] for run in _load("trt_iprofiler_calls.json")]
    live = trt_layer_times(calls, inspector)
    saved = trtexec_layer_times(_load("trt_export_profile.json"), inspector)
    assert [layer.name for layer in live.layers] == [layer.name for layer in saved.layers]
    assert saved.queries == 1000 and live.queries == 3
    medians = [sorted(t)[1] for t in live.times_ms]
    assert medians == pytest.approx([t[0] for t in saved.times_ms])
    conv = live.layers[1]
    assert conv.nodes == ("/conv1/Conv", "/relu/Relu") and conv.precision == "fp16"
    reformat = live.layers[0]
    assert reformat.kind == "Reformat" and is_conversion(reformat.kind)


def _small_graph() -> Any:
    """x -> Conv(/conv1/Conv) -> Relu(/relu/Relu) -> Add(+x) -> GAP -> Flatten -> Gemm."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((8, 8, 3, 3), np.float32), "w")
    fc = numpy_helper.from_array(np.ones((10, 8), np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="/conv1/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
        helper.make_node("Add", ["r", "x"], ["s"], name="/add/Add"),
        helper.make_node("GlobalAveragePool", ["s"], ["p"], name="/avgpool/GlobalAveragePool"),
        helper.make_node("Flatten", ["p"], ["f"], name="/Flatten"),
        helper.make_node("Gemm", ["f", "fc"], ["y"], name="/fc/Gemm", transB=1),
    ]
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], [w, fc],
    )  # fmt: skip
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_each_runtime_naming_finds_the_same_onnx_nodes() -> None:
    f = GraphFacts.of(_small_graph())
    fused = ["/conv1/Conv", "/relu/Relu", "/add/Add"]
    assert f.cover(["/conv1/Conv", "/relu/Relu", "/add/Add"]) == fused  # OpenVINO, TensorRT
    assert f.cover(["s_nchwc"]) == fused  # ONNX Runtime: a fused conv named after its output
    assert f.cover(["/fc/Gemm_token_3"]) == ["/fc/Gemm"]  # its layout pass's token
    assert f.cover(["ReorderInput"]) == []  # a layer of its own: no ONNX node


def test_bytes_count_weights_once_and_only_activations_crossing_the_layer() -> None:
    f = GraphFacts.of(_small_graph())
    nodes = f.cover(["s_nchwc"])
    assert f.weight_elems(nodes) == 8 * 8 * 3 * 3
    reads, writes = f.activation_elems(nodes)
    assert reads == 8 * 6 * 6  # x, read by the conv and the Add, counted once
    assert writes == 8 * 6 * 6  # s; c and r stay inside the layer


def test_a_layer_sum_far_from_p50_is_flagged() -> None:
    times = LayerTimes(
        layers=[ExecutedLayer("a", "Conv", "fp32"), ExecutedLayer("b", "Reorder", "fp32")],
        times_ms=[[1.0, 1.2, 1.1], [0.1, 0.1, 0.1]], source="t", queries=3,
    )  # fmt: skip
    near = build(times, None, {}, engine="x", precision="fp32", batch=1, p50_ms=1.25)
    far = build(times, None, {}, engine="x", precision="fp32", batch=1, p50_ms=2.0)
    assert near.layer_time_ms_total == pytest.approx(1.2)
    assert near.gap["flag"] is False and far.gap["flag"] is True
    assert far.gap["pct"] == pytest.approx(-40.0)
    assert near.summary["conversion_time_share"] == pytest.approx(0.1 / 1.2, abs=1e-4)
    assert near.summary["time_fp32_share"] == pytest.approx(1.1 / 1.2, abs=1e-4)
