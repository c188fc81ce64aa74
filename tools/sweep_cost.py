"""Cost of the default CPU sweep: wall time of ``cnnbench sweep bench/configs/default_cpu.yaml``.

Runs the sweep into a fresh results file (exports of models not yet in the artifacts folder are
included in the time and counted apart), then prints the total wall time, the cells, errors,
and the summed time spent measuring. Goal: <= 15 minutes on 2 cores.

    python tools/sweep_cost.py [--config bench/configs/default_cpu.yaml] [--out F.csv]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cnnbench.bench.results.files import read_rows
from cnnbench.bench.run.local import load_config


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default="bench/configs/default_cpu.yaml")
    p.add_argument("--out", default=None, help="results file (default: a temp file)")
    a = p.parse_args()
    out = Path(a.out or Path(tempfile.mkdtemp(prefix="cnnbench-sweep-cost-")) / "results.csv")
    if out.exists():
        raise SystemExit(f"{out} exists; choose a new --out")

    cfg = load_config(a.config)
    art = Path(cfg.artifacts)
    cached = [m for m in cfg.models if (art / m / "fp32" / "model.onnx").is_file()]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "cnnbench", "sweep", a.config, "--out", str(out)],
                          stdout=subprocess.DEVNULL)  # fmt: skip
    wall = time.perf_counter() - t0

    rows = read_rows(out) if out.exists() else []
    errors = [r for r in rows if r.get("error")]
    measured = sum((r.get("wall_s") or 0) + (r.get("warmup_s") or 0) for r in rows)
    print(f"default sweep {a.config}: {len(rows)} rows ({len(errors)} errors) in {wall / 60:.1f} min "
          f"wall (exit {proc.returncode}); goal <= 15 min: {'PASS' if wall <= 900 else 'FAIL'}")  # fmt: skip
    print(f"  of which warm-up + measuring: {measured / 60:.1f} min; ONNX files already cached "
          f"for {len(cached)}/{len(cfg.models)} models at the start")  # fmt: skip
    print(f"  load average (1 min) at start {load0:.2f}, at end {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs (shared machine); results: {out}")  # fmt: skip
    for r in errors[:10]:
        print(f"  error {r['model']}/{r['engine']}/b{r['batch']}/{r['scenario']}: {r['error']}")


if __name__ == "__main__":
    main()
