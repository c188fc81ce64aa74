"""Export + verify time per zoo model on this machine (the table for the export issue's closing note).

Each model is exported once (dynamo exporter, opset 18, dynamic batch, FP32 parity gate on K
seeded batches of 2) and then re-verified with ``verify_onnx``. A LeNet-5 export first warms
the exporter up (imports, first torch.export trace), so no model pays that one-off cost.

Columns: export_s (wall time of ``export_fp32``: build + export + check + simplify + parity +
write), the four step times from the manifest, verify_s (wall time of ``verify_onnx``: load,
checker, sha256 against the manifest, parity), the file size, the opset, which exporter made
the file, and the gate's max relative error. Rows are appended to a JSON-lines file as they
finish, so a long run can be followed (and survives an interruption).

    python tools/export_times.py [--models a,b] [--out DIR] [--samples K] [--jsonl F]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cnnbench.export.pipeline import export_fp32, verify_onnx
from cnnbench.models import list_models

COLUMNS = (
    "model", "export_s", "t_export", "t_check", "t_simplify", "t_parity", "verify_s",
    "onnx_mb", "opset", "exporter", "max_rel_err", "passed", "error",
)  # fmt: skip


def measure(model: str, out_dir: Path, samples: int) -> dict[str, Any]:
    row: dict[str, Any] = {"model": model}
    try:
        t0 = time.perf_counter()
        res = export_fp32(model, out_dir=out_dir, samples=samples)
        row["export_s"] = time.perf_counter() - t0
        m = res.manifest
        for step in ("export", "check", "simplify", "parity"):
            row[f"t_{step}"] = m["timings_s"].get(step)
        row.update(
            onnx_mb=m["onnx"]["bytes"] / 2**20,
            opset=m["opset"],
            exporter=m["exporter"],
            max_rel_err=m["parity"]["metrics"]["max_rel_err"],
        )
        t0 = time.perf_counter()
        report = verify_onnx(res.onnx_path, model, samples=samples)
        row["verify_s"] = time.perf_counter() - t0
        row["passed"] = bool(report)
        row["error"] = None
        res.onnx_path.unlink()  # keep the disk use of a 21-model run small
    except Exception as exc:  # one failing model is one error row, not a dead run
        row["passed"] = False
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
    return row


def render(rows: list[dict[str, Any]]) -> str:
    def cell(col: str, v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "NO"
        if isinstance(v, float):
            return f"{v:.2e}" if col == "max_rel_err" else f"{v:.2f}"
        return str(v)

    body = [[cell(c, r.get(c)) for c in COLUMNS] for r in rows]
    widths = [
        max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(COLUMNS)
    ]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += [
        "| " + " | ".join(v.ljust(w) for v, w in zip(b, widths, strict=True)) + " |" for b in body
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated names (default: the whole zoo)")
    ap.add_argument("--out", type=Path, default=None, help="artifact root (default: a temp dir)")
    ap.add_argument("--samples", type=int, default=3, help="gate batches (default 3)")
    ap.add_argument("--jsonl", type=Path, default=None, help="append rows here as they finish")
    args = ap.parse_args(argv)
    models = args.models.split(",") if args.models else list_models()
    out = args.out or Path(tempfile.mkdtemp(prefix="cnnbench-export-times-"))

    t0 = time.perf_counter()
    export_fp32("lenet5", out_dir=out / "_warmup", samples=1)
    print(
        f"warm-up (first export in the process): {time.perf_counter() - t0:.1f}s", file=sys.stderr
    )
    rows = []
    for name in models:
        row = measure(name, out, args.samples)
        rows.append(row)
        print(f"{name}: {json.dumps(row)}", file=sys.stderr, flush=True)
        if args.jsonl:
            with open(args.jsonl, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    print(render(rows))
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
