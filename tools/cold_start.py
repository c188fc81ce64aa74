"""Where the README's main job spends its time, cold: fresh caches, fresh artifacts, install
excluded.

    python tools/cold_start.py [--out DIR] [--busy] [-- RUN ARGS...]

Runs the main job's two commands (``cnnbench run ... --out results/cpu.csv`` and ``cnnbench
report``) in a scratch folder with a fresh ``CNNBENCH_CACHE`` and artifacts folder, timing each
command, then breaks the run down from its rows: the launcher's work for each cell (the model's
analysis, the matmul peak, the export with its parity gate or the conversion), each cell
process's start (interpreter and imports), engine load, warm-up, measurement and the rest of the
cell (the per-layer report, teardown). ``--busy`` runs a spinning process on one core alongside
(the "beside one busy core" case). Prints one table and the load average; exit 0 whatever the
figures.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: the README's main job (its first command, without the install)
MAIN_JOB = ["--model", "resnet18,googlenet", "--engine", "torch,onnxruntime", "--batch", "1,8"]
SPIN = "import time\nend = time.time() + 36000\nwhile time.time() < end:\n    pass\n"


def _timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    code = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL).returncode
    return time.perf_counter() - t0, code


def _sum(rows: list[dict], key: str) -> float:
    return sum(float(r.get(key) or 0.0) for r in rows)


def breakdown(rows: list[dict], run_s: float) -> list[tuple[str, float]]:
    """The run's seconds by phase, from its rows (the rest is the launcher's own)."""
    measured = {
        "model analysis (params, MACs)": _sum(rows, "launch_facts_s"),
        "matmul peak (once per device, precision)": _sum(rows, "launch_peak_s"),
        "export + parity gate, conversion (launcher)": _sum(rows, "launch_prepare_s"),
        "cell process start (interpreter, imports)": _sum(rows, "child_startup_s"),
        "engine load": _sum(rows, "load_s"),
        "warm-up": _sum(rows, "warmup_s"),
        "measurement (the measured windows)": _sum(rows, "wall_s"),
    }
    inside = ("child_startup_s", "load_s", "warmup_s", "wall_s", "prepare_s")
    rest = sum(float(r.get("cell_process_s") or 0.0) - sum(float(r.get(k) or 0.0) for k in inside)
               for r in rows)  # fmt: skip
    measured["rest of each cell (layer report, teardown)"] = max(rest, 0.0)
    measured["launcher's own (start, reading, writing)"] = max(run_s - sum(measured.values()), 0.0)
    return list(measured.items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="scratch folder (default: a temp one)")
    ap.add_argument("--busy", action="store_true", help="one core kept busy alongside")
    ap.add_argument("run_args", nargs="*", help="run's arguments instead of the main job's")
    a = ap.parse_args(argv)
    root = a.out or Path(tempfile.mkdtemp(prefix="cnnbench-cold-"))
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CNNBENCH_CACHE": str(root / "cache"), "HOME": str(root / "home"),
           "CNNBENCH_DB": str(root / "results.db")}  # fmt: skip
    (root / "home").mkdir(exist_ok=True)
    py = [sys.executable, "-m", "cnnbench"]
    args = a.run_args or MAIN_JOB
    spin = subprocess.Popen([sys.executable, "-c", SPIN]) if a.busy else None
    load0 = os.getloadavg()[0]
    try:
        run_s, run_code = _timed([*py, "run", *args, "--out", "results/cpu.csv"], root, env)  # fmt: skip
        report_s, report_code = _timed(
            [*py, "report", "results/cpu.csv", "--out", "results/report"], root, env
        )
    finally:
        if spin is not None:
            spin.kill()
    load1 = os.getloadavg()[0]
    with (root / "results" / "cpu.csv").open(newline="") as f:  # any version's results file
        rows = list(csv.DictReader(f))
    invalid = [r for r in rows if str(r.get("valid")).lower() not in ("true", "1", "yes")]
    print(f"README main job, cold, in {root}: run {' '.join(args)}")
    print(f"load average {load0:.2f} at the start, {load1:.2f} at the end"
          + ("; one core kept busy alongside" if a.busy else ""))  # fmt: skip
    print(f"{'phase':<48}{'seconds':>9}{'share':>8}")
    for name, secs in breakdown(rows, run_s):
        print(f"{name:<48}{secs:>9.1f}{100 * secs / run_s:>7.0f}%")
    print(f"{'run (exit ' + str(run_code) + ')':<48}{run_s:>9.1f}")
    print(f"{'report (exit ' + str(report_code) + ')':<48}{report_s:>9.1f}")
    print(f"{'total':<48}{run_s + report_s:>9.1f}  ({(run_s + report_s) / 60:.1f} min)")
    print(f"{len(rows)} rows, {len(invalid)} invalid"
          + (f": {sorted({str(r.get('invalid_reason')) for r in invalid})[:3]}" if invalid else ""))  # fmt: skip
    stops: dict[str, int] = {}
    for r in rows:
        stops[str(r.get("stop_reason"))] = stops.get(str(r.get("stop_reason")), 0) + 1
    print("stop reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(stops.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
