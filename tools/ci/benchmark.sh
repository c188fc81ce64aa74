#!/usr/bin/env bash
# The benchmark workflow's commands in one script, so that .github/workflows/benchmark.yml and
# .ci/run run the very same steps (the workflow cannot rot unseen).
#
# Base against head, on this runner (--base REF, what the workflow does):
#   1. REF is checked out in a worktree and installed in a venv of its own (the head's
#      dependencies, the base's code);
#   2. base and head sweep the config in turn, --repeats times, alternating (ABBA: base, head,
#      head, base, ...), each pass a fresh process per cell, into OUT/base.csv and OUT/head.csv;
#   3. cnnbench compare OUT/base.csv OUT/head.csv -> OUT/comparison.csv with a verdict per cell
#      and metric, decided on the repeats; exit 1 only on a regression (--strict: also on an
#      inconclusive cell);
#   4. cnnbench report of the head's rows -> OUT/report/.
# Against a stored results file instead (--baseline CSV): one sweep, then compare with it.
# Neither: one sweep and its report (no compare).
#
# Usage: tools/ci/benchmark.sh [--config FILE] [--out DIR] [--base REF] [--repeats N]
#                              [--baseline CSV] [--engine E[,E]] [--device D] [--precision P]
#                              [--threshold PCT] [--strict]
# --engine / --device / --precision replace those keys of the config (the GPU job runs the same
# config with --engine trt --device cuda). Exit status: 2 on a bad argument or a failed sweep or
# install, 1 on a regression, else 0.
set -euo pipefail

config=bench/configs/ci_tiny.yaml
out=ci-out
engine=""
device=""
precision=""
baseline=""
base_ref=""
repeats=""
strict=""
threshold="${CNNBENCH_CI_THRESHOLD:-25%}"
py="${PYTHON:-python3}"

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --engine) engine="$2"; shift 2 ;;
    --device) device="$2"; shift 2 ;;
    --precision) precision="$2"; shift 2 ;;
    --baseline) baseline="$2"; shift 2 ;;
    --base) base_ref="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    --threshold) threshold="$2"; shift 2 ;;
    --strict) strict="--fail-on-inconclusive"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "benchmark.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

fail() { echo "benchmark.sh: $1" >&2; exit 2; }
[ -f "$config" ] || fail "config not found: $config"
[ -z "$baseline" ] || [ -f "$baseline" ] || fail "baseline not found: $baseline"
[ -z "$baseline" ] || [ -z "$base_ref" ] || fail "give --base REF or --baseline CSV, not both"
case "$repeats" in ""|[1-9]|[1-9][0-9]) ;; *) fail "--repeats must be 1 to 99, got '$repeats'" ;; esac
if [ -n "$base_ref" ]; then
  git rev-parse --verify --quiet "$base_ref^{commit}" >/dev/null \
    || fail "--base $base_ref is not a commit here (fetch it first: git fetch origin $base_ref)"
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
# The config actually run, with the overrides applied (and one repeat per pass when base and
# head alternate); kept beside the results.
cfg_repeats=$("$py" - "$config" "$out/config.yaml" "$engine" "$device" "$precision" "${base_ref:+1}" <<'EOF'
import sys
import yaml

src, dest, engine, device, precision, one_pass = sys.argv[1:7]
with open(src, encoding="utf-8") as fh:
    cfg = yaml.safe_load(fh)
if engine:
    cfg["engines"] = [e.strip() for e in engine.split(",") if e.strip()]
if device:
    cfg["device"] = device
if precision:
    cfg["precisions"] = [p.strip() for p in precision.split(",") if p.strip()]
if one_pass:
    print(cfg.get("repeats", 1))
    cfg["repeats"] = 1
with open(dest, "w", encoding="utf-8") as fh:
    yaml.safe_dump(cfg, fh, sort_keys=False)
EOF
) || fail "cannot read $config"
cnnbench() { "$py" -m cnnbench "$@"; }
echo "== cnnbench $(cnnbench --version 2>&1 | tail -n 1)"

