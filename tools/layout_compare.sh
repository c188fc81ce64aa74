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
PY=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
site=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')

layout() {  # NAME: prepare $work/NAME/src in that layout
  git clone -q "$here" "$work/$1/src"
  if [ "$1" = package-dir ]; then
    (cd "$work/$1/src" && rm cnnbench/export cnnbench/engines cnnbench/bench && "$PY" - <<'PYEOF'
import pathlib, re
p = pathlib.Path("pyproject.toml")
t = p.read_text()
def packages(root: pathlib.Path, prefix: str) -> list[str]:
    return [
        ".".join([prefix, *d.relative_to(root).parts])
        for d in sorted([root, *root.rglob("*")])
        if d.is_dir() and (d / "__init__.py").is_file()
    ]


pkgs = packages(pathlib.Path("cnnbench"), "cnnbench")
for stage in ("export", "engines", "bench"):
    pkgs += packages(pathlib.Path(stage), f"cnnbench.{stage}")
t = re.sub(r"\[tool\.setuptools\.packages\.find\][^\[]*", "", t)
t = t.replace("[tool.setuptools]\n", "[tool.setuptools]\npackages = " + repr(pkgs).replace("'", '"') + "\n", 1)
t += '\n[tool.setuptools.package-dir]\n"cnnbench" = "cnnbench"\n"cnnbench.export" = "export"\n"cnnbench.engines" = "engines"\n"cnnbench.bench" = "bench"\n'
p.write_text(t)
PYEOF
    )
  fi
  "$PY" -m venv --without-pip "$work/$1/venv"
  venv_site=$(ls -d "$work/$1"/venv/lib/python3*/site-packages)
  echo "$site" > "$venv_site/deps.pth"
  "$PY" -m pip --python "$work/$1/venv/bin/python" install -q --no-deps --no-build-isolation -e "$work/$1/src" >/dev/null 2>&1
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
