#!/usr/bin/env bash
# The compare's verdicts on noise and on a real slowdown, as #11's acceptance states them:
#   1. bench/configs/ci_tiny.yaml swept twice on a quiet machine, then once while a busy loop
#      holds a core; compare quiet->quiet and quiet->busy (false regressions: expect 0, exit 0);
#   2. resnet18 on onnxruntime, batch 8, 3 repeats, --threads 2 as base, --threads 1 as new
#      (a real slowdown: expect a regression and exit 1);
#   3. host_peak_rss_mb of `run -m resnet18 -e onnxruntime -b 1` on a fresh artifacts folder
#      (export included) and again with the artifact cached;
#   4. the fresh-process overhead per cell: lenet5 run, default vs --in-process, 5 pairs.
# Run it on a quiet machine:  bash tools/compare_noise.sh [WORKDIR]
set -u
W=${1:-${TMPDIR:-/tmp}/cnnbench-compare-noise}
cfg=$(cd "$(dirname "$0")/../bench/configs" && pwd)/ci_tiny.yaml
rm -rf "$W" && mkdir -p "$W" && cd "$W" || exit 2
export CNNBENCH_DB="$W/store.db"
load() { cut -d' ' -f1 /proc/loadavg; }
echo "load $(load)"
cnnbench sweep "$cfg" --out A.csv >A.log 2>&1
cnnbench sweep "$cfg" --out B.csv >B.log 2>&1
python3 -c "while True: pass" & busy=$!
cnnbench sweep "$cfg" --out C.csv >C.log 2>&1
kill "$busy"
echo "load $(load)"
for pair in "A B quiet->quiet" "A C quiet->busy"; do
  set -- $pair
  cnnbench compare "$1.csv" "$2.csv" --threshold 10% --out "$1$2.csv" >"$1$2.log" 2>&1
  echo "$3: exit $?, $(grep -E '^[0-9]+ regression' "$1$2.log")"
done
python3 - <<'PY'
from cnnbench.bench.results.files import read_rows
rows = read_rows("C.csv")
foreign = sum("foreign CPU load" in str(r.get("invalid_reason")) for r in rows)
print(f"busy run: {sum(r.get('valid') is False or str(r.get('valid')) == 'False' for r in rows)} of {len(rows)} rows invalid, {foreign} naming foreign CPU load")
PY
cnnbench run -m resnet18 -e onnxruntime -b 8 --threads 2 --repeats 3 --out t2.csv >t2.log 2>&1
cnnbench run -m resnet18 -e onnxruntime -b 8 --threads 1 --repeats 3 --out t1.csv >t1.log 2>&1
cnnbench compare t2.csv t1.csv --threshold 10% --out T.csv >T.log 2>&1
echo "threads 2 -> 1: exit $?, $(tail -n 1 T.log)"
python3 -c "
from cnnbench.bench.results.files import read_rows
for r in read_rows('T.csv'): print(' ', r['metric'], r['base'], '->', r['new'], f\"{r['change_pct']:+.1f}%\", 'pairwise', r['ratio_ci_low'], '-', r['ratio_ci_high'], 'p', r['p_value'], r['status'])"
cnnbench run -m resnet18 -e onnxruntime -b 1 --artifacts fresh --out f1.csv >f1.log 2>&1
cnnbench run -m resnet18 -e onnxruntime -b 1 --artifacts fresh --out f2.csv >f2.log 2>&1
python3 -c "
from cnnbench.bench.results.files import read_rows
a, b = read_rows('f1.csv')[0]['host_peak_rss_mb'], read_rows('f2.csv')[0]['host_peak_rss_mb']
print(f'host_peak_rss_mb: fresh folder (export included) {a}, cached {b}: {abs(a - b) / b:.2%} apart')"
: >times.log
for _ in 1 2 3 4 5; do
  /usr/bin/time -f "iso %e" cnnbench run -m lenet5 -e onnxruntime -b 1 --no-db --min-time 0.5 >/dev/null 2>>times.log
  /usr/bin/time -f "inp %e" cnnbench run -m lenet5 -e onnxruntime -b 1 --no-db --min-time 0.5 --in-process >/dev/null 2>>times.log
done
python3 -c "
import statistics as st
t = [l.split() for l in open('times.log') if l.startswith(('iso ', 'inp '))]
iso = [float(v) for k, v in t if k == 'iso']; inp = [float(v) for k, v in t if k == 'inp']
print(f'fresh process per cell: median {st.median(iso):.2f} s vs in-process {st.median(inp):.2f} s; overhead {st.median(a - b for a, b in zip(iso, inp)):.2f} s (5 pairs)')"
echo "load $(load)"
