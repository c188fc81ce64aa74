#!/usr/bin/env bash
# One prepared GPU check (issues #13, #26), for the rare and short loan of a GPU machine (one
# H100/H200, no network, no TensorRT, no SQLAlchemy: ../shared/device-image.txt):
#   1. install cnnbench offline: no index, no dependencies, no build isolation, into a private
#      folder on PYTHONPATH (the machine's own packages stay as they are);
#   2. the environment: nvidia-smi, torch, `cnnbench engines`;
#   3. pytest -m gpu (tests/gpu and the GPU tests of the engines);
#   4. a short torch benchmark of resnet50/resnet18 at fp32, fp16 and bf16: gpu_compute (no
#      copies, CUDA graphs) at batch 1 and 64-256, end_to_end beside it, eager beside CUDA
#      graphs at batch 1 (--no-db: the machine has no results store);
#   5. the summary (tools/gpu_summary.py): one table, a row per cell, and the closing figures.
# Writes gpu_check.log, gpu_check.csv and gpu_summary.txt under $OUT (default ./gpu_check_out).
# Sized to 8 minutes on one H100 (GPU_CHECK_BUDGET_S, default 450 s, bounds the benchmark: a
# command that would start past it is skipped, said in the log, and the check fails).
# Nothing it runs imports what that machine lacks, so it carries nothing.
#
#   bash tools/gpu_check.sh               on a GPU; without one it prints one line, exits 0
#   bash tools/gpu_check.sh --rehearse    every step on the CPU (--device cpu): the same
#                                         install, the same commands, the same summary; what
#                                         the CPU cannot run is replaced, and the log says how
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
rehearse=0
case "${1:-}" in
    "") ;;
    --rehearse) rehearse=1 ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: bash tools/gpu_check.sh [--rehearse]" >&2; exit 2 ;;
esac
if [ "$rehearse" = 0 ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False in $PY); nothing to check"
    exit 0
fi
DEVICE=cuda
[ "$rehearse" = 1 ] && DEVICE=cpu
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
CSV="$OUT/gpu_check.csv"
rm -f "$LOG" "$CSV" "$CSV".samples* "$OUT/gpu_summary.txt"  # run appends: start afresh
TMP="${TMPDIR:-/tmp}"
SITE="$TMP/cnnbench-gpu-check-site"
ART="$TMP/cnnbench-gpu-check-artifacts"
BUDGET_S="${GPU_CHECK_BUDGET_S:-450}"
start=$(date +%s)
status=0
step() { echo "== $* ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$LOG"; }
[ "$rehearse" = 1 ] && echo "gpu_check: REHEARSAL on the CPU (--device cpu); no GPU figure below is real" | tee -a "$LOG"

step "install (offline)"
rm -rf "$SITE"
if ! "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --target "$SITE" . >>"$LOG" 2>&1; then
    echo "gpu_check: offline install failed; see $LOG" | tee -a "$LOG"
    exit 1
fi
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export CNNBENCH_CACHE="${CNNBENCH_CACHE:-$TMP/cnnbench-gpu-check-cache}"

step "environment"
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv >>"$LOG" 2>&1 || echo "nvidia-smi: none here" >>"$LOG"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "(no GPU)")' 2>&1 | tee -a "$LOG"
"$PY" -m cnnbench engines >>"$LOG" 2>&1 || status=1

step "pytest -m gpu"
timeout 240 "$PY" -m pytest -m gpu -p no:cacheprovider -q -rs tests/gpu tests/engines/test_cpu_engines.py >>"$LOG" 2>&1 || status=1
tail -n 3 "$LOG"
# the suite turns a test module that cannot import into a skip on a device run: here, a failure
if grep -q "is not installed here" "$LOG"; then
    echo "gpu_check: a GPU test module imports a package this machine lacks (SKIPPED lines in $LOG)" | tee -a "$LOG"
    status=1
fi

step "benchmark: torch on $DEVICE"
STOP=(--min-time 0.5 --max-time 5 --warmup-time 0.3)
declare -A done_cmds=()
# The batches a CPU rehearsal measures: the plan's, capped at 2 (a CPU takes seconds per query
# at batch 256).
cpu_batches() { tr ',' '\n' <<<"$1" | awk '{ print ($1 > 2 ? 2 : $1) }' | sort -un | paste -sd, -; }
# cells MODELS PRECISIONS BATCHES TIMING [ENGINE_OPT]: one `cnnbench run` of the plan
cells() {
    local models=$1 precs=$2 batches=$3 timing=$4 opt=${5:-}
    if [ "$rehearse" = 1 ]; then  # what the torch engine on the CPU can run
        echo "rehearsal: -p $precs -b $batches --timing $timing ${opt:+--engine-opt $opt }runs as -p fp32 -b $(cpu_batches "$batches") --timing end_to_end" >>"$LOG"
        precs=fp32 batches=$(cpu_batches "$batches") timing=end_to_end opt=""
    fi
    local args=(-m "$models" -p "$precs" -b "$batches" --timing "$timing")
    [ -n "$opt" ] && args+=(--engine-opt "$opt")
    local key="${args[*]}"
    if [ -n "${done_cmds[$key]:-}" ]; then
        echo "skipped (already measured above): ${args[*]}" >>"$LOG"
        return
    fi
    done_cmds[$key]=1
    local left=$((BUDGET_S - ($(date +%s) - start)))
    if [ "$left" -lt 30 ]; then
        echo "skipped (past the ${BUDGET_S}s budget): ${args[*]}" | tee -a "$LOG"
        status=1
        return
    fi
    echo "cnnbench run -e torch --device $DEVICE ${args[*]}" >>"$LOG"
    timeout "$left" "$PY" -m cnnbench run -e torch --device "$DEVICE" --no-db --artifacts "$ART" \
        "${STOP[@]}" -o "$CSV" --format csv "${args[@]}" >>"$LOG" 2>&1 || status=1
}
cells resnet50 fp16 1,64,128,256 gpu_compute
cells resnet50 fp16 1,256 end_to_end
cells resnet50,resnet18 fp32,bf16 1,128 gpu_compute
cells resnet18 fp16 1,256 gpu_compute
cells resnet50,resnet18 fp32,fp16,bf16 1 gpu_compute cuda_graphs=false

step "summary"
"$PY" tools/gpu_summary.py "$CSV" >"$OUT/gpu_summary.txt" 2>&1 || status=1
tee -a "$LOG" <"$OUT/gpu_summary.txt"
step "done (status $status, $(($(date +%s) - start))s)"
exit "$status"
