"""The figures of a GPU check, from its CSV (tools/gpu_check.sh writes both).

    python tools/gpu_summary.py gpu_check.csv

Prints one table, a row per measured cell: host and device latency (p50), throughput and the
timing mode it comes from, the share of the GPU's dense peak for the cell's precision
(NVIDIA's datasheet figure), the share of cnnbench's measured matmul peak, device memory with
its source beside torch's own figure, and energy per image with its source. Then the figures a
closing note needs: resnet50 FP16 gpu_compute throughput at its best batch as a share of the
dense FP16 peak; CUDA graphs against eager at batch 1; gpu_compute against end_to_end (what the
copies cost); NVML against torch memory. A figure that was not measured says so. Exit status:
0 when the file has at least one measured row, 1 otherwise, 2 on bad usage.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from cnnbench.bench.results.files import read_rows
from cnnbench.values import num

#: dense (no sparsity) tensor-core peaks in TFLOPS (TOPS for int8), and FP32 on the CUDA cores
#: (what FP32 computes on with TF32 off, as cnnbench runs it), from NVIDIA's datasheets; the
#: first name found in the GPU's name wins, so the longer names come first
DENSE_PEAKS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H100 PCIe", {"fp16": 756.0, "bf16": 756.0, "fp8": 1513.0, "int8": 1513.0, "fp32": 51.0}),
    ("H100", {"fp16": 989.0, "bf16": 989.0, "fp8": 1979.0, "int8": 1979.0, "fp32": 67.0}),
    ("H200", {"fp16": 989.0, "bf16": 989.0, "fp8": 1979.0, "int8": 1979.0, "fp32": 67.0}),
    ("A100", {"fp16": 312.0, "bf16": 312.0, "int8": 624.0, "fp32": 19.5}),
    ("L40S", {"fp16": 362.0, "bf16": 362.0, "fp8": 733.0, "int8": 733.0, "fp32": 91.6}),
)
COLUMNS = (
    ("cell", "cell"), ("timing", "timing"), ("host p50 ms", "host"), ("dev p50 ms", "dev"),
    ("img/s", "ips"), ("% dense peak", "dense"), ("% matmul", "eff"), ("mem MB", "mem"),
    ("mem source", "mem_src"), ("torch MB", "torch"), ("mJ/img", "mj"),
    ("energy source", "energy_src"),
)  # fmt: skip


def _v(row: dict[str, Any], key: str) -> float:
    """A number from the row, NaN where blank (so a missing figure prints as -)."""
    x = num(row.get(key))
    return float(x) if x is not None else math.nan


def _fmt(x: float, digits: int = 3) -> str:
    return "-" if math.isnan(x) else f"{x:,.{digits}f}"


def gpu_name(row: dict[str, Any]) -> str:
    try:
        info = json.loads(row.get("engine_info") or "{}")
    except ValueError:
        return ""
    return str(info.get("gpu") or "")


def graphs(row: dict[str, Any]) -> bool:
    return "cuda_graphs=true" in str(row.get("engine_options") or "")


def dense_peak(row: dict[str, Any]) -> tuple[float, str] | None:
    """The datasheet's dense peak (TFLOPS) for the row's GPU and precision, and the GPU."""
    gpu = gpu_name(row)
    for name, peaks in DENSE_PEAKS:
        if name in gpu and str(row.get("precision")) in peaks:
            return peaks[str(row["precision"])], gpu
    return None


def tflops(row: dict[str, Any]) -> float:
    """What the row's throughput computes: 2 x MACs per image x images/s, in TFLOPS."""
    return 2 * _v(row, "macs") * _v(row, "throughput_ips") / 1e12


