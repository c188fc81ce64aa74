"""`cnnbench models` and `cnnbench inspect`: the JSON/CSV contracts and the papers' figures."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnbench.cli import cli

ZOO = [
    "lenet5", "alexnet", "alexnet_tv", "vgg11", "vgg11_lrn", "vgg13", "vgg16_c", "vgg16", "vgg19",
    "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn", "googlenet", "resnet18", "resnet34",
    "resnet50", "resnet101", "resnet152", "inception_v4", "inception_resnet_v2",
]  # fmt: skip

EXACT_PARAMS = {
    "alexnet": 60_965_224, "alexnet_tv": 61_100_840, "vgg11": 132_863_336,
    "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240, "googlenet": 6_624_904,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808, "lenet5": 60_000,
}  # fmt: skip


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _run(args: list[str], cache: Path) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, args, env={"CNNBENCH_CACHE": str(cache)})
    return res.exit_code, res.stdout, res.stderr


@pytest.fixture(scope="module")
def listing(cache: Path) -> dict[str, dict]:
    code, out, err = _run(["models", "--format", "json"], cache)
    assert code == 0, err
    return {row["name"]: row for row in json.loads(out)}


def test_models_lists_the_whole_zoo(listing: dict[str, dict]) -> None:
    assert sorted(listing) == sorted(ZOO)
    for row in listing.values():
        assert {"name", "family", "input_shape", "params", "macs", "gmacs", "top1"} <= row.keys()
        assert len(row["input_shape"]) == 3 and row["params"] > 0 and row["macs"] > 0
    assert listing["inception_v4"]["input_shape"] == [3, 299, 299]
    assert listing["lenet5"]["input_shape"] == [1, 32, 32]


@pytest.mark.parametrize("name", sorted(EXACT_PARAMS))
def test_models_exact_params(listing: dict[str, dict], name: str) -> None:
    assert listing[name]["params"] == EXACT_PARAMS[name]


def test_models_inception_params_and_googlenet_aux(listing: dict[str, dict]) -> None:
    assert listing["inception_v4"]["params"] == pytest.approx(42.7e6, rel=0.005)
    assert listing["inception_resnet_v2"]["params"] == pytest.approx(55.8e6, rel=0.005)
    g = listing["googlenet"]
    assert g["params_all"] > g["params"]  # aux classifiers: training only, not in params
    assert listing["resnet50"]["macs"] / 1e9 == pytest.approx(4.09, rel=0.01)
    assert listing["resnet18"]["gmacs"] == pytest.approx(1.81, rel=0.01)


def test_models_imagenet_filter_csv_and_table(listing: dict[str, dict], cache: Path) -> None:
    code, out, _ = _run(["models", "--imagenet", "--format", "csv"], cache)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert "lenet5" not in {r["name"] for r in rows} and len(rows) == len(ZOO) - 1
    r50 = next(r for r in rows if r["name"] == "resnet50")
    assert r50["input_shape"] == "3x224x224" and int(r50["params"]) == 25_557_032
    code, out, _ = _run(["models"], cache)
    assert code == 0 and "resnet152" in out and "60,192,808" in out


def test_models_cache_is_used_and_corruption_rebuilds(
    listing: dict[str, dict], cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnbench import analysis_cache

    monkeypatch.setenv("CNNBENCH_CACHE", str(cache))
    path = analysis_cache.cache_path()
    assert path.is_file()

    def boom(name: str) -> dict:
        raise AssertionError("cache not used")

    monkeypatch.setattr(analysis_cache, "summarize", boom)
    assert [r["name"] for r in analysis_cache.zoo_listing()] == list(listing)
    monkeypatch.undo()

    monkeypatch.setenv("CNNBENCH_CACHE", str(cache / "corrupt"))
    monkeypatch.setattr("cnnbench.analysis_cache.list_models", lambda **_: ["lenet5", "resnet18"])
    target = analysis_cache.cache_path()
    target.parent.mkdir(parents=True)
    for junk in ("{not json", json.dumps({"key": "x", "models": []}), '{"key": 1}'):
        target.write_text(junk)
        rows = analysis_cache.zoo_listing()
        assert [r["name"] for r in rows] == ["lenet5", "resnet18"]
        assert rows[1]["params"] == 11_689_512
        assert json.loads(target.read_text())["models"][0]["params"] == 60_000
    doc = json.loads(target.read_text())
    doc["models"][1]["params"] = "many"
    target.write_text(json.dumps(doc))
    assert analysis_cache.zoo_listing()[1]["params"] == 11_689_512
    assert json.loads(target.read_text())["models"][1]["params"] == 11_689_512


def test_inspect_lenet5_json_params_and_connections(cache: Path) -> None:
    code, out, err = _run(["inspect", "lenet5", "--format", "json"], cache)
    assert code == 0, err
    doc = json.loads(out)
    rows = {r["name"]: r for r in doc["layers"]}
    names = ("c1", "s2", "c3", "s4", "c5", "f6")
    assert [rows[n]["params"] for n in names] == [156, 12, 1516, 32, 48120, 10164]
    assert [rows[n]["connections"] for n in names] == [122_304, 5_880, 151_600, 2_000, 48_120,
                                                       10_164]  # fmt: skip
    assert doc["totals"]["params"] == 60_000
    assert doc["input_shape"] == [1, 32, 32]


def test_inspect_vgg16_reproduces_the_seed_table(cache: Path) -> None:
    code, out, _ = _run(["inspect", "vgg16", "--format", "json"], cache)
    assert code == 0
    layers = json.loads(out)["layers"]
    assert (layers[0]["name"], layers[0]["activations"], layers[0]["params"]) == (
        "input",
        150_528,
        0,
    )
    # conv3-64, conv3-64, pool, conv3-128, conv3-128 (skipping the ReLU rows)
    main = [r for r in layers if r["type"] in ("Conv2d", "MaxPool2d")][:5]
    assert [r["type"] for r in main] == ["Conv2d", "Conv2d", "MaxPool2d", "Conv2d", "Conv2d"]
    assert [r["activations"] for r in main] == [3_211_264, 3_211_264, 802_816, 1_605_632,
                                                1_605_632]  # fmt: skip
    assert [r["weights"] for r in main] == [1_728, 36_864, 0, 73_728, 147_456]
    assert [r["params"] for r in main] == [1_792, 36_928, 0, 73_856, 147_584]
    assert [r["output_shape"] for r in main][2] == [64, 112, 112]


def test_inspect_resnet50_totals_and_csv(cache: Path) -> None:
    code, out, _ = _run(["inspect", "resnet50", "--format", "json"], cache)
    assert code == 0
    totals = json.loads(out)["totals"]
    assert totals["macs"] / 1e9 == pytest.approx(4.09, rel=0.01)
    assert totals["flops"] == 2 * totals["macs"] and totals["params"] == 25_557_032
    code, out, _ = _run(["inspect", "resnet50", "--format", "csv"], cache)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[0]["name"] == "input" and rows[-1]["name"] == "total"
    assert int(rows[-1]["macs"]) == totals["macs"]
    assert sum(int(r["macs"]) for r in rows[:-1]) == totals["macs"]


def test_inspect_table_and_input_size(cache: Path) -> None:
    code, out, _ = _run(["inspect", "resnet18", "--input-size", "112"], cache)
    assert code == 0
    assert "resnet18 @ 3x112x112" in out and "totals" in out and "layer4.1.conv2" in out
    code, out, _ = _run(["inspect", "resnet18", "--input-size", "112", "--format", "json"], cache)
    assert json.loads(out)["input_shape"] == [3, 112, 112]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect", "alexnet", "--input-size", "100"], "alexnet cannot run on input"),
        (["inspect", "lenet5", "--weights", "/no/such.pt"], "weights file not found"),
        (["inspect", "lenet5", "--input-size", "0"], "--input-size"),
        (["models", "--format", "xml"], "--format"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(args: list[str], message: str, cache: Path) -> None:
    code, out, err = _run(args, cache)
    assert code == 2
    assert err.startswith("cnnbench: error:") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_inspect_weights_checked_strictly(tmp_path: Path, cache: Path) -> None:
    import torch

    from cnnbench.models import get_model

    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    torch.save(get_model("lenet5").state_dict(), good)
    torch.save({"c1.weight": torch.zeros(6, 1, 5, 5)}, bad)
    code, out, _ = _run(["inspect", "lenet5", "--weights", str(good), "--format", "json"], cache)
    assert code == 0 and json.loads(out)["totals"]["params"] == 60_000
    code, out, err = _run(["inspect", "lenet5", "--weights", str(bad)], cache)
    assert code == 2 and out == ""
    assert err.startswith("cnnbench: error: weights") and "missing 'c1.bias'" in err
    assert len(err.strip().splitlines()) == 1
