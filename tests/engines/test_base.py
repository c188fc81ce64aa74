"""The protocol's dataclasses, the null engine and option validation of each engine."""

from __future__ import annotations

import numpy as np
import pytest

from cnnbench.engines import create
from cnnbench.engines.base import Artifact, BatchRange, EngineOptions
from cnnbench.errors import InvalidInputError, RuntimeUnavailableError
from cnnbench.precision import Precision


def _art(precision: str = "fp32", **kw: object) -> Artifact:
    return Artifact("lenet5", Precision(precision), (1, 32, 32), 10, **kw)  # type: ignore[arg-type]


def test_options_are_checked_where_they_enter() -> None:
    """engines.create is the Python API's way in: the device and threads are checked there
    (the flags and sweep files check theirs as they are read)."""
    with pytest.raises(InvalidInputError, match="device must be cpu, cuda or cuda:N"):
        create("null", EngineOptions(device="gpu"))
    with pytest.raises(InvalidInputError, match="threads"):
        create("null", EngineOptions(threads=0))
    assert create("null", EngineOptions(device="CUDA:1")).device == "cuda:1"


def test_null_engine_returns_preallocated_logits() -> None:
    with create("null") as eng:
        eng.load(_art(), BatchRange(1, 4, 8))
        a = eng.infer(np.zeros((3, 1, 32, 32), np.float32))
        b = eng.infer(np.zeros((8, 1, 32, 32), np.float32))
        assert a.shape == (3, 10) and b.shape == (8, 10) and a.dtype == np.float32
        assert np.shares_memory(a, b)  # no allocation per call
        assert eng.to_host(eng.run(eng.stage(np.zeros((2, 1, 32, 32), np.float32)))).shape == (
            2,
            10,
        )
        info = eng.describe()
        assert info["engine"] == "null" and info["batches"] == "1:4:8"
        assert eng.memory()["output_buffer_mb"] == pytest.approx(8 * 10 * 4 / 2**20, abs=1e-3)
    assert eng._out is None  # closed by the context manager


def test_engine_rejects_unsupported_precision_and_device() -> None:
    with pytest.raises(InvalidInputError, match="cannot run int8"):
        create("torch").load(_art("int8"), BatchRange.fixed(1))
    with pytest.raises(InvalidInputError, match="cannot run fp16 on cpu"):
        create("torch").load(_art("fp16"), BatchRange.fixed(1))
    with pytest.raises(InvalidInputError, match="does not run on cuda"):
        create("openvino", EngineOptions(device="cuda")).load(_art(), BatchRange.fixed(1))


@pytest.mark.parametrize("name", ["torch", "onnxruntime", "openvino", "tensorrt"])
def test_unknown_extra_option_is_rejected(name: str) -> None:
    with pytest.raises(InvalidInputError, match="unknown .*option"):
        create(name, EngineOptions(extra={"bogus": 1}))


def test_torch_option_checks() -> None:
    with pytest.raises(InvalidInputError, match="torch option compile: not true or false"):
        create("torch", EngineOptions(extra={"compile": "fastest"}))
    with pytest.raises(InvalidInputError, match="needs --device cuda"):
        create("torch", EngineOptions(extra={"cuda_graphs": True}))
    eng = create("torch", EngineOptions(extra={"compile": True}))
    assert eng.compile_mode == "default"  # type: ignore[attr-defined]


def test_onnxruntime_provider_checks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError, match="needs --device cuda"):
        create("ort", EngineOptions(extra={"providers": ["cuda"]}))
    with pytest.raises(InvalidInputError, match="cuda or tensorrt provider"):
        create("ort", EngineOptions(device="cuda", extra={"providers": "cpu"}))
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not used")
    eng = create("ort", EngineOptions(device="cuda"))
    with pytest.raises(RuntimeUnavailableError, match="onnxruntime-gpu"):
        eng.load(_art(onnx_path=onnx), BatchRange.fixed(1))


def test_onnx_engines_need_a_file() -> None:
    for name in ("onnxruntime", "openvino"):
        with pytest.raises(InvalidInputError, match="cnnbench export lenet5"):
            create(name).load(_art(), BatchRange.fixed(1))


def test_cuda_without_a_gpu_is_one_clear_line() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    eng = create("torch", EngineOptions(device="cuda"))
    with pytest.raises(RuntimeUnavailableError, match="needs a CUDA GPU"):
        eng.load(_art(), BatchRange.fixed(1))


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_corrupt_onnx_is_one_line_artifact_error(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    from cnnbench.errors import ArtifactError

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ArtifactError, match=f"{name} cannot load") as exc:
        create(name).load(_art(onnx_path=bad), BatchRange.fixed(1))
    assert "\n" not in str(exc.value)
