"""The figures of a GPU check, from its CSV (tools/gpu_check.sh writes both).

    python tools/gpu_summary.py gpu_check.csv

Prints: resnet50 FP16 throughput at its best batch, as a share of the GPU's dense FP16 peak
(NVIDIA's datasheet figure, see /work/shared/REFERENCE.md) and of cnnbench's measured matmul
peak; CUDA-graph vs eager latency at batch 1; NVML vs torch device memory per cell.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from cnnbench.bench.results.files import read_rows
from cnnbench.values import num

#: dense FP16 tensor-core peaks in TFLOPS, NVIDIA datasheets (SXM parts)
DENSE_FP16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}


def _v(row: dict, key: str) -> float:
    """A number from the row, NaN where blank (so a missing figure prints as nan)."""
    x = num(row.get(key))
    return float(x) if x is not None else math.nan


def _gpu(row: dict) -> str:
    import json

    info = json.loads(row.get("engine_info") or "{}")
    return str(info.get("gpu") or "")


def _graphs(row: dict) -> bool:
    return "cuda_graphs=true" in str(row.get("engine_options") or "")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: gpu_summary.py RESULTS.csv", file=sys.stderr)
        return 2
    rows = [r for r in read_rows(Path(argv[0])) if not r.get("error")]
    failed = [r for r in read_rows(Path(argv[0])) if r.get("error")]
    print(f"{len(rows)} measured cell(s), {len(failed)} failed")
    for r in failed:
        print(f"  failed: {r['model']} {r['precision']} b{r['batch']}: {r['error']}")
    r50 = [
        r for r in rows if r["model"] == "resnet50" and r["precision"] == "fp16" and not _graphs(r)
    ]
    if r50:
        best = max(r50, key=lambda r: num(r.get("throughput_ips")) or 0)
        ips, macs = _v(best, "throughput_ips"), _v(best, "macs")
        gpu = _gpu(best)
        tflops = 2 * macs * ips / 1e12
        peak = next((v for k, v in DENSE_FP16_TFLOPS.items() if k in gpu), None)
        share = (
            f"{100 * tflops / peak:.1f}% of the dense FP16 peak ({peak:.0f} TFLOPS)"
            if peak
            else f"no datasheet peak known for {gpu!r}"
        )
        eff = num(best.get("efficiency"))
        peak_tflops = _v(best, "peak_gmacs_per_s") * 2 / 1e3
        print(
            f"resnet50 fp16 best: batch {best['batch']}, {ips:,.0f} img/s, {tflops:.1f} TFLOPS = {share}; "
            f"{100 * eff:.1f}% of the measured matmul peak ({peak_tflops:.0f} TFLOPS)"
            if eff
            else f"resnet50 fp16 best: batch {best['batch']}, {ips:,.0f} img/s, {tflops:.1f} TFLOPS = {share}"
        )
    for model in ("resnet18", "resnet50"):
        for prec in ("fp32", "fp16", "bf16"):
            b1 = [
                r
                for r in rows
                if r["model"] == model and r["precision"] == prec and num(r["batch"]) == 1
            ]
            eager = [r for r in b1 if not _graphs(r)]
            graphs = [r for r in b1 if _graphs(r)]
            if eager and graphs:
                e, g = eager[0], graphs[0]
                print(
                    f"{model} {prec} b1: eager p50 {_v(e, 'latency_ms_p50'):.3f} ms, CUDA graphs "
                    f"{_v(g, 'latency_ms_p50'):.3f} ms (eager/graphs {_v(e, 'latency_ms_p50') / _v(g, 'latency_ms_p50'):.2f}x; "
                    f"device-only {_v(e, 'device_latency_ms_p50'):.3f} vs {_v(g, 'device_latency_ms_p50'):.3f} ms)"
                )
    print("device memory (MB): headline [source] vs torch max_memory_allocated")
    for r in rows:
        dev, tm = num(r.get("device_mem_peak_mb")), num(r.get("torch_cuda_max_allocated_mb"))
        ratio = f" ({dev / tm:.1f}x)" if dev and tm else ""
        print(
            f"  {r['model']} {r['precision']} b{r['batch']}{' graphs' if _graphs(r) else ''}: "
            f"{dev} [{r.get('device_mem_source')}] vs torch {tm}{ratio}; "
            f"energy {r.get('energy_mj_per_image')} mJ/img [{r.get('energy_source') or r.get('energy_note')}]"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
