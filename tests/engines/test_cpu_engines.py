"""What the CPU engines record about themselves, and their option handling (lenet5, fast)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cnnbench.engines import create
from cnnbench.engines.base import BatchRange, EngineOptions
from cnnbench.errors import InvalidInputError
from cnnbench.export.parity import FP32_GATE
from cnnbench.export.parity import compare as parity
from tests.engines.conftest import artifact, inputs, reference


def test_onnxruntime_records_threads_and_providers(onnx_fp32: Callable[[str], Path]) -> None:
    import psutil

    art = artifact("lenet5", onnx_path=onnx_fp32("lenet5"))
    with create("ort") as eng:
        eng.load(art, BatchRange(1, 2, 4))
        info = eng.describe()
        opts = eng._sess.get_session_options()  # type: ignore[attr-defined]
    assert info["intra_op_threads"] == psutil.cpu_count(logical=False)
    assert opts.intra_op_num_threads == info["intra_op_threads"]
    assert info["providers"] == ["CPUExecutionProvider"]
    assert info["graph_optimization_level"] == "ORT_ENABLE_ALL" and info["io_binding"] is False
    with create("ort", EngineOptions(threads=1)) as eng:
        eng.load(art, BatchRange(1, 2, 4))
        assert eng.describe()["intra_op_threads"] == 1
        assert eng._sess.get_session_options().intra_op_num_threads == 1  # type: ignore[attr-defined]


def test_onnxruntime_split_path_equals_infer(onnx_fp32: Callable[[str], Path]) -> None:
    x = inputs("lenet5", batch=3)
    with create("ort") as eng:
        eng.load(artifact("lenet5", onnx_path=onnx_fp32("lenet5")), BatchRange(1, 2, 4))
        a = eng.infer(x)
        b = eng.to_host(eng.run(eng.stage(x)))
        eng.synchronize()
    assert a.shape == (3, 10) and np.array_equal(a, b)


def test_openvino_reports_its_effective_precision(onnx_fp32: Callable[[str], Path]) -> None:
    ov = pytest.importorskip("openvino")
    from cnnbench.engines.openvino_engine import OV_PRECISION

    hint = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    expected = OV_PRECISION[hint.get_type_name()]
    art = artifact("lenet5", onnx_path=onnx_fp32("lenet5"))
    with create("ov") as eng:
        eng.load(art, BatchRange.fixed(2))
        info = eng.describe()
    assert info["inference_precision"] == expected == info["effective_precision"]
    # artifact and effective precision are named fields; the requested one is the row's
    assert "precision" not in info
    assert info["artifact_precision"] == "fp32"
    assert info["requested_config"] == {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    with create("ov", EngineOptions(threads=1, extra={"inference_precision": "f32"})) as eng:
        eng.load(art, BatchRange.fixed(2))
        info = eng.describe()
        a = eng.infer(inputs("lenet5"))
        b = eng.infer(inputs("lenet5", seed=1))
    assert info["effective_precision"] == "fp32" and info["threads"] == 1 and info["streams"] == 1
    assert not np.shares_memory(a, b)  # the caller owns what infer returned


def test_openvino_static_and_dynamic_batches_agree(onnx_fp32: Callable[[str], Path]) -> None:
    pytest.importorskip("openvino")
    art = artifact("lenet5", onnx_path=onnx_fp32("lenet5"))
    x3, x1 = inputs("lenet5", batch=3), inputs("lenet5", batch=1, seed=5)
    opts = EngineOptions(extra={"inference_precision": "f32"})
    with create("ov", opts) as fixed, create("ov", opts) as ranged:
        fixed.load(art, BatchRange.fixed(3))
        ranged.load(art, BatchRange(1, 2, 4))
        a = fixed.infer(x3)
        assert np.allclose(a, ranged.infer(x3), rtol=1e-5, atol=1e-6)
        assert ranged.infer(x1).shape == (1, 10)
        assert np.array_equal(a, fixed.infer(x3.copy()))
        with pytest.raises(InvalidInputError, match="batch shape"):
            fixed.infer(x1)
    assert parity(reference("lenet5", x3), a, FP32_GATE)


def test_torch_engine_restores_thread_count() -> None:
    import torch

    before = torch.get_num_threads()
    x = inputs("lenet5")
    with create("torch", EngineOptions(threads=1)) as eng:
        eng.load(artifact("lenet5"), BatchRange(1, 2, 4))
        assert torch.get_num_threads() == 1 and eng.describe()["threads"] == 1
        out = eng.infer(x)
    assert torch.get_num_threads() == before
    assert parity(reference("lenet5", x), out, FP32_GATE)


@pytest.mark.slow
def test_torch_compile_agrees() -> None:
    x = inputs("lenet5")
    with create("torch", EngineOptions(extra={"compile": "default"})) as eng:
        eng.load(artifact("lenet5"), BatchRange(1, 2, 4))
        out = eng.infer(x)
        assert eng.describe()["compile"] == "default"
    assert parity(reference("lenet5", x), out, FP32_GATE)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("graphs", [False, True])
def test_torch_cuda(precision: str, graphs: bool) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from cnnbench.export.parity import FP16_GATE

    x = inputs("resnet18", batch=4)
    opts = EngineOptions(device="cuda", extra={"cuda_graphs": graphs})
    with create("torch", opts) as eng:
        eng.load(artifact("resnet18", precision), BatchRange(1, 4, 8))
        out = eng.infer(x)
        out2 = eng.to_host(eng.run(eng.stage(x[:2])))
        info, mem = eng.describe(), eng.memory()
    assert (
        info["channels_last"] is True
        and info["dtype"] == {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[precision]
    )
    assert mem["torch_max_allocated_mb"] > 0
    tol = FP32_GATE if precision == "fp32" else FP16_GATE
    assert parity(reference("resnet18", x), out, tol)
    assert np.allclose(out2, out[:2], rtol=1e-2, atol=1e-2)
