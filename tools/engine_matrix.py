"""Every engine available here x every precision it lists: `cnnbench run -m lenet5 -e E -p P
-b 1` gives a row with no error (the restructure's acceptance); engines that are not available
are listed with what they advertise.

    python tools/engine_matrix.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from cnnbench.bench.results.files import read_rows


def main() -> None:
    listed = json.loads(
        subprocess.run([sys.executable, "-m", "cnnbench", "engines", "--format", "json"],
                       capture_output=True, text=True, check=True).stdout
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="engine-matrix-") as tmp:
        for e in listed:
            if not e["available"]:
                print(f"{e['name']}: not available here (lists {', '.join(e['precisions'])})")
                continue
            for p in e["precisions"]:
                out = Path(tmp) / f"{e['name']}-{p}.csv"
                res = subprocess.run(
                    [sys.executable, "-m", "cnnbench", "run", "-m", "lenet5", "-e", e["name"],
                     "-p", p, "-b", "1", "--no-db", "--min-time", "0.3", "--out", str(out),
                     "--artifacts", str(Path(tmp) / "artifacts")],
                    capture_output=True, text=True,
                )  # fmt: skip
                rows = read_rows(out) if out.exists() else []
                err = (
                    rows[0].get("error") if rows else (res.stderr.strip().splitlines() or ["?"])[-1]
                )
                eff = rows[0].get("effective_precision") if rows else None
                print(
                    f"{e['name']} {p}: exit {res.returncode}, {len(rows)} row, error {err}, "
                    f"effective {eff}"
                )


if __name__ == "__main__":
    main()
