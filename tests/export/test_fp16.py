"""FP16: mixed precision with float32 I/O, overflow-prone ops in FP32, verified on ONNX Runtime."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from cnnbench.errors import ArtifactError, InvalidInputError
from cnnbench.export.fp16 import describe_fp16
from cnnbench.export.manifest import read_manifest
from cnnbench.export.parity import FP16_GATE
from cnnbench.precision import Precision


@pytest.fixture(scope="module")
def art_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One artifact root per test session, so test modules share the (slow) FP32 exports."""
    root = tmp_path_factory.getbasetemp() / "shared-artifacts"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _private_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNBENCH_CACHE", str(cache))


@pytest.fixture(scope="module")
def lenet_fp16(art_root: Path, cache: Path):
    from cnnbench.export.convert import convert
    from cnnbench.export.pipeline import ensure_fp32

    fp32 = ensure_fp32("lenet5", out_dir=art_root)
    return fp32, convert("lenet5", fp32, Precision.FP16, out_dir=art_root / "fp16-tests")


def test_fp16_keeps_float32_io_and_casts_weights(lenet_fp16) -> None:
    _, res = lenet_fp16
    d = describe_fp16(res.onnx_path)
    assert d["inputs"] == {"input": "FLOAT"}
    assert list(d["outputs"].values()) == ["FLOAT"]
    assert d["initializers"].get("FLOAT16", 0) >= 10
    assert "FLOAT" not in d["initializers"]  # every float weight became FP16
    assert d["fp16_nodes"] > 20 and d["casts"] >= 2
    # the RBF output's sum of squares stays in FP32 (overflow-prone reduction)
    assert d["fp32_nodes"].get("ReduceSum") == 1


def test_fp16_manifest_records_converter_and_verification(lenet_fp16) -> None:
    fp32, res = lenet_fp16
    m = read_manifest(res.manifest_path)
    assert m["precision"] == "fp16" and m["model"] == "lenet5"
    conv = m["extra"]["converter"]
    assert conv["converter"] == "onnxconverter-common"
    assert conv["converter_version"] == metadata.version("onnxconverter-common")
    assert conv["options"]["keep_io_types"] is True
    assert "LRN" in conv["options"]["op_block_list"]
    assert m["extra"]["source"]["sha256"] == fp32.sha256
    assert m["input"]["dtype"] == "float32" and m["weights"] == fp32.manifest["weights"]
    import onnx

    props = {p.key: p.value for p in onnx.load(str(res.onnx_path)).metadata_props}
    assert props["cnnbench.precision"] == "fp16" and props["cnnbench.model"] == "lenet5"
    p = m["parity"]
    assert p["passed"] is True and p["reference"] == "onnxruntime-fp32"
    assert p["tolerances"] == FP16_GATE.to_dict()
    assert p["metrics"]["cosine_min"] >= 0.999 and p["metrics"]["top1_agreement"] >= 0.99
    acc = m["extra"]["accuracy"]
    assert acc["dataset"] == "digits:test" and acc["samples"] == 450
    assert abs(acc["drop_points"]) <= 0.5
    assert "verify" in m["timings_s"] and "convert" in m["timings_s"]


def test_fp16_runs_on_onnxruntime_and_tracks_fp32(lenet_fp16) -> None:
    import onnxruntime as ort

    fp32, res = lenet_fp16
    x = np.random.default_rng(0).standard_normal((5, 1, 32, 32)).astype(np.float32)
    outs = []
    for path in (fp32.onnx_path, res.onnx_path):
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (y,) = s.run(None, {"input": x})
        assert y.dtype == np.float32 and y.shape == (5, 10)
        outs.append(y)
    scale = np.abs(outs[0]).max()
    assert np.abs(outs[0] - outs[1]).max() / scale < 5e-3
    assert (outs[0].argmax(1) == outs[1].argmax(1)).all()


def test_ensure_precision_reuses_then_rebuilds_a_tampered_file(lenet_fp16) -> None:
    from cnnbench.export.convert import ensure_precision

    fp32, res = lenet_fp16
    root = res.onnx_path.parents[2]
    again = ensure_precision("lenet5", Precision.FP16, out_dir=root)
    assert again.sha256 == res.sha256
    assert again.manifest["created"] == res.manifest["created"]  # reused, not rebuilt
    with open(res.onnx_path, "ab") as fh:
        fh.write(b"tampered")
    rebuilt = ensure_precision("lenet5", Precision.FP16, out_dir=root)
    assert rebuilt.sha256 == read_manifest(rebuilt.manifest_path)["onnx"]["sha256"]
    assert rebuilt.onnx_path.read_bytes()[-8:] != b"tampered"


def test_corrupt_fp32_file_fails_in_one_line_and_writes_nothing(lenet_fp16, tmp_path) -> None:
    import shutil

    from cnnbench.export.convert import convert
    from cnnbench.export.manifest import ExportResult

    fp32, _ = lenet_fp16
    folder = tmp_path / "lenet5" / "fp32"
    shutil.copytree(fp32.onnx_path.parent, folder)
    data = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[: len(data) // 2])
    broken = ExportResult(folder / "model.onnx", folder / "manifest.json", fp32.manifest)
    with pytest.raises(ArtifactError) as exc:
        convert("lenet5", broken, Precision.FP16, out_dir=tmp_path)
    assert "\n" not in str(exc.value) and "sha256" in str(exc.value)
    assert not (tmp_path / "lenet5" / "fp16").exists()


def test_a_precision_conversion_cannot_make_is_one_clear_line(lenet_fp16, tmp_path) -> None:
    from cnnbench.export.convert import convert

    fp32, _ = lenet_fp16
    with pytest.raises(
        InvalidInputError, match="conversion from FP32 makes fp16, int8 or fp8, not bf16"
    ):
        convert("lenet5", fp32, Precision.BF16, out_dir=tmp_path)
    assert not any(tmp_path.iterdir())


def test_an_unknown_precision_is_one_line_where_it_enters(tmp_path) -> None:
    from click.testing import CliRunner

    from cnnbench.cli import cli

    res = CliRunner().invoke(cli, ["export", "lenet5", "-p", "fp64", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "unknown precision 'fp64'" in res.output
    assert not any(tmp_path.iterdir())


def test_export_cli_writes_fp16_and_prints_the_path_last(lenet_fp16, art_root) -> None:
    from click.testing import CliRunner

    from cnnbench.cli import cli

    res = CliRunner().invoke(
        cli, ["export", "lenet5", "--precision", "fp16", "--out", str(art_root)]
    )
    assert res.exit_code == 0, res.output
    last = res.stdout.strip().splitlines()[-1]
    assert last == str(art_root / "lenet5" / "fp16" / "model.onnx")
    assert describe_fp16(last)["inputs"] == {"input": "FLOAT"}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet18", "googlenet"])
def test_imagenet_fp16_keeps_float32_io(model: str, art_root: Path) -> None:
    from cnnbench.export.convert import convert
    from cnnbench.export.pipeline import ensure_fp32

    fp32 = ensure_fp32(model, out_dir=art_root)
    res = convert(model, fp32, Precision.FP16, out_dir=art_root)
    d = describe_fp16(res.onnx_path)
    assert set(d["inputs"].values()) == {"FLOAT"} and set(d["outputs"].values()) == {"FLOAT"}
    assert d["initializers"].get("FLOAT16", 0) > 20
    assert res.manifest["parity"]["passed"] is True
