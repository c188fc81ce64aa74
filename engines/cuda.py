"""Small CUDA helpers shared by the GPU engines (torch imported only inside functions)."""

from __future__ import annotations

import contextlib
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


@dataclass(frozen=True)
class CudaIds:
    """How NVML can find a CUDA device: its UUID and PCI bus id, as the CUDA runtime sees it."""

    uuid: str | None
    pci_bus_id: str | None  # "00000000:3B:00.0", NVML's form


def cuda_ids(index: int) -> CudaIds | None:
    """The UUID and PCI bus id of CUDA device ``index`` (via torch), or None without CUDA."""
    if not cuda_available():
        return None
    import torch

    props = torch.cuda.get_device_properties(index)
    uuid = getattr(props, "uuid", None)
    bus = getattr(props, "pci_bus_id", None)
    pci = None
    if bus is not None:
        domain = int(getattr(props, "pci_domain_id", 0))
        dev = int(getattr(props, "pci_device_id", 0))
        pci = f"{domain:08X}:{int(bus):02X}:{dev:02X}.0"
    return CudaIds(str(uuid) if uuid is not None else None, pci)


def use_device(device: str) -> Any:
    """A context manager making CUDA device ``device`` (cuda:N) current, so that streams,
    events, graph captures, synchronize and TensorRT contexts made inside land on it; a null
    context on the CPU or without CUDA."""
    if not device.startswith("cuda") or not cuda_available():
        return contextlib.nullcontext()
    import torch

    return torch.cuda.device(device_index(device))


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
