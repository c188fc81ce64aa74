"""The GPU machine's Python environment as a pip requirements file, for a rehearsal on the CPU.

    python tools/ci/device_image.py [DEVICE_IMAGE.txt] > requirements.txt

Reads the package list (default ../shared/device-image.txt beside the repository, else the
copy in tools/ci/device-image.txt) and writes its packages one per line, as written, except
what a CPU machine needs in their place, as the list itself says: torch==2.13.0 (the CPU build)
for the GPU machine's CUDA build, and numpy<2.5 where Python is older than 3.12. Exit 2 when
the list cannot be read.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = (ROOT.parent / "shared" / "device-image.txt", ROOT / "tools/ci/device-image.txt")
CPU_TORCH = "torch==2.13.0"


def requirements(text: str, python: tuple[int, int] = sys.version_info[:2]) -> list[str]:
    """The packages of a device-image list, with the CPU rehearsal's replacements."""
    out = []
    for line in text.splitlines():
        req = line.split("#", 1)[0].strip()
        if not req:
            continue
        name = re.split(r"[<>=!~ \[;]", req, maxsplit=1)[0].lower()
        if name == "torch":
            req = CPU_TORCH
        elif name == "numpy" and python < (3, 12):
            req = "numpy<2.5"  # numpy 2.5 needs Python 3.12
        out.append(req)
    return out


def main(argv: list[str]) -> int:
    paths = [Path(argv[0])] if argv else [p for p in DEFAULTS if p.is_file()][:1]
    if not paths or not paths[0].is_file():
        print(f"device_image: no package list ({', '.join(map(str, DEFAULTS))})", file=sys.stderr)
        return 2
    print(f"device_image: {paths[0]}", file=sys.stderr)
    print("\n".join(requirements(paths[0].read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
