from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnbench.bench.results.files import CONTRACT_COLUMNS, read_rows
from cnnbench.cli import cli

FAST = ["--warmup-count", "2", "--warmup-time", "0", "--min-count", "50", "--min-time", "0.05"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Session-wide folder (same path in every module): the lenet5 export and caches are reused.
    d = tmp_path_factory.getbasetemp() / "bench-shared"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(autouse=True)
def _cache(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNBENCH_CACHE", str(shared / "cache"))


def invoke(*args: str) -> object:
    return CliRunner().invoke(cli, ["run", *args])


def test_null_engine_rows_csv(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    res = invoke("-m", "lenet5", "-e", "null", "-b", "1,4", "--out", str(out), *FAST)
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1] == str(out)
    assert "images/s = batch x completed queries / wall time" in res.output
    rows = read_rows(out)
    assert [r["batch"] for r in rows] == [1, 4]
    header = out.read_text().splitlines()[0].split(",")
    assert tuple(header[: len(CONTRACT_COLUMNS)]) == CONTRACT_COLUMNS
    for r in rows:
        assert r["error"] is None and r["samples"] >= 50
        assert r["throughput_ips"] == pytest.approx(
            r["batch"] * r["samples"] / r["wall_s"], rel=1e-3
        )
        # the harness's own overhead per inference, measured on the null engine
        assert 0 < r["latency_ms_p50"] < 0.005
        assert r["latency_ms_p50"] <= r["latency_ms_p90"] <= r["latency_ms_p99"]
        assert (
            r["latency_ms_median_ci_low"] <= r["latency_ms_p50"] <= r["latency_ms_median_ci_high"]
        )
        assert r["percentile_method"].startswith("numpy linear")
        assert r["params"] > 0
        assert r["macs"] > 0 and r["host_peak_rss_mb"] > 10
        assert r["env_cpu"] and r["timestamp"] and r["scenario"] == "offline"
        assert r["device_mem_peak_mb"] is None and r["gmacs_per_s"] is None


def test_jsonl_appends_across_runs(tmp_path: Path) -> None:
    out = tmp_path / "r.jsonl"
    for scen in ("single-stream", "multi-stream"):
        res = invoke("-m", "lenet5", "-e", "null", "-s", scen, "--out", str(out), *FAST)
        assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["scenario"], r["batch"], r["headline_metric"]) for r in rows] == [
        ("single-stream", 1, "latency_ms_p90"),
        ("multi-stream", 8, "latency_ms_p99"),
    ]


def test_server_scenario_on_null(tmp_path: Path) -> None:
    res = invoke("-m", "lenet5", "-e", "null", "-s", "server", "--target-qps", "400",
                 "--min-count", "100", "--min-time", "0.3", "--format", "json")  # fmt: skip
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.output[res.output.index("[") :])
    assert row["scenario"] == "server" and row["batch"] == 8 and row["target_qps"] == 400
    assert row["samples"] >= 100 and row["achieved_qps"] == pytest.approx(400, rel=0.5)
    assert row["headline_metric"] == "latency_ms_p99"


def test_default_model_set_is_the_imagenet_zoo() -> None:
    from cnnbench.models import list_models

    res = invoke("-e", "null", "--dry-run")
    assert res.exit_code == 0
    models = [line.split("|")[0] for line in res.output.strip().splitlines()[:-1]]
    assert models == list_models(imagenet_only=True) and "lenet5" not in models
    # a GPU-only engine defaults to cuda, every other engine to cpu
    res = invoke("-m", "lenet5", "-e", "trt,null", "--dry-run")
    assert res.output.splitlines()[:2] == [
        "lenet5|tensorrt|fp32|cuda|1|offline",
        "lenet5|null|fp32|cpu|1|offline",
    ]


