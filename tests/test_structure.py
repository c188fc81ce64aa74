"""The import rules of the layout: imports at the top, lazy only for heavy runtimes, no cycles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: third-party runtimes imported where they are used (heavy, or optional extras)
HEAVY = {
    "torch", "torchvision", "onnx", "onnxruntime", "onnxscript", "onnxslim",
    "onnxconverter_common", "openvino", "tensorrt", "matplotlib", "sklearn", "pynvml", "PIL", "safetensors",
    "google",  # protobuf, onnx's own
    "modelopt", "polygraphy",  # NVIDIA's optional extras (modelopt, trt)
    "sqlalchemy", "psycopg",  # the results store, opened by the commands that use it
    "ray",  # the Ray executor (an optional extra)
    "huggingface_hub",  # timm weights through the Hugging Face hub cache (the timm extra)
    "fastapi", "starlette", "uvicorn",  # the service (an optional extra)
}  # fmt: skip
#: our modules that import a heavy runtime at module level: imported where used, like it
TORCH_BOUND = {"cnnbench.analysis", "cnnbench.bench.results.schema", "cnnbench.serve.app"}
#: the registry imports the architectures (which register themselves) on the first lookup
REGISTRY = ("cnnbench/models/registry.py", "cnnbench.models")


def _modules() -> dict[str, Path]:
    """Every module of the package by its import name (the stages through their own folders)."""
    out: dict[str, Path] = {}
    roots = [("cnnbench", ROOT / "cnnbench")] + [
        (f"cnnbench.{stage}", ROOT / stage) for stage in ("export", "engines", "bench")
    ]
    for prefix, folder in roots:
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder)
            if "scripts" in rel.parts or (
                prefix == "cnnbench" and (folder / rel.parts[0]).is_symlink()
            ):
                continue
            parts = [prefix, *rel.with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    assert len(out) > 70, sorted(out)
    return out


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Module-level imports, not those under ``if TYPE_CHECKING:``."""
    out: list[ast.Import | ast.ImportFrom] = []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, ast.Try):
            out.extend(n for n in node.body if isinstance(n, (ast.Import, ast.ImportFrom)))
    return out


def _targets(node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> set[str]:
    """Our modules an import statement loads."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    return {n for n in names if n in modules}


def test_function_level_imports_are_only_heavy_runtimes() -> None:
    modules = _modules()
    offenders = []
    for path in modules.values():
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                mods = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                for mod in mods:
                    if mod.split(".")[0] in HEAVY or mod in TORCH_BOUND:
                        continue
                    if str(path.relative_to(ROOT)) == REGISTRY[0] and mod == REGISTRY[1]:
                        continue
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {mod}")
    assert not offenders, "import these at the top of the file:\n" + "\n".join(offenders)


def test_no_import_cycles_between_modules() -> None:
    modules = _modules()
    graph = {
        name: {
            t
            for node in _top_level_imports(ast.parse(path.read_text()))
            for t in _targets(node, modules)
            if t != name
        }
        for name, path in modules.items()
    }
    # A package's __init__ importing its own submodules is how a package is assembled, not a
    # cycle; an edge from a submodule back to its package's __init__ would be.
    for name in graph:
        graph[name] -= {m for m in graph[name] if m.startswith(name + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("top", ["cnnbench.cli", "cnnbench.serve"])
def test_the_cli_and_the_service_are_the_top_layer(top: str) -> None:
    """No module below the CLI and the service imports either of them (the CLI starts the
    service, in ``cnnbench serve``, and is the only one that may)."""
    modules = _modules()
    tops = ("cnnbench.cli", "cnnbench.serve", "cnnbench.__main__")
    below = [
        f"{name} imports {t}"
        for name, path in modules.items()
        if not name.startswith(tops)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for t in _targets(node, modules)
        if t.startswith(top)
    ]
    assert not below


@pytest.mark.parametrize(
    "args", [["--help"], ["run", "--help"], ["engines", "--help"], ["serve", "--help"]]
)
def test_help_imports_no_runtime(args: list[str]) -> None:
    code = (
        "import sys\nfrom cnnbench.cli import cli\n"
        f"try:\n    cli.main({args!r})\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'openvino', 'tensorrt', "
        "'matplotlib', 'sklearn', 'sqlalchemy', 'ray', 'fastapi', 'uvicorn') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_a_gpu_run_skips_modules_whose_imports_are_missing_there() -> None:
    from tests.conftest import device_run, missing_module

    assert device_run("gpu") and device_run("trt") and device_run("slow or gpu")
    assert not device_run("not slow") and not device_run("") and not device_run("not gpu")
    text = "E   ModuleNotFoundError: No module named 'openvino'\n"
    assert missing_module(text) == "openvino"
    assert missing_module("E   AssertionError") is None


#: the limits a module and a function keep (physical lines; a function from its ``def`` line)
MODULE_LINES, FUNCTION_LINES = 400, 80
#: library code over those limits, with the reason it stays (none today)
LONG_EXCEPTIONS: dict[str, str] = {}


def test_modules_and_functions_stay_short() -> None:
    long = []
    for name, path in _modules().items():
        text = path.read_text()
        n = len(text.splitlines())
        if n > MODULE_LINES and name not in LONG_EXCEPTIONS:
            long.append(f"{name}: {n} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                where = f"{name}.{node.name}"
                if size > FUNCTION_LINES and where not in LONG_EXCEPTIONS:
                    long.append(f"{where}: {size} lines")
    assert not long, "split these (or list them, with why, in LONG_EXCEPTIONS):\n" + "\n".join(long)


def test_bench_is_organised_by_concept() -> None:
    """bench/ holds its subpackages (measure, run, results, report) and at most 6 modules."""
    top = [p.name for p in (ROOT / "bench").glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= 6, top
    for sub in ("measure", "run", "results", "report"):
        assert (ROOT / "bench" / sub / "__init__.py").is_file()
    assert not (ROOT / "bench" / "scripts").exists() or not list(
        (ROOT / "bench" / "scripts").glob("*.py")
    ), "tools live in tools/, outside the installed package"


def test_no_two_modules_share_a_name() -> None:
    """A module's name says what is in it: no two library modules have the same file name."""
    seen: dict[str, list[str]] = {}
    for name in _modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf not in ("cnnbench", "export", "engines", "bench", "cli", "serve", "models"):
            seen.setdefault(leaf, []).append(name)
    dupes = {leaf: names for leaf, names in seen.items() if len(names) > 1}
    assert not dupes, dupes
