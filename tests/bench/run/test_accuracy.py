"""Measured accuracy through the engines, and the ``cnnbench eval`` command."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cnnbench.bench.run.accuracy import ArrayDataset, evaluate, open_dataset
from cnnbench.errors import CnnbenchError, UnknownNameError
from cnnbench.models import get_spec
from cnnbench.precision import Int8Recipe, Precision


@pytest.fixture(scope="module")
def art_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared with the export tests (same session base dir): LeNet's FP32 export happens once."""
    root = tmp_path_factory.getbasetemp() / "shared-artifacts"
    root.mkdir(exist_ok=True)
    return root


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "acc-cache"))


def test_array_dataset_batches_cover_every_sample_once() -> None:
    x = np.arange(10 * 4, dtype=np.float32).reshape(10, 1, 2, 2)
    y = np.arange(10)
    ds = ArrayDataset("toy", x, y)
    got = list(ds.batches(4))
    assert [len(b[1]) for b in got] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[1] for b in got]), y)
    with pytest.raises(ValueError, match="one label each"):
        ArrayDataset("bad", x, y[:3])


def test_open_dataset() -> None:
    ds = open_dataset("digits", get_spec("lenet5"))
    assert ds.name == "digits:test" and len(ds) == 450 and ds.calib_data == "digits"
    with pytest.raises(UnknownNameError, match="unknown dataset 'imagenet'"):
        open_dataset("imagenet", get_spec("lenet5"))


def test_torch_and_onnxruntime_fp32_agree(art_root: Path) -> None:
    a = evaluate("lenet5", engine="torch", batch=64)
    b = evaluate("lenet5", engine="onnxruntime", batch=50, artifacts=art_root)
    for r in (a, b):
        assert r["samples"] == 450 and r["source"] == "measured"
        assert 0.0 <= r["top1"] <= r["top5"] <= 1.0
        assert r["correct_top1"] == round(r["top1"] * 450)
    # the same seeded weights, two runtimes: the same predictions (ties aside)
    assert abs(a["correct_top1"] - b["correct_top1"]) <= 1
    assert b["onnx"] == str(art_root / "lenet5" / "fp32" / "model.onnx")
    assert a["onnx"] is None and a["weights"] == "seeded-init:0"


def test_padding_does_not_count_twice() -> None:
    # 450 = 7 * 64 + 2: the last batch is padded to 64, yet only 450 are scored
    r = evaluate("lenet5", engine="torch", batch=64)
    r2 = evaluate("lenet5", engine="torch", batch=450)
    assert r["samples"] == r2["samples"] == 450
    assert r["correct_top1"] == r2["correct_top1"]


def _seeded_state_dict(path: Path) -> Path:
    import torch

    from cnnbench.models import get_model

    torch.save(get_model("lenet5").state_dict(), path)
    return path


def test_eval_cli_json(art_root: Path, tmp_path: Path) -> None:
    from cnnbench.cli import cli

    weights = _seeded_state_dict(tmp_path / "w.pt")
    res = CliRunner().invoke(
        cli,
        ["eval", "lenet5", "--dataset", "digits", "-p", "int8", "-e", "ort", "--weights",
         str(weights), "--artifacts", str(art_root), "--calib-samples", "32", "--format", "json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["model"] == "lenet5" and out["engine"] == "onnxruntime"
    assert out["precision"] == "int8" and out["dataset"] == "digits:test"
    assert out["samples"] == 450 and out["source"] == "measured"
    assert 0.0 <= out["top1"] <= out["top5"] <= 1.0
    assert out["calibration"]["kind"] == "digits" and out["calibration"]["samples"] == 32
    assert out["weights"].startswith("sha256:") and out["weights_file"] == str(weights)


def test_eval_finds_the_weights_train_wrote_or_names_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cnnbench train lenet5 --dataset digits` then `cnnbench eval lenet5 --dataset digits`:
    eval takes train's file by the same key (model, dataset); without one it says so."""
    from cnnbench.cli import cli

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["eval", "lenet5", "--dataset", "digits"])
    assert res.exit_code == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "no trained weights" in err[0] and "--weights" in err[0]
    res = CliRunner().invoke(cli, ["train", "lenet5", "--dataset", "digits", "--epochs", "2"])
    assert res.exit_code == 0, res.output
    written = tmp_path / "artifacts/lenet5/digits/weights.pt"
    res = CliRunner().invoke(cli, ["eval", "lenet5", "--dataset", "digits", "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["weights_file"] == str(written.relative_to(tmp_path))
    assert out["top1"] > 0.5  # two epochs already beat chance (0.1) by far


@pytest.mark.slow
def test_train_then_eval_as_the_readme_shows_reaches_95_percent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnbench.cli import cli

    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(cli, ["train", "lenet5", "--dataset", "digits"]).exit_code == 0
    res = CliRunner().invoke(cli, ["eval", "lenet5", "--dataset", "digits", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["top1"] >= 0.95


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--engine", "torch", "--precision", "int8"], "cannot run int8"),
        (["--dataset", "cifar"], "unknown dataset"),
        (["--engine", "nope"], "unknown engine"),
        (["--precision", "fp8"], "fp8"),
    ],
)
def test_eval_cli_bad_input_is_one_line(args: list[str], needle: str) -> None:
    from cnnbench.cli import cli

    res = CliRunner().invoke(cli, ["eval", "lenet5", *args])
    assert res.exit_code == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and needle in err[0], res.stderr


def test_eval_refuses_unfeedable_models() -> None:
    with pytest.raises(CnnbenchError, match="1x32x32"):
        evaluate("resnet18", engine="torch")


@pytest.mark.slow
def test_lenet5_digits_accuracy_acceptance(tmp_path: Path) -> None:
    """The acceptance: FP32 >= 97%; FP16 within 0.2 and INT8 within 1.0 point of FP32, INT8
    with each quantizer (ModelOpt's where its extra is installed)."""
    from cnnbench.models import resolve_weights
    from cnnbench.training import TrainConfig, train

    weights = resolve_weights("lenet5", str(train(TrainConfig(), tmp_path / "weights.pt").weights))
    cells = [("torch", "fp32", None), ("onnxruntime", "fp32", None),
             ("onnxruntime", "fp16", None), ("onnxruntime", "int8", "ort")]  # fmt: skip
    if importlib.util.find_spec("modelopt") is not None:
        cells.append(("onnxruntime", "int8", "modelopt"))
    runs = {
        (eng, p, q): evaluate(
            "lenet5", weights=weights, engine=eng, precision=Precision(p),
            artifacts=tmp_path / "art", int8=Int8Recipe(quantizer=q) if q else None,
        )
        for eng, p, q in cells
    }  # fmt: skip
    fp32 = runs["torch", "fp32", None]["top1"]
    assert fp32 >= 0.97
    assert abs(runs["onnxruntime", "fp32", None]["top1"] - fp32) < 1e-9
    assert abs(runs["onnxruntime", "fp16", None]["top1"] - fp32) * 100 <= 0.2
    for (_, p, q), r in runs.items():
        if p == "int8":
            assert r["quantizer"] == q
            assert (fp32 - r["top1"]) * 100 <= 1.0, (q, r["top1"], fp32)
