"""Turn a clone of this repository into the package-dir layout that tools/layout_compare.sh
measures against the links: remove cnnbench/{export,engines,bench} and map those packages to
the root folders in pyproject.toml (an explicit package list, as a mapping needs).

    python tools/layout_package_dir.py CLONE
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def packages(root: Path, prefix: str) -> list[str]:
    return [
        ".".join([prefix, *d.relative_to(root).parts])
        for d in sorted([root, *root.rglob("*")])
        if d.is_dir() and not d.is_symlink() and (d / "__init__.py").is_file()
    ]


def main(clone: Path) -> None:
    for stage in ("export", "engines", "bench"):
        (clone / "cnnbench" / stage).unlink()
    pkgs = packages(clone / "cnnbench", "cnnbench")
    for stage in ("export", "engines", "bench"):
        pkgs += packages(clone / stage, f"cnnbench.{stage}")
    p = clone / "pyproject.toml"
    text = re.sub(r"\[tool\.setuptools\.packages\.find\]\n(?:(?!\[).*\n)*", "", p.read_text())
    listed = "packages = [" + ", ".join(f'"{n}"' for n in pkgs) + "]\n"
    text = text.replace("[tool.setuptools]\n", "[tool.setuptools]\n" + listed, 1)
    text += "\n[tool.setuptools.package-dir]\n" + "".join(
        f'"{name}" = "{folder}"\n'
        for name, folder in (("cnnbench", "cnnbench"), ("cnnbench.export", "export"),
                             ("cnnbench.engines", "engines"), ("cnnbench.bench", "bench"))
    )  # fmt: skip
    p.write_text(text)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
