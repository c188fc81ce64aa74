"""Your own model: an ONNX file nobody in the project wrote, exported by plain
``torch.onnx.export``, and the same network as a ``module:callable`` factory."""

from __future__ import annotations

import csv
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cnnbench.cli import cli
from cnnbench.models import get_spec, list_models
from cnnbench.models.user import forget_all

MODULE = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
            )
            self.head = nn.Linear(32, 10)

        def forward(self, x):
            return self.head(torch.flatten(self.body(x), 1))


    def build():
        return Small()
    """
)
# conv1 64*64*16*27 + conv2 32*32*32*144 + fc 32*10, per image; weights and biases
MACS = 64 * 64 * 16 * 27 + 32 * 32 * 32 * 144 + 32 * 10
PARAMS = (16 * 27 + 16) + (32 * 144 + 32) + (32 * 10 + 10)
QUICK = ["--warmup-count", "1", "--warmup-time", "0", "--min-count", "20", "--min-time", "0.05",
         "--max-time", "1", "--in-process"]  # fmt: skip


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    forget_all()  # none yet, and none left for the next test
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "mymod_cnb.py").write_text(MODULE)
    sys.modules.pop("mymod_cnb", None)
    import mymod_cnb  # type: ignore[import-not-found]

    torch.manual_seed(0)
    model = mymod_cnb.build().eval()
    torch.onnx.export(
        model, (torch.randn(1, 3, 64, 64),), str(tmp_path / "x.onnx"), input_names=["img"],
        output_names=["out"], dynamic_axes={"img": {0: "n"}, "out": {0: "n"}}, dynamo=False,
    )  # fmt: skip
    yield tmp_path
    forget_all()


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def test_run_an_onnx_file_with_its_graphs_params_and_macs(workdir: Path) -> None:
    res = CliRunner().invoke(
        cli,
        [
            "run",
            "--model",
            "x.onnx",
            "-e",
            "onnxruntime,openvino",
            "-b",
            "1,4",
            *QUICK,
            "-o",
            "r.csv",
        ],  # fmt: skip
    )
    assert res.exit_code == 0, res.output
    rows = _rows(workdir / "r.csv")
    assert len(rows) == 4 and all(not r["error"] for r in rows)
    assert {r["model"] for r in rows} == {"x"}
    assert {(int(r["params"]), int(r["macs"])) for r in rows} == {(PARAMS, MACS)}
    manifest = json.loads((workdir / "artifacts/x/fp32/manifest.json").read_text())
    assert manifest["parity"]["passed"] and "no PyTorch source" in manifest["parity"]["reference"]
    assert manifest["weights"].startswith("onnx-sha256:")
    assert get_spec("x").input_shape == (3, 64, 64) and "x" not in list_models(imagenet_only=True)


def test_export_an_onnx_file_to_a_verified_int8_file(workdir: Path) -> None:
    res = CliRunner().invoke(
        cli, ["export", "x.onnx", "--precision", "int8", "--calib-data", "random", "--name", "mine"]
    )
    assert res.exit_code == 0, res.output
    out = Path(res.output.strip().splitlines()[-1])
    manifest = json.loads((out.parent / "manifest.json").read_text())
    assert out.parts[-3:-1] == ("mine", "int8") and manifest["parity"]["passed"]


def test_a_module_factory_exports_passes_the_gate_and_runs(workdir: Path) -> None:
    args = ["--model", "mymod_cnb:build", "--input-shape", "3,64,64"]
    res = CliRunner().invoke(cli, ["export", "mymod_cnb:build", "--input-shape", "3,64,64"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((workdir / "artifacts/build/fp32/manifest.json").read_text())
    assert manifest["parity"]["passed"] and manifest["parity"]["reference"] == "torch-eager-fp32"
    res = CliRunner().invoke(cli, ["run", *args, "-e", "torch,onnxruntime", "-b", "2", *QUICK,
                                   "-o", "m.csv"])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = _rows(workdir / "m.csv")
    assert {r["engine"] for r in rows} == {"torch", "onnxruntime"}
    assert all(not r["error"] and int(r["macs"]) == MACS for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "missing.onnx"], "ONNX file not found"),
        (["export", "mymod_cnb:build"], "needs --input-shape"),
        (["export", "mymod_cnb:nothing", "--input-shape", "3,64,64"], "no callable 'nothing'"),
        (["export", "x.onnx", "--name", "resnet18"], "a zoo model's name"),
        (["export", "x.onnx", "--input-shape", "3,x,64"], "--input-shape takes"),
        (["run", "-m", "resnet18", "--input-shape", "3,64,64", "--dry-run"], "your own model"),
    ],
)
def test_bad_user_model_input_is_one_line_exit_2(
    workdir: Path, args: list[str], message: str
) -> None:
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_a_sweep_config_names_an_onnx_file_beside_it(workdir: Path) -> None:
    from cnnbench.bench.run.sweep_config import load_config

    cfg = workdir / "cfg.yaml"
    cfg.write_text(
        "models: [x.onnx, {model: 'mymod_cnb:build', name: mine, input_shape: [3, 64, 64]}]\n"
        "engines: [onnxruntime]\nprecisions: [fp32]\nbatches: [1]\nscenarios: [offline]\n"
    )
    loaded = load_config(cfg)
    assert loaded.models == ("x", "mine")
    assert get_spec("mine").input_shape == (3, 64, 64)
    cfg.write_text(cfg.read_text().replace("x.onnx", "{model: resnet18, name: y}"))
    with pytest.raises(Exception, match="is a zoo model"):
        load_config(cfg)


def test_eval_takes_an_onnx_file(workdir: Path) -> None:
    # the file resolves to a model, so the next check (the data folder) is the one that speaks
    res = CliRunner().invoke(cli, ["eval", "x.onnx", "--data", str(workdir / "nowhere")])
    assert res.exit_code == 2 and "dataset folder not found" in res.stderr
    res = CliRunner().invoke(cli, ["eval", "nosuch", "--data", str(workdir / "nowhere")])
    assert res.exit_code == 2 and "unknown model 'nosuch'" in res.stderr


def test_verify_checks_an_imported_file_against_the_users_own(workdir: Path) -> None:
    res = CliRunner().invoke(cli, ["export", "x.onnx"])
    assert res.exit_code == 0 and "reference: onnxruntime-cpu on the user's ONNX file" in res.output
    res = CliRunner().invoke(cli, ["verify", "artifacts/x/fp32/model.onnx", "--model", "x.onnx"])
    assert res.exit_code == 0 and "PASS" in res.output, res.output


def test_a_fixed_batch_onnx_file_is_imported_once_and_verify_names_what_it_needs(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mymod_cnb  # type: ignore[import-not-found]

    torch.onnx.export(
        mymod_cnb.build().eval(), (torch.randn(2, 3, 64, 64),), "fixed.onnx", dynamo=False
    )
    first = CliRunner().invoke(cli, ["export", "fixed.onnx"])
    assert first.exit_code == 0, first.output
    manifest = json.loads((workdir / "artifacts/fixed/fp32/manifest.json").read_text())
    assert manifest["batch"] == {"min": 2, "opt": 2, "max": 2} and not manifest["dynamic_axes"]
    import cnnbench.export.pipeline as pipeline

    def no_import(*a: object, **k: object) -> None:
        raise AssertionError("imported again")

    monkeypatch.setattr(pipeline, "import_onnx", no_import)
    again = pipeline.ensure_fp32("fixed", out_dir="artifacts")  # what run and convert use
    assert again.manifest["onnx"]["sha256"] == manifest["onnx"]["sha256"]
    forget_all()  # a new shell: the model is not named yet
    res = CliRunner().invoke(cli, ["verify", "artifacts/fixed/fp32/model.onnx"])
    assert res.exit_code == 2 and "holds your own model 'fixed'" in res.stderr
