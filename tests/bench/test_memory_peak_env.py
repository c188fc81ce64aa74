from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cnnbench.bench import memory, peak
from cnnbench.bench.environment import capture, env_fields


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
        error = None

    f = memory.device_memory_fields(S(), 123.0, {"engine_device_mb": 50.0})  # type: ignore[arg-type]
    assert f["device_mem_peak_mb"] == 123.0
    assert f["device_mem_source"] == "torch max_memory_allocated"
    assert f["engine_mem_engine_device_mb"] == 50.0
    S.process_peak_mb = 200.0
    f = memory.device_memory_fields(S(), 123.0, {})  # type: ignore[arg-type]
    assert f["device_mem_source"].startswith("NVML process peak")
    assert memory.device_memory_fields(None, None, {})["device_mem_peak_mb"] is None


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
    first = peak.get_peak("cpu", "fp32")
    assert first is not None and first.gmacs_per_s == 42.0 and not first.cached
    again = peak.get_peak("cpu", "fp32")
    assert again is not None and again.cached and len(calls) == 1
    (entry,) = (tmp_path / "peak").glob("*.json")
    assert json.loads(entry.read_text())["key"]["dtype"] == "float32"
    entry.write_text("{not json")
    assert peak.get_peak("cpu", "fp32").gmacs_per_s == 42.0  # type: ignore[union-attr]
    assert len(calls) == 2
    assert peak.get_peak("cpu", "bf16", measure=False) is None


def test_real_peak_microbenchmark_is_positive() -> None:
    pytest.importorskip("torch")
    assert peak.measure_peak("cpu", "fp32", seconds=0.2) > 0.1


def test_environment_block() -> None:
    env = capture()
    assert env["cpu"] and env["cpu_logical_cores"] >= 1
    assert env["python"].count(".") == 2
    assert env["numpy_version"] == np.__version__
    if env.get("git_commit"):
        assert re.fullmatch(r"[0-9a-f]{40}", env["git_commit"])
    assert all(k.startswith("env_") for k in env_fields())
