#!/usr/bin/env bash
# The evidence behind keeping export/, engines/ and bench/ linked into the package (README,
# docs/architecture.md): this checkout as it is, against the same code with a setuptools
# package-dir mapping instead of the links. For each, an editable install into a fresh venv
# (whose dependencies come from this interpreter's site-packages), then:
#   - does `import cnnbench.engines.base` work at run time, and from which file?
#   - how many files does `mypy cnnbench` check, and does it resolve cnnbench.engines?
#
#   bash tools/layout_compare.sh            # prints one block per layout
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}  # an interpreter with cnnbench's dependencies (and mypy) installed
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
site=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')

layout() {  # NAME: prepare $work/NAME/src in that layout
  git clone -q "$here" "$work/$1/src"
  if [ "$1" = package-dir ]; then
    "$PY" "$here/tools/layout_package_dir.py" "$work/$1/src"
  fi
  "$PY" -m venv --without-pip "$work/$1/venv"
  venv_site=$(ls -d "$work/$1"/venv/lib/python3*/site-packages)
  echo "$site" > "$venv_site/deps.pth"
  if ! "$PY" -m pip --python "$work/$1/venv/bin/python" install -q --no-deps --no-build-isolation -e "$work/$1/src" >"$work/$1/pip.log" 2>&1; then
    echo "layout_compare: the editable install of the $1 layout failed:" >&2
    tail -n 5 "$work/$1/pip.log" >&2
    exit 1
  fi
  echo "== $1"
  (cd "$work" && "$work/$1/venv/bin/python" -c 'import cnnbench.engines.base as b; print("run time: cnnbench.engines.base from", b.__file__.replace("'"$work/$1"'/", ""))') || echo "run time: import failed"
  printf 'from cnnbench.engines.base import Artifact\nx: int = Artifact\n' > "$work/$1/probe.py"
  (cd "$work/$1/src" && "$work/$1/venv/bin/python" -m mypy --no-incremental cnnbench 2>&1 | tail -n 1 | sed 's/^/mypy cnnbench: /')
  if (cd "$work/$1/src" && "$work/$1/venv/bin/python" -m mypy --no-incremental "$work/$1/probe.py" >/dev/null 2>&1); then
    echo "mypy resolves cnnbench.engines: no (a wrong assignment passes silently)"
  else
    echo "mypy resolves cnnbench.engines: yes (a wrong assignment is an error)"
  fi
}
layout links
layout package-dir
