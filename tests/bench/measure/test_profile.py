"""cnnbench profile: the JSON contract, the layer sum beside the p50, --diff's paragraph, bad
input in one line; run --profile's rows and files; the warning of an INT8 cell that did not
run INT8, on the console, in the row, in recommend and in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnbench.bench.measure.profile import Profile, build
from cnnbench.bench.measure.profile_graph import graph_facts
from cnnbench.bench.results.files import read_rows
from cnnbench.cli import cli
from cnnbench.engines.layer_times import ort_layer_times
from cnnbench.export.onnx_macs import node_macs

PROF = Path(__file__).resolve().parents[2] / "fixtures" / "profiles"
FAST = ["--warmup-count", "2", "--warmup-time", "0", "--min-count", "30", "--min-time", "0.05",
        "--max-time", "2"]  # fmt: skip
LAYER_KEYS = {"name", "nodes", "type", "precision", "kernel", "time_ms", "macs", "bytes",
              "conversion"}  # fmt: skip


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.getbasetemp() / "bench-shared"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(autouse=True)
def _cache(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNBENCH_CACHE", str(shared / "cache"))


def _recorded(name: str, precision: str, p50: float) -> Profile:
    onnx = PROF / f"lenet5_{name}.onnx"
    times = ort_layer_times(json.loads((PROF / f"ort_lenet5_{name}.json").read_text()), 3)
    return build(times, graph_facts(onnx), node_macs(onnx), engine="onnxruntime",
                 precision=precision, batch=1, p50_ms=p50, model="lenet5")  # fmt: skip


def test_profile_json_is_the_contract_and_sums_beside_p50(shared: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    res = CliRunner().invoke(cli, ["profile", "lenet5", "-e", "ort", "--queries", "5",
                                   "--artifacts", str(shared / "art"), "-o", str(out),
                                   "--format", "json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert {"engine", "precision", "batch", "latency_ms_p50", "layer_time_ms_total",
            "layers"} <= set(doc)  # fmt: skip
    assert (doc["engine"], doc["precision"], doc["batch"]) == ("onnxruntime", "fp32", 1)
    assert doc["latency_ms_p50"] > 0 and doc["queries"] == 5
    assert doc["layer_time_ms_total"] == pytest.approx(
        sum(layer["time_ms"] for layer in doc["layers"]), rel=1e-4
    )
    for layer in doc["layers"]:
        assert set(layer) >= LAYER_KEYS
        assert set(layer["bytes"]) == {"weights", "inputs", "outputs", "total"}
    conv = [layer for layer in doc["layers"] if layer["macs"]]
    assert conv and all(layer["nodes"] and layer["gmacs_per_s"] for layer in conv)
    table = CliRunner().invoke(cli, ["profile", "lenet5", "-e", "ort", "--queries", "5",
                                     "--artifacts", str(shared / "art")])  # fmt: skip
    assert table.exit_code == 0, table.output
    assert "layers sum to" in table.output and "the cell's p50 is" in table.output


def test_diff_explains_an_int8_file_that_ran_float_on_onnxruntime(tmp_path: Path) -> None:
    a, b = tmp_path / "fp32.json", tmp_path / "int8.json"
    a.write_text(json.dumps(_recorded("fp32", "fp32", 0.05).to_dict()))
    b.write_text(json.dumps(_recorded("int8_tensorrt", "int8", 0.07).to_dict()))
    res = CliRunner().invoke(cli, ["profile", "--diff", str(a), str(b), "--format", "json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["a"]["label"] == "FP32" and d["b"]["label"] == "INT8"
    assert d["b"]["mac_layers_by_precision"] == {"fp32": d["b"]["mac_layers"]}
    assert "ran in float" in d["summary"] and "quantize/dequantize" in d["summary"]
    assert "onnxruntime" in d["summary"] and "DequantizeLinear" in d["summary"]
    groups = {r["group"].split(" ")[0] for r in d["rows"] if not r["conversion"]}
    assert {"node_conv2d", "node_conv2d_1", "node_linear"} <= groups  # aligned by ONNX node
    text = CliRunner().invoke(cli, ["profile", "--diff", str(a), str(b)])
    assert text.exit_code == 0 and "INT8 against FP32" in text.output


def test_diff_of_an_int8_file_placed_for_onnxruntime_says_int8_ran(tmp_path: Path) -> None:
    a, b = tmp_path / "fp32.json", tmp_path / "int8.json"
    a.write_text(json.dumps(_recorded("fp32", "fp32", 0.05).to_dict()))
    b.write_text(json.dumps(_recorded("int8_onnxruntime", "int8", 0.03).to_dict()))
    d = json.loads(CliRunner().invoke(cli, ["profile", "--diff", str(a), str(b), "--format",
                                            "json"]).output)  # fmt: skip
    assert set(d["b"]["mac_layers_by_precision"]) == {"int8"}
    assert "ran in float" not in d["summary"]
    changed = [r for r in d["rows"] if r["precision_a"] == "fp32" and r["precision_b"] == "int8"]
    assert len(changed) >= 4  # three convs and the classifier


def test_diff_of_two_placements_of_one_precision_names_each_file() -> None:
    """Two INT8 files on one engine: the labels say which placement, not 'int8' twice."""
    from cnnbench.bench.measure.profile_diff import labels

    a, b = _recorded("int8_tensorrt", "int8", 0.07), _recorded("int8_onnxruntime", "int8", 0.03)
    a.onnx, b.onnx = (
        "art/lenet5/int8-tensorrt-68fa64b700/model.onnx",
        "x/int8-onnxruntime-0a1b2c3d4e/model.onnx",
    )
    assert labels(a, b) == ("INT8 (int8-tensorrt)", "INT8 (int8-onnxruntime)")
    b.onnx = a.onnx
    assert labels(a, b) == ("INT8 (A)", "INT8 (B)")


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--diff", "missing.json", "missing2.json"], "cannot read missing.json"),
        (["lenet5", "-e", "null"], "engine null has no per-layer profiler"),
        ([], "give MODEL or FILE.onnx"),
        (["lenet5", "--diff", "a.json", "b.json"], "not both"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], phrase: str
) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["profile", *args])
    assert res.exit_code == 2, res.output
    assert phrase in res.output


def test_run_profile_writes_each_cells_profile_and_the_int8_warning(
    shared: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.csv"
    res = CliRunner().invoke(cli, ["run", "-m", "lenet5", "-e", "ort", "-p", "fp32,int8",
                                   "--qdq-target", "tensorrt", "--profile", "--no-db",
                                   "--artifacts", str(shared / "art"), "--out", str(out),
                                   "--in-process", *FAST])  # fmt: skip
    assert res.exit_code == 0, res.output
    fp32, int8 = read_rows(out)
    for row in (fp32, int8):
        assert row["profile_file"] and (out.parent / row["profile_file"]).is_file()
        assert row["profile_layer_time_ms"] > 0 and row["profile_by_kind"]
    assert fp32["time_fp32_share"] > 0.5 and not fp32["int8_warning"]
    assert int8["macs_int8_share"] == 0 and int8["conversion_time_share"] > 0
    assert "did not run" not in int8["int8_warning"]
    assert int8["int8_warning"].startswith("INT8 cell ran only 0% of its MACs in int8")
    assert "placed for tensorrt" in int8["int8_warning"]
    assert "INT8 cell ran only 0%" in res.output  # said on the console too
    saved = Profile.from_dict(json.loads((out.parent / int8["profile_file"]).read_text()))
    assert saved.latency_ms_p50 == pytest.approx(int8["latency_ms_p50"])


def test_recommend_and_the_report_mark_an_int8_cell_that_ran_float(
    shared: Path, tmp_path: Path
) -> None:
    from cnnbench.bench.report.recommend import candidates

    out = tmp_path / "r.csv"
    res = CliRunner().invoke(cli, ["run", "-m", "lenet5", "-e", "ort", "-p", "int8",
                                   "--qdq-target", "tensorrt", "--profile", "--no-db",
                                   "--artifacts", str(shared / "art"), "--out", str(out),
                                   "--in-process", *FAST])  # fmt: skip
    assert res.exit_code == 0, res.output
    (c,) = candidates(read_rows(out), {})
    assert "int8 (NOT INT8: 0% of MACs int8)" in c.label
    rep = CliRunner().invoke(cli, ["report", str(out), "--out", str(tmp_path / "rep")])
    assert rep.exit_code == 0, rep.output
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "int8⚠" in page and "INT8 cell ran only 0%" in page
    assert (tmp_path / "rep" / "time_by_layer_type.png").is_file()
