"""Print the README's install commands (its ```bash install blocks), one per line, in order:
the main job, then the test command. .ci/run runs them exactly as the README writes them, so
the two cannot drift apart.

    python3 tools/ci/readme_commands.py [README.md]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

FENCE = re.compile(r"^```bash install[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def install_commands(text: str) -> list[str]:
    out = []
    for block in FENCE.findall(text):
        lines = [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        out.extend(lines)
    return out


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "README.md"
    cmds = install_commands(path.read_text(encoding="utf-8"))
    if len(cmds) != 2:
        print(f"readme_commands: {path} has {len(cmds)} install commands; expected 2 "
              "(the main job, then the tests)", file=sys.stderr)  # fmt: skip
        return 1
    print("\n".join(cmds))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
