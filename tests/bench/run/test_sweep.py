from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cnnbench.bench.measure.timing import StopRule
from cnnbench.bench.results.files import append_row, read_rows
from cnnbench.bench.run import child as child_mod
from cnnbench.bench.run.cell_spec import CellSpec
from cnnbench.cli import cli

STOP = {"warmup_count": 1, "warmup_time": 0, "min_count": 20, "min_time": 0.02, "max_time": 5}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.getbasetemp() / "bench-shared"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(autouse=True)
def _cache(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNBENCH_CACHE", str(shared / "cache"))


def config(tmp_path: Path, **over: object) -> Path:
    cfg = {"models": ["lenet5"], "engines": ["null"], "precisions": ["fp32"], "batches": [1, 2],
           "scenarios": ["single-stream", "offline"], "stop": STOP, "timeout_s": 120}  # fmt: skip
    cfg.update(over)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    p = tmp_path / "sweep.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def sweep(*args: str) -> object:
    return CliRunner().invoke(cli, ["sweep", *args])


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"engines": None}, "missing key 'engines'"),
        ({"engines": ["tensorflow"]}, "key 'engines': unknown engine 'tensorflow'"),
        ({"precisions": ["fp64"]}, "key 'precisions': unknown precision 'fp64'"),
        ({"scenarios": ["batchy"]}, "key 'scenarios': unknown scenario 'batchy'"),
        ({"batches": ["eight"]}, "key 'batches'"),
        ({"batches": [0]}, "key 'batches'"),
        ({"batches": []}, "key 'batches'"),
        ({"models": ["lenet6"]}, "key 'models': unknown model 'lenet6'"),
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"stop": {"min_count": 0}}, "min_count"),
        ({"stop": {"min_cnt": 3}}, "stop"),
        ({"timeout_s": "soon"}, "timeout_s"),
        ({"scenarios": ["server"]}, "missing key 'server'"),
    ],
)
def test_config_errors_are_one_line_exit_2(tmp_path: Path, over: dict, needle: str) -> None:
    res = sweep(str(config(tmp_path, **over)), "--out", str(tmp_path / "r.csv"))
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "r.csv").exists()


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [a\n")
    for path in (bad, tmp_path / "none.yaml"):
        res = sweep(str(path))
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1


def test_grid_skips_single_stream_batches_and_dry_run(tmp_path: Path) -> None:
    res = sweep(str(config(tmp_path)), "--dry-run", "--out", str(tmp_path / "r.csv"))
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[:-1] == [
        "lenet5|null|fp32|cpu|1|single-stream",
        "lenet5|null|fp32|cpu|1|offline",
        "lenet5|null|fp32|cpu|2|offline",
    ]
    assert "3 cell(s) to run, 0 done, 1 skipped" in lines[-1]


def test_sweep_runs_cells_in_processes_and_resumes(tmp_path: Path) -> None:
    cfg, out = config(tmp_path), tmp_path / "r.csv"
    res = sweep(str(cfg), "--out", str(out))
    assert res.exit_code == 0, res.output
    rows = read_rows(out)
    assert [(r["scenario"], r["batch"]) for r in rows] == [
        ("single-stream", 1), ("offline", 1), ("offline", 2)
    ]  # fmt: skip
    assert all(r["error"] is None and r["samples"] >= 20 for r in rows)
    assert len({r["env_git_commit"] for r in rows}) == 1 and rows[0]["env_cpu"]
    # every cell ran in its own process: each reset its own peak-RSS mark
    assert all(r["host_peak_rss_scope"].startswith(("cell", "process")) for r in rows)
    again = sweep(str(cfg), "--out", str(out))
    assert again.exit_code == 2 and "--resume" in again.output
    resumed = sweep(str(cfg), "--out", str(out), "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert len(read_rows(out)) == 3  # nothing re-run


def test_resume_retries_error_rows_only(tmp_path: Path) -> None:
    cfg, out = config(tmp_path, batches=[1], scenarios=["offline"]), tmp_path / "r.jsonl"
    append_row(out, {"model": "lenet5", "engine": "null", "precision": "fp32", "device": "cpu",
                     "batch": 1, "scenario": "offline", "error": "earlier crash"})  # fmt: skip
    res = sweep(str(cfg), "--out", str(out), "--resume")
    assert res.exit_code == 0, res.output
    (row,) = read_rows(out)
    assert row["error"] is None and row["samples"] >= 20


def _spec() -> CellSpec:
    return CellSpec.create("lenet5", "null", stop=StopRule(**STOP))


def test_crashed_cell_becomes_an_error_row(monkeypatch: pytest.MonkeyPatch) -> None:
    kill = (
        "import os, signal, sys; sys.stderr.write('dying\\n'); os.kill(os.getpid(), signal.SIGKILL)"
    )
    monkeypatch.setattr(child_mod, "child_command", lambda *a: [sys.executable, "-c", kill])
    row = child_mod.run_isolated(_spec(), timeout_s=60)
    assert "killed by SIGKILL (out of memory?)" in row["error"] and "dying" in row["error"]
    assert row["model"] == "lenet5" and row["env_cpu"]


def test_timed_out_cell_becomes_an_error_row(monkeypatch: pytest.MonkeyPatch) -> None:
    hang = "import time; time.sleep(60)"
    monkeypatch.setattr(child_mod, "child_command", lambda *a: [sys.executable, "-c", hang])
    t0 = time.perf_counter()
    row = child_mod.run_isolated(_spec(), timeout_s=1)
    assert time.perf_counter() - t0 < 15
    assert row["error"].startswith("timeout")


def test_failing_cell_in_a_sweep_does_not_stop_it(tmp_path: Path) -> None:
    cfg = config(tmp_path, engines=["onnxruntime", "null"], precisions=["bf16"], batches=[1],
                 scenarios=["offline"])  # fmt: skip
    out = tmp_path / "r.csv"
    res = sweep(str(cfg), "--out", str(out))
    assert res.exit_code == 1  # a failed cell is reported ...
    rows = read_rows(out)
    assert [r["engine"] for r in rows] == ["onnxruntime", "null"]  # ... and the sweep went on
    assert "bf16" in rows[0]["error"] and rows[1]["error"] is None


@pytest.mark.slow
def test_ctrl_c_keeps_finished_rows(tmp_path: Path) -> None:
    stop = dict(STOP, min_time=1.5, min_count=1)
    cfg = config(tmp_path, batches=[1, 2, 3, 4], scenarios=["offline"], stop=stop)
    out = tmp_path / "r.csv"
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnbench", "sweep", str(cfg), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    deadline = time.perf_counter() + 90
    while time.perf_counter() < deadline and not (out.exists() and len(read_rows(out)) >= 1):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"interrupted" in err
    rows = read_rows(out)
    assert 1 <= len(rows) < 4 and all(r["error"] is None for r in rows)
    assert out.read_text().endswith("\n") and not list(tmp_path.glob(".r.csv*"))


@pytest.mark.slow
def test_onnxruntime_cell_uses_a_prepared_onnx(shared: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    cfg = config(tmp_path, engines=["onnxruntime"], batches=[1], scenarios=["single-stream"],
                 artifacts=str(shared / "artifacts"))  # fmt: skip
    out = tmp_path / "r.csv"
    res = sweep(str(cfg), "--out", str(out))
    assert res.exit_code == 0, res.output
    (row,) = read_rows(out)
    assert row["error"] is None and row["engine"] == "onnxruntime"
    assert row["artifact"] == str(shared / "artifacts" / "lenet5" / "fp32" / "model.onnx")
    assert row["latency_ms_p50"] > 0.005


def test_the_launcher_never_measures_the_peak_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # issue 26: the launcher measured the matmul peak in its own process, and so kept a CUDA
    # context and torch's cached blocks on the GPU for the whole sweep (NVML's device-wide
    # figures counted them; --find-max-batch found less room). A child measures it now.
    from cnnbench.bench.measure import peak
    from cnnbench.bench.run.local import CellRunner
    from cnnbench.precision import Precision

    monkeypatch.setenv("CNNBENCH_CACHE", str(tmp_path / "cache"))

    def here(*args: object, **kwargs: object) -> float:
        raise AssertionError("the peak was measured in the launcher")

    monkeypatch.setattr(peak, "measure_peak", here)
    spec = CellSpec.create("lenet5", "torch", stop=StopRule(**STOP))  # type: ignore[arg-type]
    CellRunner(isolated=True, timeout_s=120).prepare(spec)
    cached = peak.get_peak("cpu", Precision.FP32, measure=False)
    assert cached is not None and cached.gmacs_per_s > 0  # measured by a child, cached


def test_gpu_compute_timing_is_part_of_the_cell_and_turns_cuda_graphs_on() -> None:
    # issue 26: gpu_compute is trtexec 11's default: no copies, a CUDA graph where the engine
    # has one, unless the options say otherwise; the mode is part of the cell's identity
    from cnnbench.errors import InvalidInputError

    spec = CellSpec.create("lenet5", "torch", device="cuda", timing="gpu-compute")
    assert spec.timing == "gpu_compute" and dict(spec.engine_options) == {"cuda_graphs": True}
    assert spec.key().endswith("timing=gpu_compute,cuda_graphs=true")
    off = CellSpec.create("lenet5", "torch", device="cuda", timing="gpu_compute",
                          engine_options={"cuda_graphs": False})  # fmt: skip
    assert dict(off.engine_options) == {"cuda_graphs": False}
    compiled = CellSpec.create("lenet5", "torch", device="cuda", timing="gpu_compute",
                               engine_options={"compile": True})  # fmt: skip
    assert "cuda_graphs" not in compiled.engine_options
    e2e = CellSpec.create("lenet5", "torch", device="cuda")
    assert e2e.timing == "end_to_end" and not e2e.engine_options and "timing" not in e2e.key()
    assert CellSpec.from_json(spec.to_json()) == spec
    with pytest.raises(InvalidInputError, match="gpu_compute needs --device cuda"):
        CellSpec.create("lenet5", "torch", timing="gpu_compute")


def test_sweep_file_timing_key(tmp_path: Path) -> None:
    from cnnbench.bench.run.sweep_config import load_config
    from cnnbench.errors import InvalidInputError

    cfg = load_config(config(tmp_path, device="cuda", timing="gpu_compute", engines=["torch"],
                             scenarios=["offline"]))  # fmt: skip
    specs, _ = cfg.cells()
    assert {s.timing for s in specs} == {"gpu_compute"}
    assert all(dict(s.engine_options) == {"cuda_graphs": True} for s in specs)
    with pytest.raises(InvalidInputError, match="key 'timing'"):
        load_config(config(tmp_path, timing="gpu_compute"))  # on the CPU
