"""INT8 placement A/B: today's file (Q/DQ placed the way TensorRT fuses it) against the wave-1
placement (``quantize_static`` over every op type ONNX Runtime knows: Q/DQ on every conv
output, ReLU input, both Add inputs and the logits), on OpenVINO at batch 1, single stream.

The wave-1 file is rebuilt here from the same pre-processed FP32 graph and the same cached
calibration ranges as today's file (the export's manifest names them), so placement is the only
difference. Both files are compiled side by side and called alternately, call by call (which
goes first alternates too), so load on the shared CPU hits both alike; each adjacent pair gives
a latency ratio (today / wave 1) and the median over all pairs is the figure (< 1: today's is
faster). Also printed: each file's placement summary and the share of MACs OpenVINO ran in
INT8 (``cnnbench layers``), and the load average before and after.

    cnnbench export resnet50 --precision int8          # today's file (and its ranges)
    python tools/int8_placement_ab.py --model resnet50 --pairs 400
    python tools/int8_placement_ab.py --model resnet50 --today-opt snippets=disable

``--today-opt`` / ``--wave1-opt KEY=VALUE`` (repeatable) are OpenVINO engine options for one
file only (``cnnbench engines --options``); each file's runtime layer count is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.batch import BatchRange
from cnnbench.bench.measure.layer_report import report
from cnnbench.data.images import random_batches
from cnnbench.engines import create
from cnnbench.engines.base import Artifact, EngineOptions
from cnnbench.engines.openvino_engine import OPTIONS
from cnnbench.engines.options import parse_assignments
from cnnbench.export.calibration import cache_path
from cnnbench.export.int8 import op_types, preprocess
from cnnbench.export.qdq_check import check_placement
from cnnbench.models import get_spec
from cnnbench.precision import Precision

#: the wave-1 quantizer options (before the placement rules): symmetric, float biases
WAVE1_OPTIONS = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}


def wave1_file(fp32: Path, ranges: Path, out: Path) -> Path:
    """The wave-1 placement of ``fp32``: every op type quantized, with the cached ranges."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with tempfile.TemporaryDirectory(prefix="cnnbench-wave1-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        preprocess(fp32, pre)
        quantize_static(
            str(pre), str(out), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types(), per_channel=True, reduce_range=False,
            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Entropy, extra_options=dict(WAVE1_OPTIONS),
            calibration_cache_path=str(ranges),
        )  # fmt: skip
    return out


def placement_line(path: Path) -> str:
    p = check_placement(path)
    ops = ", ".join(f"{k} {v}" for k, v in sorted(p["quantized_ops"].items()))
    return (
        f"Q/DQ nodes {p['qdq_count']}; ops with a dequantized input: {ops}; "
        f"rule breaches {len(p['violations'])}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    ap.add_argument("--pairs", type=int, default=400, help="alternating call pairs timed")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None, help="default: physical cores")
    ap.add_argument("--wave1-first", action="store_true", help="load the wave-1 file first")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    for name in ("today", "wave1"):
        ap.add_argument(f"--{name}-opt", action="append", default=[], metavar="KEY=VALUE",
                        help=f"an OpenVINO engine option for the {name} file only")  # fmt: skip
    args = ap.parse_args(argv)
    opts = {
        name: parse_assignments(getattr(args, f"{name}_opt"), {"openvino": OPTIONS}).get(
            "openvino", {}
        )
        for name in ("today", "wave1")
    }

    spec = get_spec(args.model)
    fp32 = args.artifacts / args.model / "fp32" / "model.onnx"
    today = args.artifacts / args.model / "int8" / "model.onnx"
    manifest = today.with_name("manifest.json")
    if not (fp32.is_file() and manifest.is_file()):
        print(f"no INT8 export of {args.model} under {args.artifacts}; run: "
              f"cnnbench export {args.model} --precision int8", file=sys.stderr)  # fmt: skip
        return 2
    calib = json.loads(manifest.read_text())["extra"]["calibration"]
    ranges = cache_path(calib["cache_key"])
    if not ranges.is_file():
        print(f"calibration ranges {ranges} are gone; re-export", file=sys.stderr)
        return 2
    load0 = os.getloadavg()
    out_dir = Path(tempfile.mkdtemp(prefix="cnnbench-ab-"))
    old = wave1_file(fp32, ranges, out_dir / "wave1.onnx")
    files = {"today": today, "wave1": old}
    if args.wave1_first:  # load order alone can move latency a little: check both
        files = {"wave1": old, "today": today}
    x = random_batches(spec, count=1, batch=1, seed=0)[0]
    engines: dict[str, Any] = {}
    for name, path in files.items():
        eng = create("openvino", EngineOptions(threads=args.threads, extra=opts[name]))
        eng.load(Artifact.for_spec(spec, Precision.INT8, onnx_path=path), BatchRange.fixed(1))
        engines[name] = eng
        rep = report(eng)
        share = rep.summary["macs_int8_share"] if rep else None
        ran = eng.executed_layers() or []
        subgraphs = sum(la.kind == "Subgraph" for la in ran)
        print(f"{name:6s} {path}  {eng.option_text(opts[name])}")
        print(f"       openvino runtime graph: {len(ran)} layers, {subgraphs} Snippets subgraphs")
        print(f"       placement: {placement_line(path)}")
        print(f"       openvino ran {100 * (share or 0):.1f}% of MACs in INT8")
    for eng in engines.values():
        for _ in range(args.warmup):
            eng.infer(x)
    lat: dict[str, list[float]] = {"today": [], "wave1": []}
    ratios = []
    for i in range(args.pairs):
        order = ("today", "wave1") if i % 2 == 0 else ("wave1", "today")
        got = {}
        for name in order:
            t0 = time.perf_counter_ns()
            engines[name].infer(x)
            got[name] = (time.perf_counter_ns() - t0) / 1e6
            lat[name].append(got[name])
        ratios.append(got["today"] / got["wave1"])
    for eng in engines.values():
        eng.close()
    load1 = os.getloadavg()
    q = np.quantile(ratios, [0.25, 0.5, 0.75])
    figures = {
        "model": args.model,
        "engine": "openvino",
        "batch": 1,
        "pairs": args.pairs,
        "loaded_first": next(iter(files)),
        "options_today": opts["today"],
        "options_wave1": opts["wave1"],
        "p50_ms_today": round(statistics.median(lat["today"]), 3),
        "p50_ms_wave1": round(statistics.median(lat["wave1"]), 3),
        "ratio_median_of_pairs": round(float(q[1]), 4),
        "ratio_iqr": [round(float(q[0]), 4), round(float(q[2]), 4)],
        "loadavg_before": [round(v, 2) for v in load0],
        "loadavg_after": [round(v, 2) for v in load1],
    }
    print(f"p50 today {figures['p50_ms_today']} ms, wave 1 {figures['p50_ms_wave1']} ms "
          f"(medians of {args.pairs} calls each, interleaved)")  # fmt: skip
    print(f"latency ratio today / wave 1: median of pairs {figures['ratio_median_of_pairs']} "
          f"(IQR {figures['ratio_iqr'][0]}-{figures['ratio_iqr'][1]}); < 1 is faster")  # fmt: skip
    print(f"load average before {figures['loadavg_before']}, after {figures['loadavg_after']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
