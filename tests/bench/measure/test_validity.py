"""The verdict on every row: its reasons, the CPU window that sees foreign load, and run's
default of one fresh process per cell."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnbench.bench.measure.validity import MAX_FOREIGN_CPU_CORES, CpuWindow, verdict
from cnnbench.bench.run import child as child_mod
from cnnbench.cli import cli

QUICK = ["--warmup-count", "1", "--warmup-time", "0", "--min-count", "120", "--min-time", "0.2",
         "--max-time", "2"]  # fmt: skip


def _row(**kw: object) -> dict[str, object]:
    base = {"samples": 500, "latency_ms_p50": 1.0, "latency_ms_p99": 2.0, "ci_half_width_pct": 0.5,
            "stop_ci_target": 2.0, "stop_reason": "ci-target", "foreign_cpu_cores": 0.0,
            "cpu_steal_cores": 0.0}  # fmt: skip
    return {**base, **kw}


def test_a_clean_row_is_valid() -> None:
    assert verdict(_row()) == {"valid": True, "invalid_reason": ""}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ci_half_width_pct": 4.2, "stop_reason": "max-time"}, "noisy median: CI ±4.2% > 2% target after max-time"),
        ({"foreign_cpu_cores": 0.97}, "foreign CPU load: other processes used 0.97 cores"),
        ({"cpu_steal_cores": 0.2}, "hypervisor steal"),
        ({"samples": 40}, "few samples: p99 from 40 (< 100)"),
        ({"cpu_freq_spread_pct": 30.0}, "unstable clock"),
    ],
)  # fmt: skip
def test_each_reason_is_named(change: dict[str, object], reason: str) -> None:
    v = verdict(_row(**change))
    assert v["valid"] is False and reason in str(v["invalid_reason"])


def test_reasons_accumulate() -> None:
    v = verdict(_row(samples=10, foreign_cpu_cores=1.0))
    assert str(v["invalid_reason"]).count(";") == 1


def test_the_window_sees_another_process_burn_a_core() -> None:
    # A bounded busy loop in another process (about a second): its CPU time is foreign to us.
    hog = [sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<1.5: pass"]
    with CpuWindow() as quiet:
        time.sleep(0.3)
    proc = subprocess.Popen(hog)
    try:
        time.sleep(0.2)
        with CpuWindow() as busy:
            time.sleep(1.0)
    finally:
        proc.wait(timeout=30)
    assert busy.fields()["foreign_cpu_cores"] > MAX_FOREIGN_CPU_CORES
    assert busy.fields()["foreign_cpu_cores"] > quiet.fields()["foreign_cpu_cores"]
    assert "cpu_freq_source" in busy.fields()


def test_own_work_is_not_foreign() -> None:
    with CpuWindow() as w:
        t = time.perf_counter()
        while time.perf_counter() - t < 0.8:
            pass
    # this process used a whole core, and only others' CPU counts as foreign: whatever else
    # the machine does, the foreign figure is about a core below the machine's busy figure
    f = w.fields()
    assert f["busy_cpu_cores"] - f["foreign_cpu_cores"] > 0.7


def test_run_measures_in_a_fresh_process_and_a_killed_cell_is_an_error_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "r.jsonl"
    args = ["run", "-m", "lenet5", "-e", "null", "-b", "1", "--out", str(out), *QUICK]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    [row] = [json.loads(x) for x in out.read_text().splitlines()]
    assert isinstance(row["valid"], bool) and "invalid_reason" in row
    assert row["foreign_cpu_cores"] is not None and row["samples_count"] == row["samples"]
    # the same command, but the cell's process is killed (as the kernel's OOM killer would)
    kill = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    monkeypatch.setattr(child_mod, "child_command", lambda *a: [sys.executable, "-c", kill])
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1
    last = json.loads(out.read_text().splitlines()[-1])
    assert "killed by SIGKILL (out of memory?)" in last["error"] and last["valid"] is False
    assert "killed by SIGKILL" in res.output
