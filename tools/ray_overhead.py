"""What the Ray executor costs per cell against the local one, on the same sweep.

    python tools/ray_overhead.py bench/configs/ci_tiny.yaml --rounds 2

Each round runs the sweep once with ``--executor local`` and once with ``--executor ray`` (a
local Ray cluster, started and stopped by the sweep; the order alternates between rounds),
``--no-db``, into fresh files. With one timed cell at a time on either executor, the spacing
of consecutive rows' ``finished_at`` is the cost of one cell as its executor sees it (cell
process, measurement, and for Ray the task's scheduling and result transfer). Printed: per
executor the median spacing over the cells of every round, the median over cells of
ray - local (paired by cell key and round), the whole sweeps' wall times, whether both gave
the same cell keys and how many error rows, and the load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from cnnbench.bench.results.files import cell_key, read_rows


def _spacing(path: Path) -> dict[str, float]:
    rows = sorted(read_rows(path), key=lambda r: str(r["finished_at"]))
    times = [datetime.fromisoformat(str(r["finished_at"])) for r in rows]
    return {
        cell_key(r): (t - prev).total_seconds()
        for r, t, prev in zip(rows[1:], times[1:], times[:-1], strict=True)
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config")
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    gaps: dict[str, list[float]] = {"local": [], "ray": []}
    keys: dict[str, set[str]] = {}
    errors: dict[str, int] = {"local": 0, "ray": 0}
    paired: list[float] = []
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ray-overhead-") as tmp:
        for rnd in range(a.rounds):
            order = ("local", "ray") if rnd % 2 == 0 else ("ray", "local")
            got: dict[str, dict[str, float]] = {}
            for ex in order:
                out = Path(tmp) / f"{ex}-{rnd}.csv"
                t0 = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "cnnbench", "sweep", a.config, "--out", str(out),
                     "--executor", ex, "--no-db"],
                    check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                walls[ex].append(time.perf_counter() - t0)
                got[ex] = _spacing(out)
                rows = read_rows(out)
                keys.setdefault(ex, {cell_key(r) for r in rows})
                errors[ex] += sum(1 for r in rows if r.get("error"))
                gaps[ex] += list(got[ex].values())
            paired += [got["ray"][k] - got["local"][k] for k in got["ray"] if k in got["local"]]
    load1 = os.getloadavg()[0]
    for ex in ("local", "ray"):
        print(f"{ex}: median seconds per cell {statistics.median(gaps[ex]):.3f} over "
              f"{len(gaps[ex])} cells; sweep wall {', '.join(f'{w:.1f}' for w in walls[ex])} s")  # fmt: skip
    print(f"ray - local per cell (paired by cell and round): median {statistics.median(paired):+.3f} s"
          f" over {len(paired)} pairs")  # fmt: skip
    same = keys.get("local") == keys.get("ray")
    print(
        f"cell keys: {len(keys.get('ray', ()))} on ray, the same as local: {same}; "
        f"error rows: local {errors['local']}, ray {errors['ray']}"
    )
    print(f"load average (1 min) before -> after: {load0:.2f} -> {load1:.2f}")


if __name__ == "__main__":
    main()
