"""``cnnbench export`` / ``cnnbench verify``: outputs, exit codes, one-line errors, no partial files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cnnbench.cli import cli


def _run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _error_lines(res: Result) -> list[str]:
    return [ln for ln in res.stderr.splitlines() if ln.startswith("cnnbench: error:")]


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory, memo_installer: Any) -> Path:
    """``cnnbench export lenet5``; returns the artifact root."""
    root = tmp_path_factory.mktemp("art")
    with pytest.MonkeyPatch.context() as mp:
        memo_installer(mp)
        res = _run("export", "lenet5", "--out", str(root), "--samples", "2")
    assert res.exit_code == 0, res.output
    onnx_path = root / "lenet5" / "fp32" / "model.onnx"
    assert res.stdout.strip().splitlines()[-1] == str(onnx_path)  # the path is the last line
    assert "top-1 agreement" in res.stdout and "max rel error" in res.stdout
    assert "[export lenet5 4/4] parity" in res.stderr  # progress goes to stderr
    return root


def test_verify_passes_and_a_wrong_reference_fails_with_table(art: Path) -> None:
    onnx_path = art / "lenet5" / "fp32" / "model.onnx"
    ok = _run("verify", str(onnx_path), "--samples", "1")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.strip().splitlines()[-1] == f"PASS {onnx_path}"
    # a reference built from other weights (seed 5) is a deliberately broken pairing
    bad = _run("verify", str(onnx_path), "--model", "lenet5", "--seed", "5", "--samples", "1")
    assert bad.exit_code == 1, bad.output
    assert "NO" in bad.stdout and "max rel error" in bad.stdout
    (line,) = _error_lines(bad)
    assert "parity gate failed" in line and "max rel error" in line


def test_verify_corrupt_or_missing_file_is_one_line_exit_2(art: Path, tmp_path: Path) -> None:
    data = (art / "lenet5" / "fp32" / "model.onnx").read_bytes()
    cases = {
        "truncated.onnx": data[: len(data) // 3],
        "garbage.onnx": b"this is not a protobuf\x00\xff" * 10,
        "empty.onnx": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        res = _run("verify", str(tmp_path / name), "--model", "lenet5")
        assert res.exit_code == 2, (name, res.output)
        (line,) = _error_lines(res)
        assert name in line and "Traceback" not in res.stderr
    res = _run("verify", str(tmp_path / "nope.onnx"), "--model", "lenet5")
    assert res.exit_code == 2 and "not found" in _error_lines(res)[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--opset", "99"], "opset 99 cannot be produced"),
        (["--opset", "5"], "choose 7.."),
        (["--batch", "4", "--dynamic-batch", "1:8:64"], "mutually exclusive"),
        (["--dynamic-batch", "8:1:4"], "min <= opt <= max"),
        (["--calib-method", "max"], "need --precision int8"),
        (["--weights", "/nonexistent/w.pt"], "weights file not found"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], needle: str, tmp_path: Path) -> None:
    res = _run("export", "lenet5", "--out", str(tmp_path), *args)
    assert res.exit_code == 2, res.output
    (line,) = _error_lines(res)
    assert needle in line
    assert not list(tmp_path.rglob("*.onnx"))


def test_unwritable_out_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a folder must go: unwritable even as root
    res = _run("export", "lenet5", "--out", str(blocker / "sub"))
    assert res.exit_code == 2
    (line,) = _error_lines(res)
    assert "cannot write artifacts under" in line and "--out" in line
    assert sorted(tmp_path.iterdir()) == [blocker]  # and nothing was left behind


def test_interrupt_prints_interrupted_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cnnbench.export.pipeline as pl

    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pl, "export_module", interrupted)
    res = _run("export", "lenet5", "--out", str(tmp_path))
    assert res.exit_code == 130
    assert "interrupted" in _error_lines(res)[0]
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_failed_gate_exit_1_keeps_previous_artifact(
    art: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memo_export: list[str]
) -> None:
    import shutil

    import numpy as np
    import onnx
    from onnx import numpy_helper

    from cnnbench.export import graph
    from cnnbench.export.manifest import verify_artifact

    root = tmp_path / "art"
    shutil.copytree(art, root)
    before = (root / "lenet5" / "fp32" / "model.onnx").read_bytes()
    real = graph.simplify

    def broken(model: onnx.ModelProto) -> onnx.ModelProto:
        out = real(model)
        init = max(out.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        arr = numpy_helper.to_array(init) * 1.01  # a 1% weight error
        init.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), init.name))
        return out

    monkeypatch.setattr(graph, "simplify", broken)
    res = _run("export", "lenet5", "--out", str(root), "--samples", "1")
    assert res.exit_code == 1, res.output
    assert "NO" in res.stderr and "max rel error" in res.stderr  # the table, on stderr
    (line,) = _error_lines(res)
    assert "parity gate failed for lenet5 fp32" in line
    folder = root / "lenet5" / "fp32"
    # the failed candidate never became model.onnx; the earlier verified pair is untouched
    assert (folder / "model.onnx").read_bytes() == before
    verify_artifact(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.onnx"]


def test_precision_options_are_wired_to_convert(
    art: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnbench.export.manifest import ExportResult

    (tmp_path / "imgs").mkdir()  # a folder that is there: a missing one is refused up front
    monkeypatch.chdir(tmp_path)

    seen: dict[str, object] = {}

    def convert(model: str, fp32: ExportResult, precision: str, **kw: object) -> ExportResult:
        seen.update(kw, model=model, fp32=fp32, precision=precision)
        return ExportResult(
            fp32.onnx_path.parent.parent / "int8" / "model.onnx", fp32.manifest_path, {}
        )

    from cnnbench.cli import export_cmds

    calib = object()  # the calibration set, checked before the FP32 export and handed on
    monkeypatch.setattr(export_cmds, "convert", convert)
    monkeypatch.setattr(export_cmds, "calibration_set", lambda spec, data, **kw: calib)
    res = _run(
        "export", "lenet5", "--out", str(art), "--precision", "int8", "--calib-data", "imgs",
        "--calib-method", "percentile", "--calib-samples", "16", "--seed", "0",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "reusing verified" in res.stderr  # the FP32 artifact was reused, not re-exported
    assert seen["precision"] == "int8" and seen["model"] == "lenet5"
    assert (seen["calib_data"], seen["calib_method"], seen["calib_samples"]) == (
        "imgs", "percentile", 16,
    )  # fmt: skip
    assert seen["out_dir"] == str(art) and seen["check"] is True and seen["seed"] == 0
    assert seen["_calib"] is calib
    assert res.stdout.strip().splitlines()[-1].endswith("int8/model.onnx")


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom cnnbench.cli import cli\n"
        "try:\n    cli.main(['export', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--dynamic-batch" in proc.stdout
