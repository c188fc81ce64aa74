"""The registry is lazy, resolves aliases, and reports availability with the extra to install."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cnnbench import engines
from cnnbench.cli import cli
from cnnbench.errors import UnknownNameError

HEAVY = ("torch", "onnxruntime", "openvino", "tensorrt", "tensorrt_bindings", "onnx")


def _modules_after(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(','.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return [m for m in HEAVY if m in out.split(",")]


def test_importing_engines_imports_no_runtime() -> None:
    assert _modules_after("import engines, engines.base") == []


def test_resolving_every_engine_class_imports_no_runtime() -> None:
    code = "import engines\nfor n in engines.engine_names(): engines.get_engine_class(n)"
    assert _modules_after(code) == []


@pytest.mark.parametrize(
    ("alias", "name"),
    [("ort", "onnxruntime"), ("trt", "tensorrt"), ("ov", "openvino"), ("torch", "torch")],
)
def test_aliases(alias: str, name: str) -> None:
    assert engines.canonical(alias) == name
    assert engines.get_engine_class(alias).name == name


def test_unknown_engine_suggests() -> None:
    with pytest.raises(UnknownNameError, match="did you mean onnxruntime"):
        engines.canonical("onnxruntim")


def test_probe_reports_missing_runtime_and_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    a = engines.probe("ov")
    assert not a.available and a.version is None
    assert "openvino is not installed" in (a.reason or "")
    assert a.to_dict()["install"] == "pip install 'cnnbench[openvino]'"


def test_probe_tensorrt_without_tensorrt() -> None:
    pytest.importorskip("numpy")
    try:
        import tensorrt

        if getattr(tensorrt, "__version__", None):
            pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    a = engines.probe("trt")
    assert not a.available
    assert "TensorRT is not installed" in (a.reason or "")
    assert a.install == "pip install 'cnnbench[trt]'"
    assert "\n" not in (a.reason or "")


def test_cli_engines_json() -> None:
    res = CliRunner().invoke(cli, ["engines", "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert list(rows) == ["torch", "onnxruntime", "openvino", "tensorrt", "null"]
    torch_row = rows["torch"]
    assert torch_row["available"] is True
    import torch

    assert torch_row["version"] == torch.__version__
    assert "cpu" in torch_row["devices"] and "fp32" in torch_row["precisions"]
    assert rows["null"]["available"] is True
    for r in rows.values():
        assert set(r) >= {"name", "available", "version", "devices", "precisions", "reason"}
        assert (r["reason"] is None) == r["available"]


def test_cli_engines_table_keeps_the_extra_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)
    res = CliRunner().invoke(cli, ["engines"])
    assert res.exit_code == 0, res.output
    assert "cnnbench[openvino]" in res.output
