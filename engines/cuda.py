"""Small CUDA helpers shared by the GPU engines (torch imported only inside functions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cnnbench.errors import RuntimeUnavailableError


def device_index(device: str) -> int:
    """``cuda`` -> 0, ``cuda:N`` -> N; ValueError for anything else."""
    kind, _, idx = device.partition(":")
    if kind != "cuda":
        raise ValueError(f"not a CUDA device: {device!r}")
    return int(idx) if idx else 0


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU (False when torch is CPU-only)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def require_cuda(device: str, what: str) -> int:
    """The device index of ``device``, or a one-line RuntimeUnavailableError naming ``what``."""
    if not cuda_available():
        raise RuntimeUnavailableError(
            f"{what} needs a CUDA GPU and a CUDA build of torch; none found here"
        )
    import torch

    idx = device_index(device)
    if idx >= torch.cuda.device_count():
        raise RuntimeUnavailableError(
            f"{device} not found: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return idx


@dataclass(frozen=True)
class GpuIdentity:
    """What an engine build depends on: the GPU's name and compute capability."""

    name: str
    compute_capability: str  # "8.9"


def gpu_identity(index: int) -> GpuIdentity:
    """Name and compute capability of CUDA device ``index`` (via torch)."""
    import torch

    props = torch.cuda.get_device_properties(index)
    return GpuIdentity(props.name, f"{props.major}.{props.minor}")


def strict_fp32(torch_module: Any) -> tuple[bool, bool]:
    """FP32 means FP32: turn off TF32 in cuBLAS matmuls and cuDNN convolutions (torch's cuDNN
    default is on) and return the previous settings, for :func:`restore_tf32`."""
    backends = torch_module.backends
    before = (bool(backends.cuda.matmul.allow_tf32), bool(backends.cudnn.allow_tf32))
    backends.cuda.matmul.allow_tf32 = False
    backends.cudnn.allow_tf32 = False
    return before


def restore_tf32(torch_module: Any, before: tuple[bool, bool]) -> None:
    torch_module.backends.cuda.matmul.allow_tf32, torch_module.backends.cudnn.allow_tf32 = before
