"""The GPU claims, tested on a GPU (``pytest -m gpu``): CUDA-event timing, NVML memory and
energy, ``run_cell`` on CUDA at each precision and with CUDA graphs, FP32 parity with TF32 off.

This module imports nothing beyond what a bare GPU machine has (torch, numpy, nvidia-ml-py,
onnx): ``tools/gpu_check.sh`` runs it there. Without a GPU every test skips, saying so.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def torch() -> Any:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here (torch.cuda.is_available() is False)")
    return torch


@pytest.fixture(scope="module")
def nvml(torch: Any) -> Any:
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed")
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        pytest.skip(f"NVML does not start here: {exc}")
    yield pynvml
    pynvml.nvmlShutdown()


def _stop() -> Any:
    from cnnbench.bench.measure.timing import StopRule

    return StopRule(warmup_count=10, warmup_time=0.5, min_count=100, min_time=1.0, max_time=10)


def _resnet18(torch: Any, precision: str, graphs: bool = False, batch: int = 8) -> Any:
    from cnnbench.batch import BatchRange
    from cnnbench.engines import create
    from cnnbench.engines.base import EngineOptions
    from tests.engines.conftest import artifact

    eng = create("torch", EngineOptions(device="cuda", extra={"cuda_graphs": graphs}))
    eng.load(artifact("resnet18", precision), BatchRange.fixed(batch))
    return eng


def test_cuda_event_timer_agrees_with_a_pipelined_event_measurement(torch: Any) -> None:
    from cnnbench.bench.measure.cuda_timing import measure_cuda
    from tests.engines.conftest import inputs

    x = inputs("resnet18", batch=32)
    with _resnet18(torch, "fp16", batch=32) as eng:
        timing = measure_cuda(eng, x, _stop())
        per_query = float(np.median(timing.device_samples_ns)) / 1e6  # ms
        # the same work, 200 runs back to back between two events: no host gaps at all
        staged = eng.stage(x)
        stream = eng.stream
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        eng.synchronize()
        start.record(stream)
        for _ in range(200):
            eng.run(staged)
        end.record(stream)
        end.synchronize()
        pipelined = start.elapsed_time(end) / 200
    ratio = per_query / pipelined
    # one query's events include its launch latency; the pipelined mean hides it
    assert 0.8 <= ratio <= 1.5, (per_query, pipelined)


def test_nvml_sampler_sees_a_4_gib_allocation(torch: Any, nvml: Any) -> None:
    import time

    from cnnbench.bench.measure.memory import NvmlSampler
    from cnnbench.engines.cuda import cuda_ids

    torch.cuda.init()
    sampler = NvmlSampler(0, ids=cuda_ids(0)).baseline()
    with sampler:
        buf = torch.empty(4 << 30, dtype=torch.uint8, device="cuda")
        buf.fill_(1)
        torch.cuda.synchronize()
        time.sleep(0.1)  # a few samples while it is held
        del buf
        torch.cuda.empty_cache()
    assert sampler.match in ("uuid", "pci bus id"), sampler.match
    assert sampler.device_used_increase_mb is not None
    assert sampler.device_used_increase_mb >= 4096 * 0.99, sampler.device_used_increase_mb
    if sampler.process_peak_mb is not None:  # NVML lists our PID (not in every container)
        assert sampler.process_peak_mb >= 4096 * 0.99


@pytest.mark.parametrize(
    ("precision", "graphs"), [("fp32", False), ("fp16", False), ("bf16", False), ("fp16", True)]
)
def test_run_cell_on_cuda(torch: Any, tmp_path: Any, precision: str, graphs: bool) -> None:
    from cnnbench.bench.run.cell import run_cell
    from cnnbench.bench.run.cell_spec import CellSpec

    spec = CellSpec.create(
        "resnet18", "torch", precision=precision, batch=8, device="cuda", stop=_stop(),
        artifacts=str(tmp_path), engine_options={"cuda_graphs": graphs},
    )  # fmt: skip
    row = run_cell(spec)
    assert row["error"] is None
    assert row["effective_precision"] == precision
    assert row["throughput_ips"] > 0 and row["device_latency_ms_p50"] > 0
    assert row["device_timing_method"].startswith("CUDA events")
    assert row["device_mem_peak_mb"] and row["device_mem_source"]
    assert row["torch_cuda_max_allocated_mb"] > 0
    assert row["energy_mj_per_image"] is None or row["energy_mj_per_image"] > 0
    assert row["energy_source"] or row["energy_note"]
    if precision == "fp32":
        assert '"tf32": false' in row["engine_info"]
    assert '"cuda_graphs": %s' % ("true" if graphs else "false") in row["engine_info"]


def test_fp32_parity_at_1e_5_with_tf32_off(torch: Any) -> None:
    from cnnbench.export.parity import FP32_GATE
    from cnnbench.export.parity import compare as parity
    from tests.engines.conftest import inputs, reference

    x = inputs("resnet18", batch=8)
    ref = reference("resnet18", x)
    from cnnbench.engines.cuda import tf32_enabled

    with _resnet18(torch, "fp32") as eng:
        # never the legacy allow_tf32 flags: on torch >= 2.9 they raise once fp32_precision is set
        assert tf32_enabled(torch) is False
        out = eng.infer(x)
    report = parity(ref, out, FP32_GATE)
    assert report, report


def test_gpu_energy_counter_moves(torch: Any, nvml: Any) -> None:
    from cnnbench.bench.measure.energy import EnergyMeter
    from cnnbench.engines.cuda import cuda_ids

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    meter = EnergyMeter("cuda", cuda_index=0, ids=cuda_ids(0))
    meter.start()
    for _ in range(200):
        a @ a
    torch.cuda.synchronize()
    meter.stop()
    f = meter.fields(images=200)
    assert f["energy_j"] and f["energy_j"] > 0, f
    assert f["energy_source"], f


def test_nvml_matches_the_device_torch_uses(torch: Any, nvml: Any) -> None:
    from cnnbench.bench.measure.memory import nvml_handle
    from cnnbench.engines.cuda import cuda_ids

    ids = cuda_ids(0)
    assert ids is not None and ids.uuid
    handle, how = nvml_handle(nvml, 0, ids)
    name = nvml.nvmlDeviceGetName(handle)
    name = name.decode() if isinstance(name, bytes) else name
    assert how in ("uuid", "pci bus id")
    assert name == torch.cuda.get_device_name(0), (name, os.environ.get("CUDA_VISIBLE_DEVICES"))
