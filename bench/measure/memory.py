"""Memory figures, each named for what it measures.

Host: the peak resident set size of the measuring process. On Linux the kernel's high-water
mark (``VmHWM``) is reset at the start of a cell by writing ``5`` to ``/proc/self/clear_refs``,
so the figure covers that cell only (loading + measuring); where the reset is not allowed it
is ``ru_maxrss``, the peak over the process's whole life (``host_peak_rss_scope`` says which).

GPU: a thread samples NVML every few milliseconds during the run for this process's used
device memory (and the device's total used memory, which containers that hide PIDs still show);
torch's ``max_memory_allocated`` and the engine's own figures are reported beside them.
"""

from __future__ import annotations

import contextlib
import os
import resource
import threading
from typing import Any

import psutil

from cnnbench.engines.cuda import CudaIds
from cnnbench.values import mib

_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"


def _status_kb(field: str) -> float | None:
    try:
        with open(_STATUS, encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def reset_host_peak() -> str:
    """Reset the process's peak-RSS mark; returns the scope the next reading will cover."""
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as fh:
            fh.write("5")
        return "cell (VmHWM reset at cell start)"
    except OSError:
        return "process lifetime (ru_maxrss)"


def host_peak_rss_mb() -> float:
    """Peak RSS of this process in MB since the last reset (or since it started)."""
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KB on Linux
    return round(kb / 1024.0, 3)


def host_rss_mb() -> float:
    """Current RSS of this process in MB."""
    kb = _status_kb("VmRSS")
    if kb is None:
        return mib(psutil.Process().memory_info().rss)
    return round(kb / 1024.0, 3)


def nvml_handle(nv: Any, cuda_index: int, ids: CudaIds | None = None) -> tuple[Any, str]:
    """The NVML handle of CUDA device ``cuda_index`` and how it was matched.

    NVML numbers GPUs in PCI order and ignores ``CUDA_VISIBLE_DEVICES``; CUDA numbers the
    visible GPUs, fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``. So the CUDA index is
    matched by the device's UUID, else its PCI bus id (both from the CUDA runtime), else through
    ``CUDA_VISIBLE_DEVICES``; the bare index is the last resort, and the row says so.
    """
    if ids is not None and ids.uuid:
        uuid = ids.uuid if ids.uuid.startswith(("GPU-", "MIG-")) else f"GPU-{ids.uuid}"
        with contextlib.suppress(Exception):
            return nv.nvmlDeviceGetHandleByUUID(uuid), "uuid"
    if ids is not None and ids.pci_bus_id:
        with contextlib.suppress(Exception):
            return nv.nvmlDeviceGetHandleByPciBusId(ids.pci_bus_id), "pci bus id"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [e.strip() for e in visible.split(",") if e.strip()]
        if cuda_index < len(entries):
            entry = entries[cuda_index]
            if entry.isdigit():
                return nv.nvmlDeviceGetHandleByIndex(int(entry)), "CUDA_VISIBLE_DEVICES"
            return nv.nvmlDeviceGetHandleByUUID(entry), "CUDA_VISIBLE_DEVICES"
    return nv.nvmlDeviceGetHandleByIndex(cuda_index), "index (assumes PCI order)"


class NvmlSampler:
    """Samples NVML device memory in a background thread while the run is measured.

    Call :meth:`baseline` before the engine loads, then use the sampler as a context manager
    around the measurement. After exit:

    - ``process_peak_mb``: this process's peak used device memory (None where NVML does not
      list our PID, as in many containers);
    - ``device_used_peak_mb``: the whole device's peak used memory (other processes included);
    - ``device_used_increase_mb``: that peak minus the device's used memory at the baseline,
      i.e. what loading and running added (the CUDA context included), whatever allocated it.

    Without ``nvidia-ml-py`` or a driver all stay None and ``error`` says why.
    """

    def __init__(
        self, device_index: int = 0, interval_s: float = 0.005, ids: CudaIds | None = None
    ) -> None:
        self.index = device_index
        self.interval = interval_s
        self.ids = ids
        self.process_peak_mb: float | None = None
        self.device_used_peak_mb: float | None = None
        self.baseline_mb: float | None = None
        self.match: str | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml: Any = None
        self._handle: Any = None

    @property
    def device_used_increase_mb(self) -> float | None:
        if self.baseline_mb is None or self.device_used_peak_mb is None:
            return None
        return round(max(self.device_used_peak_mb - self.baseline_mb, 0.0), 3)

    def _open(self) -> bool:
        if self._nvml is not None:
            return True
        if self.error is not None:
            return False
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle, self.match = nvml_handle(pynvml, self.index, self.ids)
        except Exception as exc:  # ImportError, NVMLError_*: any means "no NVML figures"
            self.error = f"NVML unavailable: {type(exc).__name__}: {exc}".strip()
            self._nvml = None
            return False
        return True

    def baseline(self) -> NvmlSampler:
        """Read the device's used memory now (before the engine loads)."""
        if self._open():
            try:
                self.baseline_mb = mib(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
            except Exception as exc:
                self.error = f"NVML baseline failed: {exc}"
        return self

    def __enter__(self) -> NvmlSampler:
        if not self._open():
            return self
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="nvml-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        nv, h = self._nvml, self._handle
        try:
            used = mib(nv.nvmlDeviceGetMemoryInfo(h).used)
            self.device_used_peak_mb = max(self.device_used_peak_mb or 0.0, used)
            pid = os.getpid()
            for p in nv.nvmlDeviceGetComputeRunningProcesses(h):
                if p.pid == pid and p.usedGpuMemory is not None:
                    mb = mib(p.usedGpuMemory)
                    self.process_peak_mb = max(self.process_peak_mb or 0.0, mb)
        except Exception as exc:  # a driver hiccup must not kill the measurement
            self.error = f"NVML sampling failed: {exc}"

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._sample()
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None


def torch_cuda_reset_peak(device_index: int) -> None:
    """Reset torch's peak allocation counter (no-op without torch CUDA)."""
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats(device_index)
    except ImportError:
        pass


def torch_cuda_max_allocated_mb(device_index: int) -> float | None:
    """torch's max allocated CUDA memory in MB since the last reset (None without torch CUDA)."""
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return mib(torch.cuda.max_memory_allocated(device_index))
    except ImportError:
        pass
    return None


#: the sources of ``device_mem_peak_mb``, best first (``device_mem_source`` names the one used)
SOURCE_NVML_PROCESS = "NVML process peak (sampled)"
SOURCE_NVML_INCREASE = "NVML device used, increase over the pre-load baseline"
SOURCE_TORCH = "torch max_memory_allocated"


def device_memory_fields(
    sampler: NvmlSampler | None,
    torch_max_mb: float | None,
    engine_mem: dict[str, float],
    *,
    torch_allocates: bool = False,
) -> dict[str, Any]:
    """Row fields for device memory, and ``device_mem_peak_mb`` with its source named.

    The headline is NVML's figure for this process, else NVML's device-used increase over the
    baseline taken before load. torch's ``max_memory_allocated`` stands in only for an engine
    whose memory torch allocates (``torch_allocates``): for TensorRT or ONNX Runtime it sees
    only the I/O buffers, so it is reported beside, never as, the cell's device memory.
    """
    fields: dict[str, Any] = {f"engine_mem_{k}": v for k, v in engine_mem.items()}
    fields["gpu_nvml_process_peak_mb"] = sampler.process_peak_mb if sampler else None
    fields["gpu_nvml_device_used_peak_mb"] = sampler.device_used_peak_mb if sampler else None
    fields["gpu_nvml_baseline_mb"] = sampler.baseline_mb if sampler else None
    fields["gpu_nvml_device_used_increase_mb"] = (
        sampler.device_used_increase_mb if sampler else None
    )
    fields["nvml_device_match"] = sampler.match if sampler else None
    fields["torch_cuda_max_allocated_mb"] = torch_max_mb
    if sampler and sampler.error:
        fields["nvml_note"] = sampler.error
    candidates = [
        ("gpu_nvml_process_peak_mb", SOURCE_NVML_PROCESS),
        ("gpu_nvml_device_used_increase_mb", SOURCE_NVML_INCREASE),
    ]
    if torch_allocates:
        candidates.append(("torch_cuda_max_allocated_mb", SOURCE_TORCH))
    for key, source in candidates:
        if fields[key] is not None:
            fields["device_mem_peak_mb"] = round(float(fields[key]), 3)
            fields["device_mem_source"] = source
            return fields
    fields["device_mem_peak_mb"] = None
    fields["device_mem_source"] = None
    return fields
