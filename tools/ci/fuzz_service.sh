#!/usr/bin/env bash
# Fuzz the service's API from its own OpenAPI schema with schemathesis: loopback only, with the
# token, bounded in time (CNNBENCH_FUZZ_SECONDS, default 140 s of fuzzing; 3 minutes in all).
# Fails on any answer of 500 or above, on a request that times out, and on a traceback in the
# service's log. Prints schemathesis's summary (its counts) and the command it ran.
#
#   bash tools/ci/fuzz_service.sh
#
# The service runs with --hold-jobs: grids the fuzzer gets accepted are queued, never measured
# (the fuzzer tests the API, not a benchmark). Everything it writes stays in a scratch folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
budget=${CNNBENCH_FUZZ_SECONDS:-140}
work=$(mktemp -d "${TMPDIR:-/tmp}/cnnbench-fuzz.XXXXXX")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token="fuzz-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
export CNNBENCH_CACHE="$work/cache" CNNBENCH_DB="sqlite:///$work/store.db"

CNNBENCH_TOKEN=$token python3 -m cnnbench serve --host 127.0.0.1 --port "$port" \
  --data "$work/data" --db "sqlite:///$work/store.db" --hold-jobs 2>"$work/serve.log" &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 30); do
  if python3 -c "import urllib.request, sys; urllib.request.urlopen('http://127.0.0.1:$port/api/health', timeout=2)" 2>/dev/null; then
    break
  fi
  kill -0 "$pid" 2>/dev/null || { echo "the service did not start:"; cat "$work/serve.log"; exit 1; }
  sleep 0.5
done

cmd=(python3 -m schemathesis.cli run "http://127.0.0.1:$port/openapi.json"
  --header "Authorization: Bearer $token" --checks not_a_server_error
  --max-time "$budget" --request-timeout 20 --workers 2 --seed 29
  --generation-database none --no-color --output-truncate true)
echo "fuzz: ${cmd[*]/$token/<token>}"
set +e
(cd "$work" && timeout $((budget + 25)) "${cmd[@]}")
rc=$?
set -e
if grep -q "Traceback" "$work/serve.log"; then
  echo "fuzz: the service's log holds a traceback:"
  cat "$work/serve.log"
  exit 1
fi
if [ "$rc" -eq 124 ]; then
  echo "fuzz: schemathesis ran past its budget of $((budget + 25)) s"
  exit 1
fi
exit "$rc"
