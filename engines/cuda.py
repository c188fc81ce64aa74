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


#: how TF32 was set before :func:`strict_fp32`: ("new", matmul, conv) with torch's
#: ``fp32_precision`` words, or ("legacy", matmul, conv) with the ``allow_tf32`` flags
Tf32State = tuple[str, Any, Any]


def _precision_api(torch_module: Any) -> bool:
    """Whether this torch has the ``fp32_precision`` settings (2.9 on). Where it has them, the
    legacy ``allow_tf32`` flags must not be read: once anything has set a ``fp32_precision``,
    reading ``cudnn.allow_tf32`` raises (its conv and RNN settings may differ)."""
    b = torch_module.backends
    conv = getattr(getattr(b, "cudnn", None), "conv", None)
    matmul = getattr(getattr(b, "cuda", None), "matmul", None)
    return hasattr(conv, "fp32_precision") and hasattr(matmul, "fp32_precision")


def _resolved(*levels: Any) -> str:
    """The effective ``fp32_precision``: the first level (most specific first) not "none"."""
    for level in levels:
        word = str(getattr(level, "fp32_precision", "none") or "none")
        if word != "none":
            return word
    return "ieee"  # nothing set anywhere: torch computes FP32 as FP32


def tf32_enabled(torch_module: Any) -> bool:
    """Whether cuBLAS matmuls or cuDNN convolutions may compute FP32 in TF32 now."""
    b = torch_module.backends
    if _precision_api(torch_module):
        matmul = _resolved(b.cuda.matmul, b)
        conv = _resolved(b.cudnn.conv, b.cudnn, b)
        return "tf32" in (matmul, conv)
    return bool(b.cuda.matmul.allow_tf32 or b.cudnn.allow_tf32)


def strict_fp32(torch_module: Any) -> Tf32State:
    """FP32 means FP32: turn off TF32 in cuBLAS matmuls and cuDNN convolutions (torch's cuDNN
    default is on) and return the previous settings, for :func:`restore_tf32`. Through the
    ``fp32_precision`` settings where torch has them, else the ``allow_tf32`` flags."""
    b = torch_module.backends
    if _precision_api(torch_module):
        before: Tf32State = ("new", b.cuda.matmul.fp32_precision, b.cudnn.conv.fp32_precision)
        b.cuda.matmul.fp32_precision = "ieee"
        b.cudnn.conv.fp32_precision = "ieee"
        return before
    before = ("legacy", bool(b.cuda.matmul.allow_tf32), bool(b.cudnn.allow_tf32))
    b.cuda.matmul.allow_tf32 = False
    b.cudnn.allow_tf32 = False
    return before


def restore_tf32(torch_module: Any, before: Tf32State) -> None:
    """Put back what :func:`strict_fp32` found."""
    b = torch_module.backends
    api, matmul, conv = before
    if api == "new":
        b.cuda.matmul.fp32_precision, b.cudnn.conv.fp32_precision = matmul, conv
    else:
        b.cuda.matmul.allow_tf32, b.cudnn.allow_tf32 = matmul, conv