def test_trt_without_tensorrt_is_one_line_exit_2() -> None:
    pytest.importorskip("onnxruntime")
    from cnnbench.engines import probe

    if probe("tensorrt").available:
        pytest.skip("TensorRT present")
    res = invoke("--engine", "trt", "--batch", "64")
    assert res.exit_code == 2
    assert len(res.output.strip().splitlines()) == 1 and "tensorrt" in res.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-b", "0"], "batch"),
        (["-b", "-3"], "batch"),
        (["-b", "two"], "batch"),
        (["-b", ""], "batch"),
        (["-b", "1,,2"], "batch"),
        (["-e", "nope"], "engine"),
        (["-p", "fp7"], "precision"),
        (["-s", "bogus"], "scenario"),
        (["-m", "resnet9"], "model"),
        (["-m", ""], "model"),
        (["-s", "single-stream", "-b", "8"], "batch 1"),
        (["-s", "server"], "target-qps"),
        (["--min-count", "0"], "min-count"),
        (["--out", "x.txt"], ".csv or .jsonl"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], needle: str, tmp_path: Path) -> None:
    base = ["-m", "lenet5", "-e", "null"]
    res = invoke(*base, *args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert list(tmp_path.iterdir()) == []


def test_onnxruntime_lenet5_end_to_end(shared: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "r.csv"
    res = invoke("-m", "lenet5", "-e", "ort", "-s", "single-stream", "--artifacts",
                 str(shared / "artifacts"), "--out", str(out), *FAST)  # fmt: skip
    assert res.exit_code == 0, res.output
    (row,) = read_rows(out)
    assert row["engine"] == "onnxruntime" and row["error"] is None
    assert row["artifact"].endswith("lenet5/fp32/model.onnx") and len(row["artifact_sha256"]) == 64
    assert 0.005 < row["latency_ms_p50"] < 50
    assert row["effective_precision"] == "fp32" and row["threads"] >= 1
    assert row["gmacs_per_s"] == pytest.approx(row["macs"] * row["throughput_ips"] / 1e9)
    if row["peak_gmacs_per_s"]:
        assert row["efficiency"] == pytest.approx(row["gmacs_per_s"] / row["peak_gmacs_per_s"])
    assert json.loads(row["engine_info"])["providers"] == ["CPUExecutionProvider"]


def test_without_sqlalchemy_run_goes_on_unrecorded_unless_a_store_is_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 26: the GPU machine has no SQLAlchemy, and `run` stopped on its import (a
    # traceback, no CSV). The default store is optional; a store asked for is one line.
    import sys

    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # import sqlalchemy -> ImportError
    monkeypatch.delenv("CNNBENCH_DB", raising=False)
    out = tmp_path / "r.csv"
    res = invoke("-m", "lenet5", "-e", "null", "-b", "1", "--in-process", "-o", str(out), *FAST)
    assert res.exit_code == 0, res.output
    assert "not recording this run in the results store" in res.output
    assert len(read_rows(out)) == 1 and "run_id" not in read_rows(out)[0]
    asked = invoke("-m", "lenet5", "-e", "null", "--db", str(tmp_path / "s.db"), *FAST)
    assert asked.exit_code == 2
    assert asked.output.strip().splitlines() == [
        "cnnbench: error: the results store needs SQLAlchemy, which is not installed here: "
        "pip install sqlalchemy, or give --no-db"
    ]
    assert not (tmp_path / "s.db").exists()


def test_an_engine_missing_here_names_the_engines_that_are_available(tmp_path: Path) -> None:
    # issue 26: `run --engine trt` without TensorRT says which engines can run here, in its line
    pytest.importorskip("onnxruntime")
    from cnnbench.engines import probe

    if probe("tensorrt").available:
        pytest.skip("TensorRT is installed here")
    res = invoke("-m", "lenet5", "-e", "trt", "-o", str(tmp_path / "r.csv"))
    assert res.exit_code == 2
    (line,) = res.output.strip().splitlines()
    assert line.startswith("cnnbench: error: engine tensorrt is unavailable here: ")
    assert "; engines available here: " in line
    assert "onnxruntime (cpu)" in line and "null (cpu, cuda)" in line
    assert not (tmp_path / "r.csv").exists()


def test_timing_gpu_compute_on_the_cpu_is_one_line() -> None:
    res = invoke("-m", "lenet5", "-e", "null", "--timing", "gpu_compute", *FAST)
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "cnnbench: error: --timing gpu_compute needs --device cuda: on the CPU no copies are "
        "left out"
    ]


def test_a_gpu_row_names_its_timing_mode(tmp_path: Path) -> None:
    # the null engine "runs" on cuda without a GPU: the GPU timing path, with our logic only
    out = tmp_path / "r.csv"
    res = invoke("-m", "lenet5", "-e", "null", "--device", "cuda", "--timing", "gpu_compute",
                 "-b", "2", "--in-process", "--no-db", "-o", str(out), *FAST)  # fmt: skip
    assert res.exit_code == 0, res.output
    (row,) = read_rows(out)
    assert row["timing_mode"] == "gpu_compute" and row["latency_kind"].startswith("gpu_compute")
    assert row["variant"] == "timing=gpu_compute"
    assert "timing: end_to_end: host clock over host->device copy" in res.output


def test_a_gpu_server_row_names_its_timing_mode_too(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    res = invoke("-m", "lenet5", "-e", "null", "--device", "cuda", "-s", "server", "-b", "2",
                 "--target-qps", "200", "--in-process", "--no-db", "-o", str(out),
                 "--min-time", "0.2", "--max-time", "1")  # fmt: skip
    assert res.exit_code == 0, res.output
    (row,) = read_rows(out)
    assert row["scenario"] == "server" and row["timing_mode"] == "end_to_end"