if [ -z "$base_ref" ]; then
  results="$out/results.csv"
  rm -f "$results" "$results".*  # a fresh run: never mix rows of an earlier one into this report
  status=0
  echo "== sweep $out/config.yaml"
  cnnbench sweep "$out/config.yaml" --out "$results" --no-db || status=$?
  [ -s "$results" ] || { echo "benchmark.sh: the sweep wrote no results" >&2; exit 2; }
  echo "== report"
  cnnbench report "$results" --out "$out/report" || { rc=$?; [ "$status" -ne 0 ] || status=$rc; }
  if [ -n "$baseline" ]; then
    echo "== compare $baseline -> $results (threshold $threshold)"
    cnnbench compare "$baseline" "$results" --threshold "$threshold" --out "$out/comparison.csv" \
      $strict || { rc=$?; [ "$status" -ne 0 ] || status=$rc; }
  else
    echo "== compare skipped: give --base REF (this runner measures both) or --baseline CSV"
  fi
  exit "$status"
fi

# ---- base against head ---------------------------------------------------------------------
[ -n "$repeats" ] || repeats=${cfg_repeats:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/cnnbench-base.XXXXXX")
cleanup() { git worktree remove --force "$work/src" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
echo "== base $base_ref ($(git rev-parse --short "$base_ref")) in $work/src"
git worktree add --detach --quiet "$work/src" "$base_ref" || fail "cannot check $base_ref out"
# its own venv: the base's code first on the path, then the head's installed dependencies
"$py" -m venv --without-pip "$work/venv" || fail "cannot make the base's venv"
site=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$work/src" > "$site/00-cnnbench-base.pth"
# every package folder the head's interpreter sees (its purelib and any a .pth of it adds)
"$py" -c 'import sys; print("\n".join(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))))' > "$site/10-head-deps.pth"
where=$(cd "$work" && "$work/venv/bin/python" -c 'import cnnbench, os; print(os.path.dirname(cnnbench.__file__))')
[ "$where" = "$work/src/cnnbench" ] || fail "the base's venv imports cnnbench from $where"
base_py="$work/venv/bin/python"

rm -f "$out"/base.* "$out"/head.*
# each side's own artifacts (its exporter may differ) and caches, reused across its passes
export CNNBENCH_CACHE="$work/cache"
for side in base head; do  # each side's own artifacts: its exporter may differ
  "$py" - "$out/config.yaml" "$work/config-$side.yaml" "$work/artifacts-$side" <<'EOF2'
import sys
import yaml

src, dest, artifacts = sys.argv[1:4]
with open(src, encoding="utf-8") as fh:
    cfg = yaml.safe_load(fh)
cfg["artifacts"] = artifacts
with open(dest, "w", encoding="utf-8") as fh:
    yaml.safe_dump(cfg, fh, sort_keys=False)
EOF2
done
run_side() {  # side python pass
  local side=$1 python=$2 pass=$3
  echo "== pass $pass: $side"
  (cd "$out" && "$python" -m cnnbench sweep "$work/config-$side.yaml" --out "$side.csv" --no-db \
     >>"$out/$side.log" 2>&1) \
    || { tail -n 5 "$out/$side.log" >&2; fail "the $side sweep failed (see $out/$side.log)"; }
}
for pass in $(seq 1 "$repeats"); do
  # ABBA: the side that goes first alternates, so a drift of the runner spreads over both
  if [ $((pass % 2)) -eq 1 ]; then order="base head"; else order="head base"; fi
  for side in $order; do
    if [ "$side" = base ]; then run_side base "$base_py" "$pass"; else run_side head "$py" "$pass"; fi
    mv "$out/$side.csv" "$out/$side.pass$pass.csv"
    [ ! -f "$out/$side.csv.samples" ] || mv "$out/$side.csv.samples" "$out/$side.pass$pass.csv.samples"
  done
done
# every pass's rows, as repeats of their cells
"$py" - "$out" "$repeats" <<'EOF'
import sys
from pathlib import Path

from cnnbench.bench.results.files import read_rows, write_rows

out, n = Path(sys.argv[1]), int(sys.argv[2])
for side in ("base", "head"):
    rows = []
    for k in range(1, n + 1):
        for r in read_rows(out / f"{side}.pass{k}.csv"):
            r["repeat"] = k - 1
            r.pop("samples_file", None)  # each pass's samples stay in its own file
            r.pop("samples_offset", None)
            rows.append(r)
    write_rows(out / f"{side}.csv", rows)
EOF
status=0
echo "== compare base ($base_ref) -> head, threshold $threshold"
cnnbench compare "$out/base.csv" "$out/head.csv" --threshold "$threshold" --interleaved \
  --out "$out/comparison.csv" $strict || status=$?
echo "== report (head)"
cnnbench report "$out/head.csv" --out "$out/report" >/dev/null || true
echo "== outputs in $out: base.csv head.csv comparison.csv report/"
exit "$status"
