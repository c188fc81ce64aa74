"""The results store, on SQLite and on a real PostgreSQL server: schema and migrations, rows
and samples in one transaction, concurrent writers, the commands that read it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from cnnbench.bench.results.history import parse_when, regressions
from cnnbench.bench.results.schema import SCHEMA_VERSION
from cnnbench.bench.results.store import Store
from cnnbench.bench.results.store_read import FINISHED, INTERRUPTED
from cnnbench.bench.results.store_recording import recording
from cnnbench.bench.results.store_url import resolve_url
from cnnbench.cli import cli
from cnnbench.errors import InvalidInputError


def _row(
    p50: float = 1.0, *, model: str = "lenet5", repeat: int | None = None, **kw: object
) -> dict:
    r: dict = {"model": model, "engine": "onnxruntime", "precision": "fp32", "device": "cpu",
               "batch": 1, "scenario": "offline", "latency_ms_p50": p50, "latency_ms_p99": p50 * 2,
               "throughput_ips": 1000.0 / p50, "samples": 3, "error": None, "valid": True,
               "invalid_reason": "", "latency_ms_mean": float("nan"), "repeat": repeat}  # fmt: skip
    r.update(kw)
    return r


def _begin(store: Store, **kw: object) -> int:
    return store.begin_run(kind="run", command="cnnbench run", config={"a": 1},
                           environment={"cpu": "x", "torch_version": "2.13"}, git={},
                           out_file=None, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_a_row_and_its_samples_round_trip(store_url: str) -> None:
    with Store.open(store_url) as store:
        run = _begin(store)
        lat = np.array([1_000_000, 1_100_000, 990_000], dtype=np.int64)
        cid = store.record(run, _row(), lat)
        store.finish_run(run)
        [r] = store.cells(run_ids=[run])
        assert r["cell_id"] == cid and r["run_id"] == run and r["latency_ms_p50"] == 1.0
        assert r["latency_ms_mean"] is None  # NaN stored as null, on both databases
        np.testing.assert_array_equal(store.samples(cid), lat)
        [info] = store.runs()
        assert info["status"] == FINISHED and info["cells"] == 1 and info["errors"] == 0
        assert info["versions"] == {"torch": "2.13"} and info["config"] == {"a": 1}


def test_schema_is_versioned_and_a_newer_one_is_refused(store_url: str) -> None:
    with Store.open(store_url) as store, store.engine.begin() as conn:
        assert conn.execute(text("SELECT MAX(version) FROM cnnbench_schema")).scalar() == (
            SCHEMA_VERSION
        )
        conn.execute(text("INSERT INTO cnnbench_schema VALUES (99, 'later')"))
    with pytest.raises(InvalidInputError, match=r"schema v99, newer than this cnnbench's v2"):
        Store.open(store_url)
    res = CliRunner().invoke(cli, ["history", "--db", store_url])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output


def test_reopening_migrates_nothing_and_keeps_rows(store_url: str) -> None:
    with Store.open(store_url) as store:
        store.record(_begin(store), _row())
    with Store.open(store_url) as store:
        assert len(store.cells()) == 1
        with store.engine.connect() as conn:
            count = conn.execute(text("SELECT COUNT(*) FROM cnnbench_schema")).scalar()
            assert count == SCHEMA_VERSION  # one row per step, none applied twice


def test_a_v1_store_is_migrated_keeping_its_rows(store_url: str) -> None:
    """A store written by the first schema (runs, cells, samples) gains v2's job queue."""
    import sqlalchemy as sa

    from cnnbench.bench.results.schema import migrate
    from cnnbench.bench.results.store import now

    engine = sa.create_engine(resolve_url(store_url), poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        assert migrate(conn, now(), target=1) == (0, 1)
        conn.execute(
            text("INSERT INTO runs (started_at, status, kind) VALUES ('t', 'finished', 'run')")
        )
    engine.dispose()
    with Store.open(store_url) as store:
        assert [r["status"] for r in store.runs()] == [FINISHED]
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT MAX(version) FROM cnnbench_schema")).scalar() == 2
            assert conn.execute(text("SELECT COUNT(*) FROM jobs")).scalar() == 0


#: a writer process: it imports cnnbench alone (not this test module), so it runs under any
#: test launcher, the bare ``pytest`` entry point included
_WRITER = """
import sys
import numpy as np
from cnnbench.bench.results.store import Store

url, tag, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with Store.open(url) as store:
    run = store.begin_run(kind="run", command="cnnbench run", config={"a": 1},
                          environment={"cpu": "x", "torch_version": "2.13"}, git={}, out_file=None)
    for i in range(n):
        row = {"model": f"m{tag}", "engine": "onnxruntime", "precision": "fp32", "device": "cpu",
               "batch": 1, "scenario": "offline", "latency_ms_p50": 1.0 + i, "error": None,
               "valid": True, "invalid_reason": ""}
        store.record(run, row, np.arange(50, dtype=np.int64))
    store.finish_run(run)
"""


def test_concurrent_writers_lose_nothing(store_url: str, tmp_path: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, store_url, str(t), "15"], cwd=tmp_path,
                         stderr=subprocess.PIPE, text=True)
        for t in range(3)
    ]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with Store.open(store_url) as store:
        rows = store.cells()
        assert len(rows) == 45 and {r["model"] for r in rows} == {"m0", "m1", "m2"}
        assert all(store.samples(r["cell_id"]).size == 50 for r in rows)  # type: ignore[union-attr]
        assert [r["status"] for r in store.runs()] == [FINISHED] * 3


