"""tools/gpu_check.sh without a GPU, its rehearsal's environment, and its summary on rows shaped
like a GPU run's (the figures are made up here; only a GPU machine makes real ones)."""

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


def test_gpu_check_refuses_an_unknown_argument(tmp_path: Path) -> None:
    res = subprocess.run(
        ["bash", str(ROOT / "bench/scripts/gpu_check.sh"), "--rehears"],
        capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path)},
    )  # fmt: skip
    assert res.returncode == 2 and "usage: bash tools/gpu_check.sh [--rehearse]" in res.stderr
    assert not list(tmp_path.iterdir())


def test_the_rehearsal_environment_is_the_device_image_with_cpu_torch(tmp_path: Path) -> None:
    image = tmp_path / "device-image.txt"
    image.write_text(
        "# comment\ntorch==2.11.0            # CUDA 13.0 build there\nnumpy                    "
        "# 2.5.2 there\nonnx==1.23.1\nnvidia-ml-py\n#   sqlalchemy, onnxslim\n"
    )
    res = subprocess.run(
        [sys.executable, str(ROOT / "tools/ci/device_image.py"), str(image)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    numpy = "numpy<2.5" if sys.version_info < (3, 12) else "numpy"
    assert res.stdout.split() == ["torch==2.13.0", numpy, "onnx==1.23.1", "nvidia-ml-py"]


def test_the_repository_copy_of_the_device_image_is_current() -> None:
    shared = ROOT.parent / "shared" / "device-image.txt"
    if not shared.is_file():
        pytest.skip(f"{shared} is not beside this checkout")
    assert (ROOT / "tools/ci/device-image.txt").read_text() == shared.read_text()


def _rows(csv: Path) -> None:
    info = json.dumps({"gpu": "NVIDIA H100 80GB HBM3"})
    base = {"engine": "torch", "device": "cuda", "scenario": "offline", "engine_info": info,
            "model": "resnet50", "precision": "fp16", "macs": 4.1e9, "error": None,
            "torch_cuda_max_allocated_mb": 500.0, "device_mem_peak_mb": 1500.0,
            "device_mem_source": "NVML process peak (sampled)", "energy_mj_per_image": 0.5,
            "energy_source": "NVML total energy counter"}  # fmt: skip
    cells = (  # batch, timing, img/s, host p50, device p50, options
        (1, "gpu_compute", 1500.0, 0.66, 0.6, "cuda_graphs=true"),
        (256, "gpu_compute", 30000.0, 8.5, 8.4, "cuda_graphs=true"),
        (1, "gpu_compute", 900.0, 1.1, 0.9, "cuda_graphs=false"),
        (256, "end_to_end", 12000.0, 21.0, 8.5, None),
    )
    for batch, timing, ips, p50, dev, opts in cells:
        append_row(csv, {**base, "batch": batch, "timing_mode": timing, "throughput_ips": ips,
                         "latency_ms_p50": p50, "device_latency_ms_p50": dev,
                         "engine_options": opts})  # fmt: skip


def test_gpu_summary_reads_the_figures(tmp_path: Path) -> None:
    csv = tmp_path / "g.csv"
    _rows(csv)
    res = subprocess.run(
        [sys.executable, str(ROOT / "tools/gpu_summary.py"), str(csv)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = res.stdout
    header = next(line for line in out.splitlines() if line.startswith("cell"))
    for col in ("host p50 ms", "dev p50 ms", "img/s", "timing", "% dense peak", "mem MB",
                "mem source", "torch MB", "mJ/img", "energy source"):  # fmt: skip
        assert col in header
    # 2 x 4.1e9 x 30000 = 246 TFLOPS, 24.9 % of 989
    assert (
        "gpu_compute best: batch 256, 30,000 img/s = 246.0 TFLOPS = 24.9% of the dense FP16" in out
    )
    assert "eager/graphs 1.67x" in out
    assert "b256: end_to_end 12,000 img/s, gpu_compute 30,000 img/s (graphs)" in out
    assert "device figure / torch max_allocated 3.00x to 3.00x" in out


def test_gpu_summary_of_nothing_measured_fails(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "tools/gpu_summary.py"), str(tmp_path / "none.csv")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 1 and "no cell was measured" in res.stderr
