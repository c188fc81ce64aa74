#!/usr/bin/env bash
# The benchmark workflow's commands in one script, so that .github/workflows/benchmark.yml and
# .ci/run run the very same steps (the workflow cannot rot unseen):
#   1. sweep a config (default bench/configs/ci_tiny.yaml) into OUT/results.csv
#   2. cnnbench report -> OUT/report/{comparison.csv, *.png, *.svg, index.html}
#   3. with a baseline results CSV: cnnbench compare BASELINE OUT/results.csv; exit 1 on a
#      regression beyond the threshold
#
# Usage: tools/ci/benchmark.sh [--config FILE] [--out DIR] [--engine E[,E]] [--device D]
#                              [--precision P[,P]] [--baseline CSV] [--threshold PCT] [--strict]
# --strict: an inconclusive cell (an invalid row, or a change within the noise) fails too.
# --engine / --device / --precision replace those keys of the config (the GPU job runs the same
# config with --engine trt --device cuda). Without --baseline, bench/baselines/ci_cpu.csv is
# used when it exists (CNNBENCH_CI_DEFAULT_BASELINE overrides that path); a --baseline that
# does not exist is an error. Exit status: the first failure among sweep, report and compare.
set -euo pipefail

config=bench/configs/ci_tiny.yaml
out=ci-out
engine=""
device=""
precision=""
baseline=""
strict=""
threshold="${CNNBENCH_CI_THRESHOLD:-25%}"
default_baseline="${CNNBENCH_CI_DEFAULT_BASELINE:-bench/baselines/ci_cpu.csv}"
py="${PYTHON:-python3}"

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --engine) engine="$2"; shift 2 ;;
    --device) device="$2"; shift 2 ;;
    --precision) precision="$2"; shift 2 ;;
    --baseline) baseline="$2"; shift 2 ;;
    --threshold) threshold="$2"; shift 2 ;;
    --strict) strict="--fail-on-inconclusive"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "benchmark.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [ ! -f "$config" ]; then
  echo "benchmark.sh: config not found: $config" >&2
  exit 2
fi
if [ -n "$baseline" ] && [ ! -f "$baseline" ]; then
  echo "benchmark.sh: baseline not found: $baseline" >&2
  exit 2
fi
if [ -z "$baseline" ] && [ -f "$default_baseline" ]; then
  baseline="$default_baseline"
fi

mkdir -p "$out"
results="$out/results.csv"
rm -f "$results"  # a fresh run: never mix rows of an earlier one into this report
cnnbench() { "$py" -m cnnbench "$@"; }

# The config actually run, with the overrides applied; kept beside the results.
"$py" - "$config" "$out/config.yaml" "$engine" "$device" "$precision" <<'EOF'
import sys
import yaml

src, dest, engine, device, precision = sys.argv[1:6]
with open(src, encoding="utf-8") as fh:
    cfg = yaml.safe_load(fh)
if engine:
    cfg["engines"] = [e.strip() for e in engine.split(",") if e.strip()]
if device:
    cfg["device"] = device
if precision:
    cfg["precisions"] = [p.strip() for p in precision.split(",") if p.strip()]
with open(dest, "w", encoding="utf-8") as fh:
    yaml.safe_dump(cfg, fh, sort_keys=False)
EOF

echo "== cnnbench $(cnnbench --version 2>&1 | tail -n 1)"
cnnbench engines || true

status=0
echo "== sweep $out/config.yaml"
cnnbench sweep "$out/config.yaml" --out "$results" || status=$?

if [ -s "$results" ]; then
  echo "== report"
  cnnbench report "$results" --out "$out/report" || { rc=$?; [ "$status" -ne 0 ] || status=$rc; }
else
  echo "benchmark.sh: the sweep wrote no results" >&2
  [ "$status" -ne 0 ] || status=2
fi

if [ -n "$baseline" ] && [ -s "$results" ]; then
  echo "== compare $baseline -> $results (threshold $threshold)"
  cnnbench compare "$baseline" "$results" --threshold "$threshold" --out "$out/compare.csv" $strict \
    || { rc=$?; [ "$status" -ne 0 ] || status=$rc; }
elif [ -n "$baseline" ]; then
  echo "== compare skipped: no results to compare with $baseline"
else
  echo "== compare skipped: no baseline (pass --baseline CSV or add $default_baseline)"
fi

echo "== outputs in $out:"
find "$out" -maxdepth 2 -type f ! -name '.*' | sort
exit "$status"
