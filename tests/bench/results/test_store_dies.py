"""A store that dies: PostgreSQL stopped mid-sweep, an SQLite file locked past its timeout, a
record the database refuses. Never a traceback; the rows stay in the results file and are
printed; the run's status says what happened; ``--resume`` or ``cnnbench store sync`` puts
every row of the file into the store before the run is called finished."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cnnbench.bench.measure import samples as sample_files
from cnnbench.bench.results.files import append_row, cell_key, read_rows
from cnnbench.bench.results.store import Store
from cnnbench.bench.results.store_read import FINISHED, INCOMPLETE, RUNNING
from cnnbench.bench.results.store_recording import recording
from cnnbench.bench.results.store_sync import sync_file
from cnnbench.cli import cli
from cnnbench.errors import InvalidInputError

ROOT = Path(__file__).resolve().parents[3]
SWEEP = """models: [lenet5]
engines: ['null']
precisions: [fp32]
batches: [1, 2, 3, 4]
scenarios: [offline]
timeout_s: 120
stop: {warmup_count: 1, warmup_time: 0, min_count: 100, min_time: 0.3, max_time: 1}
"""


def _row(batch: int, run_id: int | None, at: str) -> dict:
    return {"model": "lenet5", "engine": "null", "precision": "fp32", "device": "cpu",
            "batch": batch, "scenario": "offline", "latency_ms_p50": 1.0, "error": None,
            "valid": True, "run_id": run_id, "finished_at": at}  # fmt: skip


def _file_with_rows(path: Path, rows: list[dict]) -> None:
    for i, r in enumerate(rows):
        r[sample_files.SAMPLES_KEY] = np.arange(10 + i, dtype=np.int64)
        sample_files.store(path, r)
        append_row(path, r)


def test_sync_puts_each_missing_row_into_its_run_once(store_url: str, tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    with Store.open(store_url) as store:
        run = store.begin_run(kind="sweep", command="c", config=None, environment={}, git={},
                              out_file=str(out.absolute()))  # fmt: skip
        rows = [_row(b, run, f"2026-01-01T00:00:0{b}") for b in (1, 2, 3)]
        store.record(run, {k: v for k, v in rows[0].items()}, None)
        rows.append(_row(9, None, "2026-01-01T00:00:09"))  # a --no-db row: no run here
        _file_with_rows(out, rows)
        store.finish_run(run, INCOMPLETE)
        report = sync_file(store, out)
        assert report.added[run] == 2 and report.total == 3 and report.finished == [run]
        cells = store.cells(run_ids=[run])
        assert sorted(c["batch"] for c in cells) == [1, 2, 3]
        got = {c["batch"]: store.samples(c["cell_id"]) for c in cells}
        np.testing.assert_array_equal(got[3], np.arange(12, dtype=np.int64))  # its own samples
        assert store.runs(run_id=run)[0]["status"] == FINISHED
        again = sync_file(store, out)
        assert again.total == 0  # matched by run, cell and time: never twice
        [sync_run] = [r for r in store.runs() if r["kind"] == "sync"]
        assert sync_run["cells"] == 1 and sync_run["status"] == FINISHED


def test_a_run_id_of_another_store_is_not_this_stores_run(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store:
        other = store.begin_run(kind="run", command="c", config=None, environment={}, git={},
                                out_file="/elsewhere/x.csv")  # fmt: skip
        _file_with_rows(out, [_row(1, other, "t1")])
        report = sync_file(store, out)
        assert other not in report.added and report.total == 1
        assert store.cells(run_ids=[other]) == []


def test_settling_a_run_records_what_the_store_missed(tmp_path: Path) -> None:
    url, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "r.csv"
    with recording(url, enabled=True, kind="run", command="c", config=None, environment={},
                   git={}, out_file=str(out)) as rec:  # fmt: skip
        assert rec is not None
        for b in (1, 2):
            row = _row(b, None, f"t{b}")
            if b == 1:
                assert rec(row, None) is None
            else:  # the store refuses a value (a batch past 64 bits reached SQLite once)
                bad = {**row, "batch": 2**70}
                assert "cannot record" in str(rec(bad, None))
                row["run_id"] = rec.run_id
            append_row(out, row)
    with Store.open(url) as store:
        [run] = store.runs()
        assert run["status"] == FINISHED and run["cells"] == 2


def test_a_locked_sqlite_store_says_it_is_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "s.db"
    Store.open(f"sqlite:///{db}").close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    monkeypatch.setenv("CNNBENCH_DB_TIMEOUT", "2")
    start = time.monotonic()
    try:
        with pytest.raises(InvalidInputError, match="locked"):
            Store.open(f"sqlite:///{db}")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    waited = time.monotonic() - start
    assert 1.5 < waited < 8
    assert "is locked by another process; waiting up to 2s" in capsys.readouterr().err


# ---- PostgreSQL stopped in the middle of a sweep: its own private server ----------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_pg(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A PostgreSQL server of this test alone (never the shared one), stopped after it."""
    if not shutil.which("bash") or not list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        pytest.skip("no PostgreSQL server here (apt-get install postgresql)")
    pytest.importorskip(
        "psycopg", reason="psycopg is not installed (pip install 'cnnbench[postgres]')"
    )
    pg_dir = Path(f"/tmp/cnb-pg-{os.getpid()}-{_free_port()}")  # a short socket path
    env = {**os.environ, "CNNBENCH_PG_DIR": str(pg_dir), "CNNBENCH_PG_PORT": str(_free_port())}
    script = ROOT / "tools" / "ci" / "start_postgres.sh"
    proc = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        pytest.skip(f"a private PostgreSQL server did not start: {proc.stderr.strip()[-200:]}")
    try:
        yield proc.stdout.strip(), env
    finally:
        subprocess.run(["bash", str(script), "--stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(pg_dir, ignore_errors=True)


def _cli(root: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "cnnbench", *args], cwd=root, env=env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip


def test_postgresql_stopped_mid_sweep_then_resume(
    private_pg: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    url, env = private_pg
    script = ROOT / "tools" / "ci" / "start_postgres.sh"
    (tmp_path / "s.yaml").write_text(SWEEP)
    out = tmp_path / "r.csv"
    args = ["sweep", "s.yaml", "--out", "r.csv", "--db", url, "--format", "json"]
    proc = _cli(tmp_path, *args)
    end = time.monotonic() + 120
    while not (out.is_file() and read_rows(out)):
        assert time.monotonic() < end and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    subprocess.run(["bash", str(script), "--stop"], env=env, capture_output=True, timeout=60)
    stdout, err = proc.communicate(timeout=300)
    assert "Traceback" not in err, err
    assert proc.returncode == 1, err  # the run could not record: exit 1, the rows printed
    assert len(json.loads(stdout)) == 4  # the promised rows, printed
    assert len(read_rows(out)) == 4  # and all in the file
    assert f"`cnnbench store sync {out}`" in err
    assert err.strip().splitlines()[-1].startswith("cnnbench: error: cannot record into")

    subprocess.run(["bash", str(script), "--start"], env=env, capture_output=True, timeout=60)
    with Store.open(url) as store:
        [run] = store.runs()
        assert run["status"] == RUNNING and run["cells"] < 4  # never called finished
    again = _cli(tmp_path, *args, "--resume")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0 and "Traceback" not in err, err
    with Store.open(url) as store:
        [run] = store.runs()
        keys = sorted(cell_key(c) for c in store.cells(run_ids=[run["run_id"]]))
        assert keys == sorted(cell_key(r) for r in read_rows(out))  # every cell of the file
        assert run["status"] == FINISHED and run["cells"] == 4
        assert store.resolve("latest") == run["run_id"]


def test_store_sync_command_and_a_store_still_away(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    _file_with_rows(out, [_row(1, None, "t1"), _row(2, None, "t2")])
    db = f"sqlite:///{tmp_path / 's.db'}"
    res = CliRunner().invoke(cli, ["store", "sync", str(out), "--db", db])
    assert res.exit_code == 0, res.output
    assert f"2 row(s) of {out} recorded" in res.stdout
    res = CliRunner().invoke(cli, ["store", "sync", str(out), "--db", db])
    assert res.exit_code == 0 and f"0 row(s) of {out} recorded" in res.stdout
