"""INT8 recipes: two quantizers behind one interface, files keyed by their recipe, calibration
wherever INT8 is made (export, run, sweep configs)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnbench.errors import InvalidInputError
from cnnbench.precision import Int8Recipe, Precision

ROOT = Path(__file__).resolve().parents[2]
HAS_MODELOPT = importlib.util.find_spec("modelopt") is not None
QUICK = ["--warmup-count", "1", "--warmup-time", "0", "--min-count", "100", "--min-time",
         "0.05", "--max-time", "1"]  # fmt: skip


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_recipe_rejects_what_its_quantizer_cannot_do() -> None:
    with pytest.raises(InvalidInputError, match="modelopt calibrates with entropy or max"):
        Int8Recipe(quantizer="modelopt", calib_method="percentile")
    with pytest.raises(InvalidInputError, match="unknown quantizer 'tvm'"):
        Int8Recipe(quantizer="tvm")
    with pytest.raises(InvalidInputError, match="calib_samples"):
        Int8Recipe(calib_samples=0)
    assert Int8Recipe(calib_data=Path("x")).calib_data == "x"  # type: ignore[arg-type]


def test_a_calibrated_file_is_never_overwritten_by_another_recipe(
    tmp_path: Path, cache: Path
) -> None:
    from cnnbench.export.convert import ensure_precision

    art = tmp_path / "art"
    digits = ensure_precision(
        "lenet5", Precision.INT8, out_dir=art, calib_data="digits", calib_samples=32
    )
    assert digits.onnx_path == art / "lenet5" / "int8" / "model.onnx"
    before = digits.onnx_path.read_bytes()
    noise = ensure_precision(
        "lenet5", Precision.INT8, out_dir=art, calib_data="random", calib_samples=32
    )
    assert noise.onnx_path.parent.name.startswith("int8-") and noise.onnx_path != digits.onnx_path
    assert digits.onnx_path.read_bytes() == before  # the calibrated file is still there
    again = ensure_precision(
        "lenet5", Precision.INT8, out_dir=art, calib_data="digits", calib_samples=32
    )
    assert again.onnx_path == digits.onnx_path and again.manifest == digits.manifest
    rand = ensure_precision(
        "lenet5", Precision.INT8, out_dir=art, calib_data="random", calib_samples=32
    )
    assert rand.onnx_path == noise.onnx_path  # found again beside it, not rebuilt
    cal = rand.manifest["extra"]["calibration"]
    assert cal["kind"] == "random" and cal["meaningful"] is False


def _cli(cwd: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CNNBENCH_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cnnbench", *args], cwd=cwd, env=env, text=True,
        capture_output=True, timeout=600,
    )  # fmt: skip


def test_run_reuses_the_file_export_calibrated_and_says_how_it_was_made(
    tmp_path: Path, cache: Path
) -> None:
    """export --calib-data X --qdq-target onnxruntime, then run -e onnxruntime -p int8
    --calib-data X (whose default target is onnxruntime's): the same file (same sha256)."""
    import numpy as np

    from cnnbench.bench.results.files import read_rows

    x = np.random.default_rng(1).random((40, 1, 32, 32), dtype=np.float32)
    np.save(tmp_path / "calib.npy", x)
    made = _cli(tmp_path, cache, "export", "lenet5", "--precision", "int8",
                "--calib-data", "calib.npy", "--calib-samples", "40",
                "--qdq-target", "onnxruntime")  # fmt: skip
    assert made.returncode == 0, made.stderr
    onnx_path = tmp_path / made.stdout.strip().splitlines()[-1]
    manifest = json.loads(onnx_path.with_name("manifest.json").read_text())
    run = _cli(tmp_path, cache, "run", "-m", "lenet5", "-e", "onnxruntime", "-p", "int8",
               "--calib-data", "calib.npy", "--calib-samples", "40", "-b", "1", "--out", "r.csv",
               *QUICK)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "reusing verified" in run.stderr and "converting" not in run.stderr
    (row,) = read_rows(tmp_path / "r.csv")
    assert row["artifact_sha256"] == manifest["onnx"]["sha256"]
    assert row["calibration"] == "npy" and row["calibration_samples"] == 40
    assert str(row["calibration_source"]).endswith("calib.npy")
    assert row["quantizer"] == "onnxruntime.quantization"
    assert row["qdq_target"] == "onnxruntime" and "qdq=onnxruntime" in row["variant"]


def test_run_checks_calibration_data_before_any_cell(tmp_path: Path, cache: Path) -> None:
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    for data, phrase in (("missing", "calibration data not found"), ("bad.npy", "bad.npy")):
        res = _cli(tmp_path, cache, "run", "-m", "lenet5", "-e", "onnxruntime", "-p", "int8",
                   "--calib-data", data, "-b", "1")  # fmt: skip
        assert res.returncode == 2 and phrase in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "artifacts").exists()


def test_a_sweep_config_takes_the_recipe(tmp_path: Path) -> None:
    from cnnbench.bench.run.sweep_config import load_config

    cfg = tmp_path / "s.yaml"
    cfg.write_text(
        "models: [lenet5]\nengines: [onnxruntime]\nprecisions: [int8]\nbatches: [1]\n"
        "scenarios: [offline]\nquantizer: modelopt\ncalib_data: digits\ncalib_method: max\n"
        "calib_samples: 64\n"
    )
    (spec,) = load_config(cfg).cells()[0]
    assert spec.int8 == Int8Recipe("modelopt", "digits", "max", 64, "tensorrt")
    assert spec.key().endswith("|quantizer=modelopt,qdq=tensorrt")  # another setup, another cell
    cfg.write_text(cfg.read_text().replace("max", "percentile"))
    with pytest.raises(InvalidInputError, match="modelopt calibrates with entropy or max"):
        load_config(cfg)


@pytest.mark.skipif(not HAS_MODELOPT, reason="nvidia-modelopt not installed (cnnbench[modelopt])")
def test_modelopt_int8_follows_the_placement_rules(tmp_path: Path, cache: Path) -> None:
    from cnnbench.export.convert import ensure_precision
    from cnnbench.export.int8 import describe_qdq

    res = ensure_precision(
        "lenet5", Precision.INT8, out_dir=tmp_path, calib_data="digits", calib_samples=64,
        quantizer="modelopt",
    )  # fmt: skip
    conv = res.manifest["extra"]["converter"]
    assert conv["quantizer"] == "modelopt.onnx.quantization" and conv["quantizer_version"]
    d = describe_qdq(res.onnx_path)
    assert d["ok"], d
    assert d["placement"]["ok"], d["placement"]["violations"]
    assert d["placement"]["quantized_ops"].get("Gemm", 0) >= 1  # its GEMV exclusion is off
    assert res.manifest["extra"]["qdq"] == d


def test_modelopt_missing_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnbench.errors import RuntimeUnavailableError
    from cnnbench.export import modelopt_run

    monkeypatch.setattr(modelopt_run, "version", lambda: None)
    with pytest.raises(RuntimeUnavailableError, match=r"pip install 'cnnbench\[modelopt\]'"):
        modelopt_run._load()
