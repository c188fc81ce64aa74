#!/usr/bin/env bash
# The CI benchmark job lives in tools/ci/ (tools are not part of the installed package); this
# path is kept because the workflow's documentation and older pipelines name it.
exec bash "$(dirname "$0")/../../tools/ci/benchmark.sh" "$@"
