"""GPU numbers that mean what they say (issue #26): defects of the GPU path found by reading,
each tested here on CPU torch and fakes. These test our logic (where a cast happens, which
options a provider gets, which TF32 settings are read), never that the GPU path works:
``pytest -m gpu`` and ``tools/gpu_check.sh`` on a GPU machine do that."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cnnbench.batch import BatchRange
from cnnbench.engines.base import EngineOptions
from cnnbench.engines.cuda import GpuIdentity


def test_the_torch_engine_casts_its_input_on_the_gpu_not_on_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A blocking copy_ from a host tensor that changes the dtype (fp16/bf16) or the layout
    # (channels_last) converts on the CPU, from pageable memory, into a temporary: host work
    # inside the measured time. The host batch must cross as it is; the cast is a device copy.
    torch = pytest.importorskip("torch")
    from cnnbench.engines.torch_engine import TorchEngine

    eng = TorchEngine(EngineOptions(device="cuda"))
    shape = (4, 3, 8, 8)
    # CPU tensors stand for the pinned buffer and the device buffers (no GPU here)
    eng._dev_in = torch.empty(shape, dtype=torch.float16).contiguous(
        memory_format=torch.channels_last
    )
    eng._host_in = torch.empty(shape, dtype=torch.float32)
    eng._dev_f32 = torch.empty(shape, dtype=torch.float32)
    copies: list[tuple[Any, Any, int]] = []
    real = torch.Tensor.copy_

    def spy(self: Any, src: Any, non_blocking: bool = False) -> Any:
        copies.append((self.dtype, src.dtype, src.data_ptr()))
        return real(self, src, non_blocking=non_blocking)

    monkeypatch.setattr(torch.Tensor, "copy_", spy)
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    staged = eng.stage(x)
    host = x.ctypes.data
    casts = [(d, s, p) for d, s, p in copies if d != s]
    assert casts, "the input was never cast to the run dtype"
    assert all(p != host for _, _, p in casts), "the cast read the host array"
    assert staged.dtype == torch.float16 and staged.shape[0] == 3
    assert staged.is_contiguous(memory_format=torch.channels_last)
    np.testing.assert_array_equal(staged.float().numpy(), x.astype(np.float16).astype(np.float32))


def test_ort_cuda_provider_computes_fp32_in_fp32_not_tf32() -> None:
    # ONNX Runtime's CUDA provider runs FP32 convolutions and matmuls in TF32 by default
    # (use_tf32=1), while the row says fp32.
    from cnnbench.engines.onnxruntime_engine import OrtEngine
    from tests.engines.conftest import artifact

    eng = OrtEngine(EngineOptions("cuda:1"))
    opts = eng._provider_options("CUDAExecutionProvider", artifact("lenet5"), BatchRange.fixed(1))
    assert opts == {"device_id": 1, "use_tf32": 0}


def _mixed_tf32_api(torch: Any) -> Any:
    """Set cuDNN convolutions through the fp32_precision API (torch >= 2.9), as any library
    may; afterwards the legacy cudnn.allow_tf32 read raises (conv and RNN differ)."""
    b = torch.backends
    if not hasattr(getattr(b.cudnn, "conv", None), "fp32_precision"):
        pytest.skip(f"torch {torch.__version__} has no fp32_precision settings")
    saved = (b.cuda.matmul.fp32_precision, b.cudnn.conv.fp32_precision, b.cudnn.rnn.fp32_precision)
    b.cudnn.conv.fp32_precision = "ieee"
    return saved


def _restore(torch: Any, saved: Any) -> None:
    b = torch.backends
    b.cuda.matmul.fp32_precision, b.cudnn.conv.fp32_precision, b.cudnn.rnn.fp32_precision = saved


def test_the_torch_engine_reads_tf32_through_the_new_api(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    import cnnbench.engines.torch_engine as te

    saved = _mixed_tf32_api(torch)
    try:
        monkeypatch.setattr(te, "gpu_identity", lambda i: GpuIdentity("fake GPU", "9.0"))
        info = te.TorchEngine(EngineOptions(device="cuda")).describe()
        assert info["tf32"] is False  # conv ieee, matmul unset (FP32)
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        assert te.TorchEngine(EngineOptions(device="cuda")).describe()["tf32"] is True
    finally:
        _restore(torch, saved)


def test_strict_fp32_sets_and_restores_the_new_api(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    from cnnbench.engines.cuda import restore_tf32, strict_fp32, tf32_enabled

    saved = _mixed_tf32_api(torch)
    b = torch.backends
    try:
        b.cudnn.conv.fp32_precision = "tf32"  # cuDNN's default: TF32 convolutions
        b.cuda.matmul.fp32_precision = "tf32"
        assert tf32_enabled(torch) is True
        before = strict_fp32(torch)
        assert (b.cuda.matmul.fp32_precision, b.cudnn.conv.fp32_precision) == ("ieee", "ieee")
        assert tf32_enabled(torch) is False
        restore_tf32(torch, before)
        assert (b.cuda.matmul.fp32_precision, b.cudnn.conv.fp32_precision) == ("tf32", "tf32")
    finally:
        _restore(torch, saved)


def test_tensorrt_cuda_graphs_capture_once_per_batch_after_one_plain_enqueue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # trtexec 11 times with a CUDA graph by default; TensorRT's guide: enqueue once before the
    # capture (deferred, shape-dependent work), then replay. Fakes for TensorRT and CUDA.
    torch = pytest.importorskip("torch")
    import contextlib

    from cnnbench.engines.tensorrt_engine import TensorRTEngine

    log: list[str] = []
    capturing = [False]

    class Context:
        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            log.append(f"shape {shape[0]}")
            return True

        def execute_async_v3(self, stream: int) -> bool:
            log.append("enqueue (captured)" if capturing[0] else "enqueue")
            return True

    class Graph:
        def replay(self) -> None:
            log.append("replay")

    @contextlib.contextmanager
    def graph(g: Graph, stream: Any = None) -> Any:
        capturing[0] = True
        yield
        capturing[0] = False

    stream = type("S", (), {"cuda_stream": 7, "synchronize": lambda self: None})()
    monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
    monkeypatch.setattr(torch.cuda, "graph", graph)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    eng = TensorRTEngine(EngineOptions("cuda", None, {"cuda_graphs": True}))
    eng._context, eng._stream, eng._in_name = Context(), stream, "input"  # type: ignore[assignment]
    eng._in, eng._out = torch.empty((8, 3, 4, 4)), torch.empty((8, 10))
    for n in (4, 4, 2, 4):
        assert eng.run(n).shape[0] == n
    assert log == [
        "shape 4", "enqueue", "enqueue (captured)", "replay", "replay",
        "shape 2", "enqueue", "enqueue (captured)", "replay",
        "shape 4", "replay",
    ]  # fmt: skip
