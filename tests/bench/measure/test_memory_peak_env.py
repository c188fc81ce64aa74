from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from cnnbench.bench.measure import memory, peak
from cnnbench.bench.measure.environment import capture, env_fields
from cnnbench.engines.cuda import CudaIds
from cnnbench.precision import Precision


def test_host_peak_covers_an_allocation_after_reset() -> None:
    scope = memory.reset_host_peak()
    before = memory.host_peak_rss_mb()
    buf = np.ones(100 * 2**20 // 8)  # 100 MB, touched
    after = memory.host_peak_rss_mb()
    del buf
    assert after - before >= 90
    assert memory.host_rss_mb() > 0
    if scope.startswith("cell"):
        memory.reset_host_peak()
        assert memory.host_peak_rss_mb() < after - 50  # the reset really lowered the mark


def test_device_memory_source_is_named() -> None:
    class S:
        process_peak_mb = None
        device_used_peak_mb = 900.0
        baseline_mb = 500.0
        device_used_increase_mb = 400.0
        match = "uuid"
        error = None

    f = memory.device_memory_fields(S(), 123.0, {"engine_device_mb": 50.0})  # type: ignore[arg-type]
    assert f["device_mem_peak_mb"] == 400.0
    assert f["device_mem_source"] == memory.SOURCE_NVML_INCREASE
    assert f["engine_mem_engine_device_mb"] == 50.0
    assert f["torch_cuda_max_allocated_mb"] == 123.0  # reported beside, not as the headline
    S.process_peak_mb = 200.0
    f = memory.device_memory_fields(S(), 123.0, {})  # type: ignore[arg-type]
    assert f["device_mem_source"].startswith("NVML process peak")
    assert memory.device_memory_fields(None, None, {})["device_mem_peak_mb"] is None


def test_torch_allocated_memory_never_stands_for_another_engines() -> None:
    # bug 6: without NVML's PID, TensorRT's memory was torch's max_memory_allocated: only the
    # I/O buffers. Now that figure stands in for the torch engine's memory alone.
    class S:
        process_peak_mb = device_used_peak_mb = baseline_mb = device_used_increase_mb = None
        match = None
        error = "NVML unavailable"

    trt = memory.device_memory_fields(S(), 3.0, {"engine_device_memory_mb": 900.0})  # type: ignore[arg-type]
    assert trt["device_mem_peak_mb"] is None and trt["device_mem_source"] is None
    assert trt["torch_cuda_max_allocated_mb"] == 3.0
    tch = memory.device_memory_fields(S(), 3.0, {}, torch_allocates=True)  # type: ignore[arg-type]
    assert tch["device_mem_peak_mb"] == 3.0
    assert tch["device_mem_source"] == memory.SOURCE_TORCH


class _FakeNvml:
    """pynvml's calls that the sampler makes, over a few GPUs in NVML's (PCI) order."""

    def __init__(self, uuids: list[str], used: list[int], procs: dict[int, list[Any]]) -> None:
        self.uuids, self.used, self.procs = uuids, used, procs
        self.opened = self.closed = 0

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        self.opened += 1

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.closed += 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:  # noqa: N802
        if not 0 <= i < len(self.uuids):
            raise RuntimeError("NVML_ERROR_INVALID_ARGUMENT")
        return i

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> int:  # noqa: N802
        return self.uuids.index(uuid)

    def nvmlDeviceGetHandleByPciBusId(self, bus: str) -> int:  # noqa: N802
        raise RuntimeError("not in this fake")

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:  # noqa: N802
        return SimpleNamespace(used=self.used[h])

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:  # noqa: N802
        return self.procs.get(h, [])


def test_nvml_finds_the_cuda_device_by_uuid_not_by_index(monkeypatch: pytest.MonkeyPatch) -> None:
    # bug 5: CUDA_VISIBLE_DEVICES=2 makes NVML's GPU 2 torch's cuda:0
    fake = _FakeNvml(["GPU-a", "GPU-b", "GPU-c"], [1 << 30, 2 << 30, 3 << 30], {})
    h, how = memory.nvml_handle(fake, 0, CudaIds("c", None))
    assert (h, how) == (2, "uuid")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert memory.nvml_handle(fake, 1, None) == (0, "CUDA_VISIBLE_DEVICES")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-b")
    assert memory.nvml_handle(fake, 0, None) == (1, "CUDA_VISIBLE_DEVICES")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert memory.nvml_handle(fake, 1, None) == (1, "index (assumes PCI order)")


def test_nvml_sampler_reports_the_increase_over_the_preload_baseline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _FakeNvml(["GPU-a", "GPU-b"], [1 << 30, 2 << 30], {})
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    s = memory.NvmlSampler(0, interval_s=0.001, ids=CudaIds("b", None)).baseline()
    assert s.baseline_mb == 2048.0 and s.match == "uuid"
    fake.used[1] += 3 << 30  # the engine loads: 3 GiB more on the device we use
    fake.procs[1] = [SimpleNamespace(pid=os.getpid(), usedGpuMemory=None)]  # PID hidden
    with s:
        time.sleep(0.01)
    assert s.device_used_peak_mb == 5120.0 and s.device_used_increase_mb == 3072.0
    assert s.process_peak_mb is None
    f = memory.device_memory_fields(s, 1.0, {})
    assert (f["device_mem_peak_mb"], f["device_mem_source"]) == (
        3072.0,
        memory.SOURCE_NVML_INCREASE,
    )
    assert fake.opened == 1 and fake.closed == 1


def test_nvml_sampler_without_nvml_reports_why() -> None:
    with memory.NvmlSampler() as s:
        pass
    if s.error is not None:
        assert s.process_peak_mb is None and "NVML" in s.error


def test_peak_is_cached_and_a_corrupt_entry_is_remeasured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(peak, "measure_peak", lambda d, p: calls.append((d, p)) or 42.0)
    first = peak.get_peak("cpu", Precision.FP32)
    assert first is not None and first.gmacs_per_s == 42.0 and not first.cached
    again = peak.get_peak("cpu", Precision.FP32)
    assert again is not None and again.cached and len(calls) == 1
    (entry,) = (tmp_path / "peak").glob("*.json")
    assert json.loads(entry.read_text())["key"]["dtype"] == "float32"
    entry.write_text("{not json")
    assert peak.get_peak("cpu", Precision.FP32).gmacs_per_s == 42.0  # type: ignore[union-attr]
    assert len(calls) == 2
    assert peak.get_peak("cpu", Precision.BF16, measure=False) is None


def test_the_peak_waits_for_the_measured_device_not_the_current_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # issue 26: torch.cuda.synchronize() without a device waits for the current device, not
    # cuda:N's work, so on cuda:1 the timed window closed before the matmuls had run.
    # A fake torch: it records what is synchronised (no GPU here).
    waited: list[Any] = []

    class _Tensor:
        def to(self, dtype: Any) -> _Tensor:
            return self

    fake = SimpleNamespace(
        device=lambda kind, index=None: (kind, index),
        randn=lambda *a, **k: _Tensor(),
        mm=lambda a, b: None,
        float16="float16",
        cuda=SimpleNamespace(synchronize=lambda device=None: waited.append(device)),
    )
    monkeypatch.setitem(sys.modules, "torch", fake)
    assert peak.measure_peak("cuda:1", Precision.FP16, seconds=0.003) > 0
    assert waited and set(waited) == {("cuda", 1)}


def test_real_peak_microbenchmark_is_positive() -> None:
    pytest.importorskip("torch")
    assert peak.measure_peak("cpu", Precision.FP32, seconds=0.2) > 0.1


def test_environment_block() -> None:
    env = capture()
    assert env["cpu"] and env["cpu_logical_cores"] >= 1
    assert env["python"].count(".") == 2
    assert env["numpy_version"] == np.__version__
    if env.get("git_commit"):
        assert re.fullmatch(r"[0-9a-f]{40}", env["git_commit"])
    assert all(k.startswith("env_") for k in env_fields())
