#!/usr/bin/env bash
# The GPU check lives in tools/ (tools are not part of the installed package); this path is
# kept because the project's notes and GPU sessions name it.
exec bash "$(dirname "$0")/../../tools/gpu_check.sh" "$@"
