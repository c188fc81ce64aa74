"""External data that leaves its model's folder is refused by cnnbench itself, in one line,
before onnx or onnxruntime see the file (whatever their versions would do)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from cnnbench.cli import cli
from cnnbench.errors import InvalidInputError
from cnnbench.export import graph
from cnnbench.models.user import forget_all, from_onnx


def tiny(location: str | None = None, *, offset: int = 0, length: int = 120) -> onnx.ModelProto:
    """GlobalAveragePool -> Flatten -> Gemm over a 3x8x8 input; the Gemm's weights external
    (at ``location``) when given."""
    w = numpy_helper.from_array(np.ones((10, 3), np.float32), "w")
    if location is not None:
        w.ClearField("raw_data")
        w.data_location = TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
            e = w.external_data.add()
            e.key, e.value = k, v
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["y"], transB=1),
    ]
    g = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], [w],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    forget_all()
    d = tmp_path / "model"
    d.mkdir()
    (d / "w.bin").write_bytes(np.ones((10, 3), np.float32).tobytes())
    (tmp_path / "secret").write_bytes(b"s" * 4096)
    os.symlink(tmp_path, d / "up")
    return d


@pytest.mark.parametrize(
    ("location", "says"),
    [
        ("../secret", "outside the model's folder"),
        ("/etc/passwd", "outside the model's folder"),
        ("up/secret", "outside the model's folder"),  # a link that leads out
        ("sub/../../secret", "outside the model's folder"),
        ("nope.bin", "missing or not a regular file"),
        ("", "without a usable location"),
    ],
)
def test_external_data_outside_the_folder_is_refused_by_every_reader(
    folder: Path, location: str, says: str
) -> None:
    path = folder / "m.onnx"
    onnx.save(tiny(location), path)
    for read in (lambda: from_onnx(path), lambda: graph.load(path)):
        with pytest.raises(InvalidInputError, match=says):
            read()


def test_a_range_past_the_end_of_its_file_is_refused(folder: Path) -> None:
    path = folder / "m.onnx"
    onnx.save(tiny("w.bin", offset=100, length=120), path)
    with pytest.raises(InvalidInputError, match="past the end of 'w.bin'"):
        graph.load(path)


def test_external_data_beside_the_model_is_read(folder: Path) -> None:
    path = folder / "m.onnx"
    onnx.save(tiny("w.bin"), path)
    um = from_onnx(path)
    assert um.external_files == ("w.bin",) and um.input_shape == (3, 8, 8)
    w = graph.load(path).graph.initializer[0]
    assert numpy_helper.to_array(w).sum() == 30


@pytest.mark.parametrize(
    "args",
    [
        ["run", "-m", "m.onnx", "-e", "onnxruntime", "--dry-run"],
        ["export", "m.onnx", "--out", "art"],
        ["layers", "m.onnx", "-e", "ort"],
        ["verify", "m.onnx"],
        ["eval", "m.onnx"],
    ],
    ids=["run", "export", "layers", "verify", "eval"],
)
def test_every_command_that_takes_a_file_refuses_it_in_one_line(
    folder: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    onnx.save(tiny("../secret"), folder / "m.onnx")
    monkeypatch.chdir(folder)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert "outside the model's folder" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["m.onnx", "up", "w.bin"]
