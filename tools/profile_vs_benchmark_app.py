"""cnnbench profile's per-layer-type totals against OpenVINO's own benchmark_app -pc, on one file.

    python tools/profile_vs_benchmark_app.py FILE.onnx [--threads 2] [--batch 1] [--pairs 2]

Runs, interleaved ``--pairs`` times: ``cnnbench profile FILE -e openvino --format json`` and
``benchmark_app -m FILE`` with the same CPU properties (PERFORMANCE_HINT LATENCY,
INFERENCE_NUM_THREADS, NUM_STREAMS 1; one synchronous request, FP32 input) and its performance
counters as ``-pc`` prints them (``-report_type detailed_counters``: the last query's; its
``average_counters`` also average in the first, cold queries). Prints, per layer type (OpenVINO's
node type), both totals in ms per query (medians over the pairs), their ratio, and whether
they agree within ``--tolerance`` (types under 1% of the time are shown, not judged), then
both totals and each side's p50. Exit 0 whatever the figures: it reports, it does not gate.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(sys.executable).parent


def _ours(onnx: Path, threads: int, batch: int, queries: int) -> tuple[dict[str, float], float]:
    out = subprocess.run(
        [sys.executable, "-m", "cnnbench", "profile", str(onnx), "-e", "openvino", "-b",
         str(batch), "--threads", str(threads), "--queries", str(queries), "--format", "json"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    doc = json.loads(out.stdout)
    by: dict[str, float] = {}
    for layer in doc["layers"]:
        by[layer["type"]] = by.get(layer["type"], 0.0) + layer["time_ms"]
    return by, float(doc["latency_ms_p50"])


def _theirs(onnx: Path, threads: int, batch: int, niter: int) -> tuple[dict[str, float], float]:
    app = HERE / "benchmark_app"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "cfg.json"
        cfg.write_text(json.dumps({"CPU": {"PERFORMANCE_HINT": "LATENCY",
                                           "INFERENCE_NUM_THREADS": str(threads),
                                           "NUM_STREAMS": "1"}}))  # fmt: skip
        shape = _shape(onnx, batch)
        res = subprocess.run(
            [str(app), "-m", str(onnx), "-d", "CPU", "-load_config", str(cfg), "-niter",
             str(niter), "-nireq", "1", "-api", "sync", "-ip", "f32", "-shape", shape,
             "-report_type", "detailed_counters", "-report_folder", tmp],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        by: dict[str, float] = {}
        with open(Path(tmp) / "benchmark_detailed_counters_report.csv", newline="") as fh:
            for row in csv.DictReader(fh, delimiter=";"):
                if row.get("execStatus") != "Status.EXECUTED":
                    continue
                kind = row["layerType"]
                by[kind] = by.get(kind, 0.0) + float(row["realTime (ms)"])
    m = re.search(r"Median:\s+([\d.]+) ms", res.stdout + res.stderr)
    return by, float(m.group(1)) if m else float("nan")


def _shape(onnx: Path, batch: int) -> str:
    import onnx as onnx_lib

    inp = onnx_lib.load(str(onnx), load_external_data=False).graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    return "[" + ",".join(str(d) for d in [batch, *dims[1:]]) + "]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--niter", type=int, default=200)
    ap.add_argument("--tolerance", type=float, default=0.20)
    a = ap.parse_args(argv)
    ours: list[dict[str, float]] = []
    theirs: list[dict[str, float]] = []
    p50s: tuple[list[float], list[float]] = ([], [])
    for i in range(a.pairs):
        for side in ("ours", "theirs") if i % 2 == 0 else ("theirs", "ours"):
            if side == "ours":
                by, p50 = _ours(a.onnx, a.threads, a.batch, a.queries)
                ours.append(by)
                p50s[0].append(p50)
            else:
                by, p50 = _theirs(a.onnx, a.threads, a.batch, a.niter)
                theirs.append(by)
                p50s[1].append(p50)
    kinds = sorted({k for d in ours + theirs for k in d})
    med_o = {k: statistics.median(d.get(k, 0.0) for d in ours) for k in kinds}
    med_t = {k: statistics.median(d.get(k, 0.0) for d in theirs) for k in kinds}
    total_o, total_t = sum(med_o.values()), sum(med_t.values())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{a.onnx} on OpenVINO CPU, batch {a.batch}, {a.threads} threads; medians of "
          f"{a.pairs} interleaved pairs; load average {load:.2f}")  # fmt: skip
    print(f"{'layer type':<26}{'cnnbench ms':>13}{'benchmark_app ms':>18}{'ratio':>8}  verdict")
    judged = ok = 0
    for k in sorted(kinds, key=lambda k: -med_t.get(k, 0.0)):
        o, t = med_o[k], med_t[k]
        ratio = o / t if t else float("inf")
        small = max(o, t) < 0.01 * max(total_o, total_t)
        verdict = "(under 1%: not judged)" if small else (
            "within" if abs(ratio - 1) <= a.tolerance else "OUTSIDE"
        ) + f" {100 * a.tolerance:.0f}%"  # fmt: skip
        if not small:
            judged += 1
            ok += abs(ratio - 1) <= a.tolerance
        print(f"{k:<26}{o:>13.3f}{t:>18.3f}{ratio:>8.2f}  {verdict}")
    print(f"{'total':<26}{total_o:>13.3f}{total_t:>18.3f}{total_o / total_t:>8.2f}")
    print(f"p50 per query: cnnbench {statistics.median(p50s[0]):.3f} ms, benchmark_app "
          f"{statistics.median(p50s[1]):.3f} ms")  # fmt: skip
    print(
        f"{ok} of {judged} layer types (of 1% of the time or more) within {100 * a.tolerance:.0f}%"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
