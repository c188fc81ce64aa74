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
