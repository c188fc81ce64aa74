#!/usr/bin/env bash
# Did a command write into $HOME? The test suite must not (tests/conftest.py points HOME and
# every cache, store and runtime folder at a scratch folder). Used by .ci/run around the suite:
#
#   bash tools/ci/home_check.sh snapshot FILE    # before: remember HOME's entries and the time
#   bash tools/ci/home_check.sh check FILE       # after: exit 1, listing them, if any is new
#                                                # or changed since the snapshot
#
# The repository itself is left out when it lies under HOME (its own caches are not HOME's).
set -euo pipefail
mode=${1:?snapshot|check}
snap=${2:?snapshot file}
home=${HOME:?HOME is not set}
repo=$(git rev-parse --show-toplevel 2>/dev/null || pwd)
list() {
  find "$home" -xdev \( -path "$repo" -prune \) -o -print 2>/dev/null | LC_ALL=C sort
}
case "$mode" in
  snapshot)
    list > "$snap"
    ;;
  check)
    [ -f "$snap" ] || { echo "home_check: no snapshot $snap; take one first" >&2; exit 2; }
    new=$(list | LC_ALL=C comm -13 "$snap" - || true)
    changed=$(find "$home" -xdev \( -path "$repo" -prune \) -o -newer "$snap" -type f -print 2>/dev/null || true)
    if [ -n "$new$changed" ]; then
      echo "home_check: the command wrote into $home:" >&2
      printf '%s\n' $new $changed | LC_ALL=C sort -u | head -n 40 >&2
      exit 1
    fi
    echo "home_check: nothing new in $home"
    ;;
  *)
    echo "usage: home_check.sh snapshot|check FILE" >&2
    exit 2
    ;;
esac
