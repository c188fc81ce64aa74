"""Sweeps on Ray (``--executor ray``): the local executor's cells and rows, spread over a real
two-node cluster on this machine (Ray's own ``cluster_utils.Cluster``), and a node killed
mid-sweep: its cell retried elsewhere, every cell with exactly one row."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from cnnbench.bench.results.files import cell_key, read_rows
from cnnbench.bench.run.ray_executor import BENCH, run_sweep_on_ray
from cnnbench.bench.run.sweep_config import load_config
from cnnbench.cli import cli

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'cnnbench[ray]')")

ROOT = Path(__file__).resolve().parents[3]
SWEEP = """models: [lenet5]
engines: ['null']
precisions: [fp32]
batches: [1, 2, 3, 4]
scenarios: [offline, multi-stream]
timeout_s: 120
stop: {warmup_count: 1, warmup_time: 0, min_count: 100, min_time: MIN_TIME, max_time: 3}
"""


@pytest.fixture(autouse=True)
def _workers_import_this_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ray's workers start from their own folder: they import the package from this checkout
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )


def _config(tmp_path: Path, min_time: float) -> Path:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(SWEEP.replace("MIN_TIME", str(min_time)))
    return cfg


def test_ray_sweep_has_the_local_cells_and_names_the_node(tmp_path: Path) -> None:
    """A local Ray cluster, started and stopped by the sweep: the same cell keys as the local
    executor, no error row, each row naming its node; --resume works across executors."""
    cfg = _config(tmp_path, 0.1)
    local, on_ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    for out, executor in ((local, "local"), (on_ray, "ray")):
        res = CliRunner().invoke(cli, ["sweep", str(cfg), "--out", str(out), "--executor",
                                       executor, "--no-db"])  # fmt: skip
        assert res.exit_code == 0, res.output
    assert not ray.is_initialized()  # the sweep stopped the cluster it started
    rows = read_rows(on_ray)
    assert sorted(cell_key(r) for r in rows) == sorted(cell_key(r) for r in read_rows(local))
    assert all(r["error"] is None and r["env_node"] and r["env_ray_node_id"] for r in rows)
    res = CliRunner().invoke(cli, ["sweep", str(cfg), "--out", str(local), "--executor", "ray",
                                   "--resume", "--no-db"])  # fmt: skip
    assert res.exit_code == 0 and "8 of 8 cells already" in res.output, res.output


def _is_cell(cmdline: list[str]) -> bool:
    """Whether a command line is a cell's measured process (bench.run.child measure)."""
    return "cnnbench.bench.run.child" in cmdline and "measure" in cmdline


def _cell_on(raylet_pid: int) -> bool:
    """Whether a cell process runs under that raylet (a worker's child)."""
    try:
        kids = psutil.Process(raylet_pid).children(recursive=True)
    except psutil.Error:
        return False
    for p in kids:
        try:
            if _is_cell(p.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


@pytest.mark.slow  # a process killed mid-run and recovered: tens of seconds
def test_two_nodes_share_the_cells_and_a_killed_node_loses_none(tmp_path: Path) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1, "resources": {"node_a": 1, BENCH: 1},
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3},
        },
    )  # fmt: skip
    try:
        node_b = cluster.add_node(num_cpus=1, resources={"node_b": 1, BENCH: 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address)
        cfg = load_config(_config(tmp_path, 1.0))
        out = tmp_path / "r.csv"
        result: dict[str, object] = {}

        def sweep() -> None:
            try:
                result["rows"] = run_sweep_on_ray(cfg, out)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                result["error"] = exc

        t = threading.Thread(target=sweep)
        t.start()
        raylet = node_b.all_processes["raylet"][0].process.pid
        b_id = node_b.node_id

        def b_rows() -> int:
            if not out.is_file():
                return 0
            return sum(r.get("env_ray_node_id") == b_id for r in read_rows(out))

        deadline = time.monotonic() + 120
        while not (b_rows() >= 1 and _cell_on(raylet)):  # node b measured one, and is busy
            assert time.monotonic() < deadline and t.is_alive(), result
            time.sleep(0.05)
        cluster.remove_node(node_b, allow_graceful=False)
        t.join(300)
        assert not t.is_alive() and "error" not in result, result
    finally:
        ray.shutdown()
        cluster.shutdown()
    rows = read_rows(out)
    keys = [cell_key(r) for r in rows]
    assert len(keys) == len(set(keys)) == 8  # every cell exactly one row
    assert all(r["error"] is None for r in rows), [r["error"] for r in rows]
    assert len({r["env_ray_node_id"] for r in rows}) == 2  # measured on both nodes
    retried = [r for r in rows if r.get("retried_after")]
    assert retried and all(r["env_ray_node_id"] != b_id for r in retried)
    assert all("node" in str(r["retried_after"]) for r in retried)


def _ours(tag: str) -> list[psutil.Process]:
    """Cell processes started under this test (they inherit its marker variable)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if _is_cell(p.info["cmdline"] or []) and p.environ().get("CNNBENCH_TEST_TAG") == tag:
                found.append(p)
        except psutil.Error:
            continue
    return found


@pytest.mark.slow  # a process killed mid-run and recovered: tens of seconds
def test_ctrl_c_cancels_the_cells_and_keeps_the_finished_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_faults import _cli, _rows, _wait_for

    tag = f"ray-ctrl-c-{os.getpid()}"
    monkeypatch.setenv("CNNBENCH_TEST_TAG", tag)
    root = tmp_path / "work"
    root.mkdir()
    cfg = _config(root, 1.0)
    out = root / "r.csv"
    proc = _cli(root, tmp_path, "sweep", cfg.name, "--out", "r.csv", "--executor", "ray",
                "--no-db")  # fmt: skip
    _wait_for(lambda: out.is_file() and len(_rows(out)) >= 2 and bool(_ours(tag)), timeout=180)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "Traceback" not in err
    rows = _rows(out)
    assert 2 <= len(rows) < 8 and all(r["error"] is None for r in rows)
    _wait_for(lambda: not _ours(tag), timeout=30)  # no cell process outlives the sweep
