"""Calibration and conversion time of FP16 and INT8 files on this machine (default: resnet50).

The FP32 file comes from ``ensure_fp32`` (exported once, reused from ``--artifacts``); its
export time is not part of these figures. Calibration always runs fresh: the calibration cache
points at a new temporary folder, so no cached ranges are reused. Calibration input is seeded
random images (no ImageNet here), so the INT8 parity figures say nothing about accuracy; the
times are what matter.

Rows: one per (precision, method) with the step times from the manifest:
FP16: convert (onnxconverter-common) and verify (ORT FP32 vs FP16 on 16 images).
INT8: pre-process (ORT quant_pre_process), calibrate (ORT calibrator, N samples),
quantize (quantize_static with the computed ranges) and verify (ORT FP32 vs INT8).
``total_s`` is the wall time of ``convert``; ``calib_plus_convert_s`` = pre-process + calibrate
+ quantize (INT8) or convert (FP16).

    python tools/precision_times.py [--model resnet50] [--samples 64]
        [--methods entropy,max,percentile] [--artifacts DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from cnnbench.export.convert import convert
from cnnbench.export.pipeline import ensure_fp32

COLUMNS = (
    "model", "precision", "method", "samples", "t_preprocess", "t_calibrate", "t_convert",
    "t_verify", "calib_plus_convert_s", "total_s", "onnx_mb", "cosine_min", "top1_agreement",
)  # fmt: skip


def measure(model: str, fp32: Any, precision: str, method: str, samples: int, out: Path) -> dict:
    t0 = time.perf_counter()
    res = convert(
        model, fp32, precision, out_dir=out, calib_data="random",
        calib_method=method if precision == "int8" else "entropy", calib_samples=max(1, samples),
    )  # fmt: skip
    total = time.perf_counter() - t0
    t = res.manifest["timings_s"]
    conv = t.get("quantize", t.get("convert"))
    work = conv + t.get("pre-process", 0.0) + t.get("calibrate", 0.0)
    metrics = res.manifest["parity"]["metrics"]
    return {
        "model": model,
        "precision": precision,
        "method": method if precision == "int8" else "-",
        "samples": samples if precision == "int8" else "-",
        "t_preprocess": t.get("pre-process"),
        "t_calibrate": t.get("calibrate"),
        "t_convert": conv,
        "t_verify": t.get("verify"),
        "calib_plus_convert_s": round(work, 3),
        "total_s": round(total, 3),
        "onnx_mb": round(res.manifest["onnx"]["bytes"] / 2**20, 2),
        "cosine_min": metrics["cosine_min"],
        "top1_agreement": metrics["top1_agreement"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--methods", default="entropy,max")
    ap.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    ap.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    args = ap.parse_args(argv)

    import onnxruntime

    fp32 = ensure_fp32(args.model, out_dir=args.artifacts)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnnbench-precision-times-") as tmp:
        os.environ["CNNBENCH_CACHE"] = str(Path(tmp) / "cache")  # fresh calibration, no reuse
        out = Path(tmp) / "art"
        rows.append(measure(args.model, fp32, "fp16", "-", 0, out))
        for method in args.methods.split(","):
            rows.append(measure(args.model, fp32, "int8", method, args.samples, out))
    env = (
        f"{platform.processor() or platform.machine()}, {psutil.cpu_count(logical=True)} logical "
        f"cores, onnxruntime {onnxruntime.__version__}, load avg {os.getloadavg()[0]:.1f}"
    )
    if args.json:
        for r in rows:
            print(json.dumps({**r, "environment": env}))
        return 0
    print(f"# {args.model}: FP16/INT8 conversion times (seconds) on {env}")
    print(" | ".join(COLUMNS))
    for r in rows:
        print(" | ".join(_fmt(r.get(c)) for c in COLUMNS))
    return 0


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


if __name__ == "__main__":
    sys.exit(main())
