"""tools/gpu_check.sh without a GPU, and its summary on rows shaped like a GPU run's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cnnbench.bench.results.files import append_row
from cnnbench.engines.cuda import cuda_available

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(cuda_available(), reason="this machine has a GPU: the check would run")
def test_gpu_check_without_a_gpu_exits_0_with_one_line(tmp_path: Path) -> None:
    res = subprocess.run(
        ["bash", str(ROOT / "tools/gpu_check.sh")],
        capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path)},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU" in lines[0]
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_gpu_summary_reads_the_figures(tmp_path: Path) -> None:
    csv = tmp_path / "g.csv"
    info = json.dumps({"gpu": "NVIDIA H200"})
    base = {"engine": "torch", "device": "cuda", "scenario": "offline", "engine_info": info,
            "macs": 4.1e9, "error": None, "torch_cuda_max_allocated_mb": 500.0,
            "device_mem_peak_mb": 1500.0, "device_mem_source": "NVML process peak (sampled)"}  # fmt: skip
    for batch, ips, p50, opts in ((1, 900.0, 1.1, None), (256, 30000.0, 8.5, None),
                                  (1, 1500.0, 0.66, "cuda_graphs=true")):  # fmt: skip
        append_row(csv, {**base, "model": "resnet50", "precision": "fp16", "batch": batch,
                         "throughput_ips": ips, "latency_ms_p50": p50, "engine_options": opts})  # fmt: skip
    res = subprocess.run(
        [sys.executable, str(ROOT / "tools/gpu_summary.py"), str(csv)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = res.stdout
    # 2 x 4.1e9 x 30000 = 246 TFLOPS, 24.9 % of 989
    assert "batch 256" in out and "24.9% of the dense FP16 peak" in out
    assert "eager/graphs 1.67x" in out
    assert "(3.0x)" in out
