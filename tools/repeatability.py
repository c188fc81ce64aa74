"""Repeatability: the same resnet18 onnxruntime run five times in a row, each in a fresh process.

Prints each run's median latency (with its 95 % CI) and the spread of the medians:
(max - min) / median of medians, in percent. Goal <= 3 % on the 2-core machine.

    python tools/repeatability.py [--runs 5] [--min-time 5] [--scenario single-stream]
"""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import replace
from pathlib import Path

from cnnbench.bench.measure.timing import StopRule
from cnnbench.bench.run.cell_spec import CellSpec
from cnnbench.bench.run.child import run_isolated
from cnnbench.bench.run.prepare import ensure_onnx


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="resnet18")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--scenario", default="single-stream")
    p.add_argument("--min-time", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: cores)")
    p.add_argument("--artifacts", default="artifacts")
    a = p.parse_args()

    stop = StopRule(warmup_count=5, warmup_time=1.0, min_count=50, min_time=a.min_time,
                    max_time=max(60.0, a.min_time))  # fmt: skip
    spec = CellSpec.create(a.model, "onnxruntime", batch=a.batch, scenario=a.scenario,
                           stop=stop, threads=a.threads, artifacts=str(Path(a.artifacts)))  # fmt: skip
    onnx, sha = ensure_onnx(spec)
    spec = replace(spec, onnx_path=str(onnx), onnx_sha256=sha)
    medians = []
    for i in range(a.runs):
        row = run_isolated(spec, timeout_s=600)
        if row.get("error"):
            raise SystemExit(f"run {i + 1} failed: {row['error']}")
        medians.append(row["latency_ms_p50"])
        print(f"run {i + 1}: median {row['latency_ms_p50']:.3f} ms "
              f"(95% CI {row['latency_ms_median_ci_low']:.3f}-{row['latency_ms_median_ci_high']:.3f}), "
              f"p90 {row['latency_ms_p90']:.3f} ms, {row['samples']} samples, "
              f"load avg {row.get('env_loadavg_1m')}")  # fmt: skip
    mid = statistics.median(medians)
    spread = (max(medians) - min(medians)) / mid * 100
    print(f"{a.model} onnxruntime {a.scenario} batch {a.batch} threads {a.threads or 'all'}: spread of {a.runs} medians "
          f"{spread:.2f}% (max-min over median {mid:.3f} ms)  goal <= 3%: "
          f"{'PASS' if spread <= 3 else 'FAIL'}; load avg now {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs (shared machine)")  # fmt: skip


if __name__ == "__main__":
    main()
