"""Figures of the code's shape at a git revision: lines per package, imports inside functions,
the places that define precision names, and the length of cli/bench_cmds.py.

    python tools/structure_figures.py c2c47a1 HEAD

* lines: every line of the package's ``.py`` files (tests and bench/scripts excluded);
* function-level imports: ``import`` statements inside a function body, of all imports;
* precision-name definitions: statements (outside tests) that spell out two or more of the
  precision names as string literals, e.g. ``("fp32", "fp16", "int8")``: a list of the names
  written down again instead of taken from the one table.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
from collections import Counter

PACKAGES = ("cnnbench", "export", "engines", "bench")
NAMES = {"fp32", "fp16", "bf16", "int8"}


def _files(rev: str) -> list[str]:
    out = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", rev], capture_output=True, text=True, check=True
    ).stdout.split()
    return [
        f for f in out
        if f.endswith(".py") and f.split("/")[0] in PACKAGES and "/scripts/" not in f
    ]  # fmt: skip


def _text(rev: str, path: str) -> str:
    return subprocess.run(
        ["git", "show", f"{rev}:{path}"], capture_output=True, text=True, check=True
    ).stdout


def figures(rev: str) -> dict[str, object]:
    lines: Counter[str] = Counter()
    imports = inner = defs = 0
    where: list[str] = []
    bench_cmds = None
    for path in _files(rev):
        src = _text(rev, path)
        lines[path.split("/")[0]] += src.count("\n")
        if path.endswith("cli/bench_cmds.py"):
            bench_cmds = src.count("\n")
        tree = ast.parse(src)
        funcs = [
            n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
        ]
        in_func = {
            id(i) for f in funcs for i in ast.walk(f) if isinstance(i, (ast.Import, ast.ImportFrom))
        }
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                imports += 1
                inner += id(node) in in_func
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
                continue
            elts = node.keys if isinstance(node, ast.Dict) else node.elts
            lits = {e.value for e in elts if isinstance(e, ast.Constant) and e.value in NAMES}
            if len(lits) >= 2:
                defs += 1
                where.append(f"{path}:{node.lineno}")
    return {
        "rev": rev, "lines": dict(sorted(lines.items())), "lines_total": sum(lines.values()),
        "imports": imports, "function_level_imports": inner,
        "function_level_share": round(inner / imports, 3) if imports else None,
        "precision_name_definitions": defs, "definitions_at": where,
        "cli_bench_cmds_lines": bench_cmds,
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("revs", nargs="+", help="git revisions (before, after, ...)")
    a = p.parse_args()
    for rev in a.revs:
        f = figures(rev)
        print(f"{rev}:")
        for k, v in f.items():
            if k != "rev":
                print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
