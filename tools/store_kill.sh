#!/usr/bin/env bash
# #15's acceptance: two concurrent sweeps of bench/configs/ci_tiny.yaml into one SQLite store,
# one killed with SIGKILL halfway; then what the store holds (every finished cell of both, no
# partial row, no row without samples), and the killed one resumed into its own run.
#   bash tools/store_kill.sh [WORKDIR]
set -u
W=${1:-${TMPDIR:-/tmp}/cnnbench-store-kill}
cfg=$(cd "$(dirname "$0")/../bench/configs" && pwd)/ci_tiny.yaml
rm -rf "$W" && mkdir -p "$W" && cd "$W" || exit 2
DB="sqlite:///$W/h.db"
setsid cnnbench sweep "$cfg" --out a.csv --db "$DB" >a.log 2>&1 & A=$!
setsid cnnbench sweep "$cfg" --out b.csv --db "$DB" >b.log 2>&1 & B=$!
rows() { python3 -c "from cnnbench.bench.results.files import read_rows; print(len(read_rows('b.csv')))" 2>/dev/null || echo 0; }
while [ "$(rows)" -lt 35 ]; do sleep 1; done
kill -9 -- "-$B"; echo "killed sweep b after $(rows) rows"
wait "$A"; echo "sweep a: exit $?"
report() {
python3 - "$W" <<'PY'
import sys
from cnnbench.bench.results.files import cell_key, read_rows
from cnnbench.bench.results.store import Store
w = sys.argv[1]
with Store.open(f"sqlite:///{w}/h.db") as s:
    for r in sorted(s.runs(), key=lambda r: r["run_id"]):
        stored = s.cells(run_ids=[r["run_id"]])
        have = {cell_key(x) for x in stored}
        done = {cell_key(x) for x in read_rows(r["out_file"])}
        partial = sum(x.get("latency_ms_p50") is None and not x.get("error") for x in stored)
        bare = sum(not x.get("error") and s.samples(x["cell_id"]) is None for x in stored)
        print(f"  run {r['run_id']} ({r['out_file'].rsplit('/', 1)[-1]}): {r['status']}, file rows {len(done)}, "
              f"store cells {len(stored)} ({len(have)} distinct), every finished cell stored: "
              f"{done <= have}, partial rows {partial}, rows without samples {bare}")
PY
}
report
cnnbench sweep "$cfg" --out b.csv --db "$DB" --resume >b2.log 2>&1; echo "sweep b --resume: exit $?"
report