def table_row(row: dict[str, Any]) -> dict[str, str]:
    peak = dense_peak(row)
    dense = 100 * tflops(row) / peak[0] if peak else math.nan
    mode = row.get("timing_mode") or "host (CPU)"
    mem, source = _v(row, "device_mem_peak_mb"), str(row.get("device_mem_source") or "-")
    if math.isnan(mem) and not math.isnan(_v(row, "host_peak_rss_mb")):  # a CPU cell
        mem, source = (
            _v(row, "host_peak_rss_mb"),
            f"host peak RSS, {row.get('host_peak_rss_scope')}",
        )
    return {
        "cell": f"{row['model']} {row['precision']} b{row['batch']}"
        + (" graphs" if graphs(row) else ""),
        "timing": str(mode),
        "host": _fmt(_v(row, "latency_ms_p50")),
        "dev": _fmt(_v(row, "device_latency_ms_p50")),
        "ips": _fmt(_v(row, "throughput_ips"), 0),
        "dense": _fmt(dense, 1),
        "eff": _fmt(100 * _v(row, "efficiency"), 1),
        "mem": _fmt(mem, 0),
        "mem_src": source,
        "torch": _fmt(_v(row, "torch_cuda_max_allocated_mb"), 0),
        "mj": _fmt(_v(row, "energy_mj_per_image")),
        "energy_src": str(row.get("energy_source") or row.get("energy_note") or "-"),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    cells = [table_row(r) for r in rows]
    widths = {k: max(len(h), *(len(c[k]) for c in cells)) for h, k in COLUMNS}
    print("  ".join(h.ljust(widths[k]) for h, k in COLUMNS).rstrip())
    for c in cells:
        print("  ".join(c[k].ljust(widths[k]) for _, k in COLUMNS).rstrip())


def best_fp16(rows: list[dict[str, Any]]) -> str:
    """resnet50 FP16 gpu_compute throughput at its best batch, as a share of the dense peak."""
    r50 = [r for r in rows if r["model"] == "resnet50" and r["precision"] == "fp16"
           and r.get("timing_mode") == "gpu_compute"]  # fmt: skip
    if not r50:
        return "resnet50 fp16 gpu_compute: not measured"
    best = max(r50, key=lambda r: _v(r, "throughput_ips") if num(r.get("throughput_ips")) else 0)
    peak = dense_peak(best)
    share = (
        f"{100 * tflops(best) / peak[0]:.1f}% of the dense FP16 peak ({peak[0]:.0f} TFLOPS, {peak[1]})"
        if peak
        else f"no datasheet peak known for {gpu_name(best)!r}"
    )
    return (
        f"resnet50 fp16 gpu_compute best: batch {best['batch']}, "
        f"{_fmt(_v(best, 'throughput_ips'), 0)} img/s = {tflops(best):.1f} TFLOPS = {share}"
    )


def graphs_vs_eager(rows: list[dict[str, Any]]) -> list[str]:
    """Batch 1, same model, precision and timing mode: CUDA graphs against eager."""
    out = []
    b1 = [r for r in rows if num(r.get("batch")) == 1 and r.get("timing_mode")]
    for g in (r for r in b1 if graphs(r)):
        same = [e for e in b1 if not graphs(e) and all(
            e.get(k) == g.get(k) for k in ("model", "precision", "timing_mode", "engine"))]  # fmt: skip
        if same:
            e = same[0]
            host_e, host_g = _v(e, "latency_ms_p50"), _v(g, "latency_ms_p50")
            out.append(
                f"{g['model']} {g['precision']} b1 {g['timing_mode']}: eager p50 {_fmt(host_e)} ms, "
                f"CUDA graphs {_fmt(host_g)} ms (eager/graphs {host_e / host_g:.2f}x); device "
                f"{_fmt(_v(e, 'device_latency_ms_p50'))} vs {_fmt(_v(g, 'device_latency_ms_p50'))} ms"
            )
    return out or ["CUDA graphs vs eager at batch 1: not measured"]


def copies_cost(rows: list[dict[str, Any]]) -> list[str]:
    """Same cell in both timing modes: what the host<->device copies cost."""
    out = []
    for e in (r for r in rows if r.get("timing_mode") == "end_to_end" and not graphs(r)):
        same = [c for c in rows if c.get("timing_mode") == "gpu_compute" and all(
            c.get(k) == e.get(k) for k in ("model", "precision", "batch", "engine"))]  # fmt: skip
        for c in same[:1]:
            out.append(
                f"{e['model']} {e['precision']} b{e['batch']}: end_to_end "
                f"{_fmt(_v(e, 'throughput_ips'), 0)} img/s, gpu_compute "
                f"{_fmt(_v(c, 'throughput_ips'), 0)} img/s{' (graphs)' if graphs(c) else ''}"
            )
    return out or ["end_to_end vs gpu_compute: not measured"]


def memory_sources(rows: list[dict[str, Any]]) -> str:
    """NVML's figure against torch's max_memory_allocated, over the rows that have both."""
    pairs = [(_v(r, "device_mem_peak_mb"), _v(r, "torch_cuda_max_allocated_mb")) for r in rows]
    pairs = [(d, t) for d, t in pairs if not math.isnan(d) and not math.isnan(t) and t > 0]
    if not pairs:
        return "NVML vs torch memory: not measured (no row has both)"
    ratios = sorted(d / t for d, t in pairs)
    sources = sorted({str(r.get("device_mem_source")) for r in rows if r.get("device_mem_source")})
    return (
        f"NVML vs torch memory over {len(pairs)} cells: device figure / torch max_allocated "
        f"{ratios[0]:.2f}x to {ratios[-1]:.2f}x (median {ratios[len(ratios) // 2]:.2f}x); "
        f"device figure from: {'; '.join(sources)}"
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: gpu_summary.py RESULTS.csv", file=sys.stderr)
        return 2
    path = Path(argv[0])
    if not path.is_file():
        print(f"gpu_summary: {path} does not exist: no cell was measured", file=sys.stderr)
        return 1
    all_rows = read_rows(path)
    rows = [r for r in all_rows if not r.get("error")]
    failed = [r for r in all_rows if r.get("error")]
    print(f"{len(rows)} measured cell(s), {len(failed)} failed")
    for r in failed:
        print(f"  failed: {r['model']} {r['precision']} b{r['batch']}: {r['error']}")
    if rows:
        print_table(rows)
    print(best_fp16(rows))
    for line in (*graphs_vs_eager(rows), *copies_cost(rows), memory_sources(rows)):
        print(line)
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
