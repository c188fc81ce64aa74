"""Two sweeps recording into one SQLite store at the same time, one of them killed with SIGKILL
halfway: every finished cell of both is in the store, no row is partial, and the killed one
resumes into its own run."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from cnnbench.bench.results.files import cell_key
from cnnbench.bench.results.store import Store
from cnnbench.bench.results.store_read import FINISHED, RUNNING
from tests.test_faults import _cli, _rows, _wait_for

SWEEP = """models: [lenet5]
engines: ['null']
precisions: [fp32]
batches: [1, 2, 3, 4]
scenarios: [offline, multi-stream]
timeout_s: 120
stop: {warmup_count: 1, warmup_time: 0, min_count: 100, min_time: 0.3, max_time: 1}
"""
CELLS = 8


def test_concurrent_sweeps_one_killed_lose_nothing_and_resume(tmp_path: Path) -> None:
    root = tmp_path / "work"
    root.mkdir()
    (root / "s.yaml").write_text(SWEEP)
    url = f"sqlite:///{tmp_path / 'h.db'}"
    a = _cli(root, tmp_path, "sweep", "s.yaml", "--out", "a.csv", "--db", url)
    b = _cli(root, tmp_path, "sweep", "s.yaml", "--out", "b.csv", "--db", url)
    _wait_for(lambda: (root / "b.csv").is_file() and len(_rows(root / "b.csv")) >= 3)
    os.killpg(b.pid, signal.SIGKILL)  # the sweep and the cell it is measuring
    b.communicate(timeout=60)
    _, err = a.communicate(timeout=300)
    assert a.returncode == 0, err
    with Store.open(url) as store:
        runs = {r["out_file"]: r for r in store.runs()}
        run_a, run_b = runs[str(root / "a.csv")], runs[str(root / "b.csv")]
        assert run_a["status"] == FINISHED and run_b["status"] == RUNNING  # killed: never ended
        for run, csv in ((run_a, "a.csv"), (run_b, "b.csv")):
            stored = store.cells(run_ids=[run["run_id"]])
            finished = {cell_key(r) for r in _rows(root / csv)}
            assert finished <= {cell_key(r) for r in stored}  # every finished cell is there
            for r in stored:  # and none is partial: the whole row, with its samples
                assert r["error"] is None and r["latency_ms_p50"] is not None
                assert store.samples(r["cell_id"]).size == r["samples"]  # type: ignore[union-attr]
        assert len(store.cells(run_ids=[run_a["run_id"]])) == CELLS
    again = _cli(root, tmp_path, "sweep", "s.yaml", "--out", "b.csv", "--db", url, "--resume")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    with Store.open(url) as store:
        runs = store.runs()
        assert len(runs) == 2  # the resumed sweep went on in its own run
        run_b = next(r for r in runs if r["out_file"] == str(root / "b.csv"))
        assert run_b["status"] == FINISHED
        keys = {cell_key(r) for r in store.cells(run_ids=[run_b["run_id"]])}
        assert len(keys) == CELLS
    assert len(_rows(root / "b.csv")) == CELLS
