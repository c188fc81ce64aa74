#!/usr/bin/env bash
# One prepared GPU check (issue #13): `pytest -m gpu` and a short resnet18/resnet50 torch-CUDA
# benchmark (fp32, fp16, bf16; CUDA graphs at batch 1; batch 1 and 64-256), then a summary of
# the figures a closing note needs. Writes gpu_check.log, gpu_check.csv and gpu_summary.txt
# under $OUT (default ./gpu_check_out). Installs offline: no index, no dependencies, no build
# isolation, into a private folder on PYTHONPATH (the machine's own packages stay as they are).
# Sized to finish within 8 minutes on one H100/H200. Without a GPU it exits 0 with one line.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False in $PY); nothing to check"
    exit 0
fi
OUT="${OUT:-$PWD/gpu_check_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
CSV="$OUT/gpu_check.csv"
SITE="${TMPDIR:-/tmp}/cnnbench-gpu-check-site"
status=0
step() { echo "== $* ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$LOG"; }

step "install (offline)"
rm -rf "$SITE"
if ! "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --target "$SITE" . >>"$LOG" 2>&1; then
    echo "gpu_check: offline install failed; see $LOG" | tee -a "$LOG"
    exit 1
fi
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export CNNBENCH_CACHE="${CNNBENCH_CACHE:-${TMPDIR:-/tmp}/cnnbench-gpu-check-cache}"
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv >>"$LOG" 2>&1
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))' | tee -a "$LOG"

step "pytest -m gpu"
timeout 240 "$PY" -m pytest -m gpu -p no:cacheprovider -q -rs tests/gpu tests/engines/test_cpu_engines.py >>"$LOG" 2>&1 || status=1
tail -n 3 "$LOG"

step "benchmark: torch on CUDA"
ART="${TMPDIR:-/tmp}/cnnbench-gpu-check-artifacts"
STOP=(--min-time 0.5 --max-time 8 --warmup-time 0.3)
bench() { timeout 200 "$PY" -m cnnbench run -e torch --device cuda --artifacts "$ART" "${STOP[@]}" -o "$CSV" --format csv "$@" >>"$LOG" 2>&1 || status=1; }
bench -m resnet50 -p fp16 -b 1,64,128,256
bench -m resnet50,resnet18 -p fp32,bf16 -b 1,128
bench -m resnet18 -p fp16 -b 1,256
bench -m resnet50,resnet18 -p fp32,fp16,bf16 -b 1 --engine-opt cuda_graphs=true

step "summary"
"$PY" tools/gpu_summary.py "$CSV" | tee "$OUT/gpu_summary.txt" | tee -a "$LOG"
step "done (status $status)"
exit "$status"
