"""Static checks of the TensorRT modules, which cannot run here (no TensorRT, no GPU).

1. mypy against the ``tensorrt-stubs`` package (the TensorRT 10.x Python API). That package is
   not usable by mypy as installed: it puts ``tensorrt/__init__.pyi`` into site-packages without
   a ``py.typed`` marker (so mypy skips it as "installed, but missing library stubs"), and its
   ``tensorrt_bindings/tensorrt.pyi`` does not parse (parameters named ``in``, a Python keyword,
   in four plugin methods; a non-default parameter after defaults in ``add_scale_nd``), and a
   module-level ``bool: DataType`` shadows the builtin, turning every ``-> bool`` into an invalid
   type. The test copies the stubs into a temp folder, fixes exactly those three things, checks
   the copy parses, points ``MYPYPATH`` at it, and ignores errors inside the stubs themselves. Same check by hand::

       python -m pytest tests/engines/test_trt_static.py -q

2. An AST scan that fails if the modules use an API that TensorRT 11 removed.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRT_MODULES = [ROOT / "engines" / "tensorrt_engine.py", ROOT / "engines" / "trt_build.py"]

# Attribute names whose use means a TensorRT 11 removal (or the pre-10 binding API).
REMOVED_ATTRS = {
    "int8_calibrator": "IBuilderConfig.int8_calibrator (use explicit Q/DQ)",
    "set_calibration_profile": "calibration profiles (use explicit Q/DQ)",
    "get_calibration_profile": "calibration profiles (use explicit Q/DQ)",
    "set_quantization_flag": "quantization flags (use explicit Q/DQ)",
    "quantization_flags": "quantization flags (use explicit Q/DQ)",
    "device_memory_size": "ICudaEngine.device_memory_size (use device_memory_size_v2)",
    "get_device_memory_size_for_profile": "use get_device_memory_size_for_profile_v2",
    "platform_has_fast_fp16": "removed in 11 (strong typing)",
    "platform_has_fast_int8": "removed in 11 (explicit Q/DQ)",
    "get_binding_index": "binding-index API (use tensor names)",
    "get_binding_name": "binding-index API (use get_tensor_name)",
    "get_binding_shape": "binding-index API (use get_tensor_shape)",
    "get_binding_dtype": "binding-index API (use get_tensor_dtype)",
    "binding_is_input": "binding-index API (use get_tensor_mode)",
    "num_bindings": "binding-index API (use num_io_tensors)",
    "set_binding_shape": "binding-index API (use set_input_shape)",
    "execute_async_v2": "use execute_async_v3",
    "execute_v2": "use execute_async_v3",
    "execute_async": "use execute_async_v3",
    "max_workspace_size": "use set_memory_pool_limit(WORKSPACE)",
}
# BuilderFlag members that TensorRT 11 removed (precision flags and their constraints).
REMOVED_FLAGS = {
    "FP16", "INT8", "BF16", "FP8", "INT4", "FP4",
    "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO",
}  # fmt: skip


def removed_api_uses(source: str) -> list[str]:
    """``line: what`` for every use of an API TensorRT 11 removed, found by walking the AST."""
    found = []
    for node in ast.walk(ast.parse(source)):
        name = None
        if isinstance(node, ast.Attribute):
            name = node.attr
            base = node.value
            if name in REMOVED_FLAGS and isinstance(base, (ast.Attribute, ast.Name)):
                base_name = base.attr if isinstance(base, ast.Attribute) else base.id
                if base_name == "BuilderFlag":
                    found.append(f"{node.lineno}: BuilderFlag.{name} (removed precision flag)")
                    continue
        elif isinstance(node, ast.Name):
            name = node.id
        elif isinstance(node, ast.alias):
            name = node.name.rsplit(".", 1)[-1]
        if name is None:
            continue
        if name in REMOVED_ATTRS:
            found.append(f"{getattr(node, 'lineno', '?')}: {name} ({REMOVED_ATTRS[name]})")
        elif re.fullmatch(r"IInt8\w*Calibrator\w*", name):
            found.append(f"{getattr(node, 'lineno', '?')}: {name} (calibrators are removed)")
    return found


@pytest.mark.parametrize("path", TRT_MODULES, ids=lambda p: p.name)
def test_no_api_removed_in_tensorrt_11(path: Path) -> None:
    assert removed_api_uses(path.read_text(encoding="utf-8")) == []


def test_scan_catches_removed_apis() -> None:
    src = (
        "import tensorrt as trt\n"
        "from tensorrt import IInt8EntropyCalibrator2\n"
        "config.set_flag(trt.BuilderFlag.FP16)\n"
        "config.int8_calibrator = c\n"
        "n = engine.device_memory_size\n"
        "i = engine.get_binding_index('x')\n"
        "ctx.execute_async_v2(bindings, stream)\n"
        "ok = engine.device_memory_size_v2 + trt.DataType.INT8.itemsize\n"
    )
    hits = removed_api_uses(src)
    assert sorted(int(h.split(":")[0]) for h in hits) == [2, 3, 4, 5, 6, 7], hits


# ---- mypy against tensorrt-stubs ------------------------------------------------------------
def _stub_sources() -> tuple[Path, Path]:
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        dist = distribution("tensorrt-stubs")
    except PackageNotFoundError:
        pytest.skip("tensorrt-stubs is not installed (pip install tensorrt-stubs)")
    site = Path(str(dist.locate_file("")))
    return site / "tensorrt" / "__init__.pyi", site / "tensorrt_bindings"


def prepare_stubs(dst: Path) -> Path:
    """Copy tensorrt-stubs into ``dst`` as a MYPYPATH folder, fixing its two syntax defects."""
    trt_init, bindings = _stub_sources()
    (dst / "tensorrt").mkdir(parents=True)
    (dst / "tensorrt_bindings").mkdir()
    (dst / "tensorrt" / "__init__.pyi").write_text(trt_init.read_text(encoding="utf-8"))
    for pyi in bindings.glob("*.pyi"):
        text = pyi.read_text(encoding="utf-8")
        text = re.sub(r"([(,]\s*)in: ", r"\1in_: ", text)  # `in` is a keyword
        text = re.sub(r"(, channel_axis: int)\)", r"\1 = ...)", text)  # non-default after default
        # `bool: DataType` at module level shadows the builtin in every `-> bool` of the stub
        text = re.sub(r"(?m)^bool: DataType.*$", "", text)
        ast.parse(text, filename=str(pyi))  # the copy must parse, else the stubs changed
        (dst / "tensorrt_bindings" / pyi.name).write_text(text, encoding="utf-8")
    return dst


def _mypy(tmp_path: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    stubs = prepare_stubs(tmp_path / "stubs")
    ini = tmp_path / "mypy.ini"
    # torch and numpy are typed but slow to analyse and not under test here.
    ini.write_text(
        "[mypy]\npython_version = 3.11\nfollow_imports = silent\nignore_missing_imports = True\n"
        "[mypy-torch.*]\nfollow_imports = skip\n[mypy-numpy.*]\nfollow_imports = skip\n"
        # the generated stubs have internal errors of their own; only ours are under test
        "[mypy-tensorrt.*]\nignore_errors = True\n[mypy-tensorrt_bindings.*]\nignore_errors = True\n"
    )
    env = {**os.environ, "MYPYPATH": str(stubs)}
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ini), "--no-incremental"]
    cmd += ["--cache-dir", str(tmp_path / "cache"), *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def test_mypy_against_tensorrt_stubs(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    probe = tmp_path / "probe.py"
    # A deliberate misuse proves that mypy sees the stubs (else TensorRT would be Any).
    probe.write_text(
        "from __future__ import annotations\n"
        "def f() -> None:\n"
        "    import tensorrt as trt\n"
        "    trt.Builder(trt.Logger(trt.Logger.WARNING)).create_netwrk(0)\n"
    )
    res = _mypy(tmp_path, probe, *TRT_MODULES)
    lines = [ln for ln in res.stdout.splitlines() if ": error:" in ln]
    assert any("probe.py" in ln and "create_netwrk" in ln for ln in lines), res.stdout + res.stderr
    ours = [ln for ln in lines if "probe.py" not in ln]
    assert ours == [], "\n".join(ours)
