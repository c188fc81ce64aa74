#!/usr/bin/env bash
# Start a private PostgreSQL server (Debian's postgresql package) for the results store's tests,
# on a local socket only (no TCP port is opened), and print its URL on stdout:
#
#   export CNNBENCH_TEST_PG_URL=$(bash tools/ci/start_postgres.sh)
#   bash tools/ci/start_postgres.sh --stop
#   bash tools/ci/start_postgres.sh --start   # the stopped server again, its databases kept
#
# As root the server runs as the package's postgres user (initdb refuses root). Exit 1 with a
# one-line reason on stderr when it cannot be started; the tests then skip PostgreSQL.
set -euo pipefail
dir=${CNNBENCH_PG_DIR:-${TMPDIR:-/tmp}/cnnbench-pg}
port=${CNNBENCH_PG_PORT:-54329}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/pg_ctl" ]; then
  echo "no PostgreSQL server here (apt-get install postgresql)" >&2
  exit 1
fi
as=()
user=$(id -un)
if [ "$(id -u)" = 0 ]; then
  as=(runuser -u postgres --)
  user=postgres
fi
if [ "${1:-}" = "--stop" ]; then
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop >&2 || true
  exit 0
fi
if [ "${1:-}" = "--start" ]; then
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-k $dir -p $port -c listen_addresses=''" start >/dev/null
  echo "postgresql://$user@/cnnbench_test?host=$dir&port=$port"
  exit 0
fi
if [ -f "$dir/data/postmaster.pid" ]; then
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
fi
rm -rf "$dir"
mkdir -p "$dir"
if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; fi
if ! "${as[@]}" "$bin/initdb" -D "$dir/data" -U "$user" -A trust >"$dir/initdb.log" 2>&1; then
  echo "initdb failed: $(tail -n 1 "$dir/initdb.log")" >&2
  exit 1
fi
if ! "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir -p $port -c listen_addresses=''" start >/dev/null; then
  echo "the PostgreSQL server did not start: $(tail -n 1 "$dir/server.log")" >&2
  exit 1
fi
"${as[@]}" "$bin/createdb" -h "$dir" -p "$port" -U "$user" cnnbench_test
echo "postgresql://$user@/cnnbench_test?host=$dir&port=$port"
