"""The harness's own cost, in two figures.

1. Null engine (returns a preallocated array): cnnbench's median time per inference is all
   harness overhead (the timed call into ``engine.infer`` plus two clock reads). Goal <= 5 us.
2. onnxruntime, LeNet-5, batch 1: cnnbench's median latency / the median of a plain loop
   timing ``session.run`` with ``perf_counter_ns`` (same ONNX file, same session options, same
   input). Rounds alternate the two so drift on a shared machine hits both. Goal <= 1.03.

    python tools/harness_overhead.py [--seconds 3] [--rounds 5] [--artifacts artifacts]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.bench.measure.timing import StopRule
from cnnbench.bench.run.cell import run_cell
from cnnbench.bench.run.cell_spec import CellSpec
from cnnbench.bench.run.prepare import ensure_onnx
from cnnbench.data.images import random_batches
from cnnbench.engines.onnxruntime_engine import physical_cores, session_options
from cnnbench.models import get_spec


def null_overhead(seconds: float) -> dict[str, float]:
    stop = StopRule(warmup_count=1000, warmup_time=0.2, min_count=1000, min_time=seconds)
    row = run_cell(CellSpec.create("lenet5", "null", scenario="single-stream", stop=stop))
    return {
        "median_us": row["latency_ms_p50"] * 1e3,
        "p99_us": row["latency_ms_p99"] * 1e3,
        "loop_wall_per_inference_us": row["wall_s"] / row["samples"] * 1e6,
        "samples": row["samples"],
    }


def plain_loop_median_ms(onnx: Path, x: np.ndarray, seconds: float, threads: int) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(
        str(onnx), session_options(threads), providers=["CPUExecutionProvider"]
    )
    name, out = sess.get_inputs()[0].name, [sess.get_outputs()[0].name]
    feed = {name: x}
    for _ in range(50):
        sess.run(out, feed)
    clock = time.perf_counter_ns
    samples = []
    end = clock() + int(seconds * 1e9)
    while True:
        t0 = clock()
        sess.run(out, feed)
        t1 = clock()
        samples.append(t1 - t0)
        if t1 >= end:
            break
    return float(np.median(samples)) / 1e6


def ort_ratio(artifacts: Path, seconds: float, rounds: int) -> dict[str, Any]:
    x = random_batches(get_spec("lenet5"), count=1, batch=1, seed=0)[0]
    threads = physical_cores()
    stop = StopRule(warmup_count=50, warmup_time=0.2, min_count=100, min_time=seconds)
    spec = CellSpec.create("lenet5", "onnxruntime", scenario="single-stream", stop=stop,
                           threads=threads, artifacts=str(artifacts))  # fmt: skip
    onnx, sha = ensure_onnx(spec)
    spec = replace(spec, onnx_path=str(onnx), onnx_sha256=sha)
    ours, plain = [], []
    for _ in range(rounds):
        plain.append(plain_loop_median_ms(onnx, x, seconds, threads))
        ours.append(run_cell(spec)["latency_ms_p50"])
    ratios = [a / b for a, b in zip(ours, plain, strict=True)]
    return {
        "cnnbench_median_ms": statistics.median(ours),
        "plain_median_ms": statistics.median(plain),
        "ratio_of_medians": statistics.median(ours) / statistics.median(plain),
        "per_round_ratios": [round(r, 4) for r in ratios],
        "threads": threads,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--artifacts", default="artifacts")
    a = p.parse_args()
    load = os.getloadavg()[0]
    n = null_overhead(a.seconds)
    print(f"null engine: median {n['median_us']:.3f} us per inference (p99 {n['p99_us']:.3f} us; "
          f"loop wall {n['loop_wall_per_inference_us']:.3f} us/inference over {n['samples']:,} "
          f"samples)  goal <= 5 us: {'PASS' if n['median_us'] <= 5 else 'FAIL'}")  # fmt: skip
    r = ort_ratio(Path(a.artifacts), a.seconds, a.rounds)
    print(f"onnxruntime lenet5 batch 1 ({r['threads']} threads): cnnbench median "
          f"{r['cnnbench_median_ms'] * 1e3:.2f} us, plain loop median {r['plain_median_ms'] * 1e3:.2f} us, "
          f"ratio {r['ratio_of_medians']:.4f} (per round {r['per_round_ratios']})  goal <= 1.03: "
          f"{'PASS' if r['ratio_of_medians'] <= 1.03 else 'FAIL'}")  # fmt: skip
    print(
        f"load average (1 min) at start {load:.2f}, at end {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} CPUs (the machine is shared)"
    )


if __name__ == "__main__":
    main()