def test_recording_marks_an_interrupted_run(store_url: str) -> None:
    rec_args = dict(enabled=True, kind="sweep", command="c", config=None, environment={},
                    git={}, out_file=None)  # fmt: skip
    with pytest.raises(KeyboardInterrupt), recording(store_url, **rec_args) as rec:  # type: ignore[arg-type]
        assert rec is not None
        assert rec(_row(), None) is None
        raise KeyboardInterrupt
    with Store.open(store_url) as store:
        [run] = store.runs()
        assert run["status"] == INTERRUPTED and run["cells"] == 1


def test_refs_resolve_to_finished_runs(store_url: str) -> None:
    with Store.open(store_url) as store:
        ids = [_begin(store) for _ in range(3)]
        for i in ids[:2]:
            store.finish_run(i)
        # the third is still running: latest is the newest finished one
        assert store.resolve("latest") == ids[1] and store.resolve("latest~1") == ids[0]
        assert store.resolve(str(ids[2])) == ids[2]
        for bad, msg in (("latest~2", "only 2 finished"), ("abc", "db:RUN_ID"), ("999", "no run")):
            with pytest.raises(InvalidInputError, match=msg):
                store.resolve(bad)


def test_run_history_and_compare_against_the_store(store_url: str, tmp_path: Path) -> None:
    """The acceptance sequence: two runs recorded, listed with run ids, compared; exit 0."""
    args = ["run", "-m", "lenet5", "-e", "onnxruntime", "-b", "1", "--db", store_url,
            "--artifacts", str(tmp_path / "art"), "--min-time", "0.2", "--max-time", "1"]  # fmt: skip
    for _ in range(2):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["history", "--db", store_url, "--format", "json"])
    assert res.exit_code == 0, res.output
    runs = json.loads(res.output)
    assert len(runs) == 2 and all(isinstance(r["run_id"], int) for r in runs)
    assert all(r["status"] == "finished" and r["cells"] == 1 for r in runs)
    assert runs[0]["command"].startswith("cnnbench ")
    res = CliRunner().invoke(cli, ["compare", "db:latest~1", "db:latest", "--db", store_url])
    assert res.exit_code == 0, res.output
    assert "db:latest~1 (run" in res.output
    res = CliRunner().invoke(cli, ["history", "--db", store_url, "--cells", "--format", "json"])
    cells = json.loads(res.output)
    assert len(cells) == 2 and all("samples_file" not in c for c in cells)  # no --out here
    with Store.open(store_url) as store:  # the samples went into the store, not a sidecar
        assert all(store.samples(c["cell_id"]) is not None for c in cells)


def test_no_db_records_nothing(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    res = CliRunner().invoke(cli, ["run", "-m", "lenet5", "-e", "null", "-b", "1", "--no-db",
                                   "--db", str(db), "--min-time", "0.1"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert not db.exists()


def test_a_bad_db_url_is_one_line_before_any_measurement(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    for url in ("nosuchdialect://x/y", "postgresql://nobody@127.0.0.1:1/x"):
        res = CliRunner().invoke(cli, ["run", "-m", "lenet5", "-e", "null", "-b", "1",
                                       "--db", url, "--out", str(out)])  # fmt: skip
        assert res.exit_code == 2, res.output
        assert len(res.output.strip().splitlines()) == 1 and "--no-db" in res.output
        assert not out.exists()


def test_regressions_name_the_first_slower_run(store_url: str) -> None:
    """lenet5: runs 1-3 at 10 ms, 4-6 at 13 ms (two repeats each): one step, at run 4, still
    slower. m2 (one row per run): a lone spike that the next run does not confirm, and an
    invalid slow row, are no step."""
    lenet = (10.0, 10.1, 9.9, 13.0, 13.1, 12.9)
    m2 = ((5.0, True), (9.5, False), (5.05, True), (9.0, True), (5.1, True), (5.0, True))
    with Store.open(store_url) as store:
        ids = []
        for p50, (m2_p50, m2_valid) in zip(lenet, m2, strict=True):
            run = _begin(store)
            for rep in (1, 2):
                store.record(run, _row(p50 * (1 + 0.005 * rep), repeat=rep))
            store.record(run, _row(m2_p50, model="m2", valid=m2_valid))
            store.finish_run(run)
            ids.append(run)
        found = regressions(store, metrics=("latency_ms_p50",), threshold_pct=10)
        assert [(r["model"], r["run_id"], r["base_run_id"]) for r in found] == [
            ("lenet5", ids[3], ids[2])
        ]
        assert found[0]["base_runs"] == 3 and found[0]["still_slower"] is True
        assert found[0]["change_pct"] == pytest.approx(30.0, abs=1.0)
    res = CliRunner().invoke(cli, ["regressions", "--db", store_url, "--threshold", "10%"])
    assert res.exit_code == 1 and "still slower" in res.output, res.output


def test_time_filters() -> None:
    assert parse_when("2026-12-01") == "2026-12-01T00:00:00.000000+00:00"
    assert parse_when("7d") < parse_when("1h")  # type: ignore[operator]
    with pytest.raises(InvalidInputError, match="span back from now"):
        parse_when("last tuesday")


def test_a_plain_path_is_an_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_url(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path / 'x.db'}"
    monkeypatch.setenv("CNNBENCH_DB", "postgresql://u@h/db")
    assert resolve_url(None).startswith("postgresql+psycopg")
