from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from cnnbench.bench.results.files import (
    CONTRACT_COLUMNS,
    append_row,
    cell_key,
    columns_for,
    format_of,
    read_rows,
    write_rows,
)
from cnnbench.errors import InvalidInputError


def row(model: str = "m", **kw: object) -> dict:
    r = {"model": model, "engine": "null", "precision": "fp32", "device": "cpu", "batch": 1,
         "scenario": "offline", "latency_ms_p50": 1.5, "throughput_ips": 10.0, "error": None}  # fmt: skip
    r.update(kw)
    return r


def test_format_from_extension() -> None:
    assert format_of("a.csv") == "csv" and format_of("a.jsonl") == "jsonl"
    with pytest.raises(InvalidInputError, match=r"\.csv or \.jsonl"):
        format_of("a.txt")


def test_columns_start_with_the_contract() -> None:
    cols = columns_for([row(env_cpu="x", zzz=1, latency_ms_p95=2.0)])
    assert tuple(cols[: len(CONTRACT_COLUMNS)]) == CONTRACT_COLUMNS
    assert cols.index("latency_ms_p95") < cols.index("zzz") < cols.index("env_cpu")


@pytest.mark.parametrize("name", ["r.csv", "r.jsonl"])
def test_append_and_read_back(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    append_row(p, row("a"))
    append_row(p, row("b", latency_ms_p50=2.25, error="boom: x, y"))
    rows = read_rows(p)
    assert [r["model"] for r in rows] == ["a", "b"]
    assert rows[1]["latency_ms_p50"] == 2.25 and rows[1]["batch"] == 1
    assert rows[1]["error"] == "boom: x, y"
    assert rows[0]["error"] is None


def test_csv_header_widens_when_a_row_brings_new_columns(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    append_row(p, row("a"))
    append_row(p, row("b", new_metric=3.5))
    with open(p, newline="") as fh:
        recs = list(csv.DictReader(fh))
    assert recs[0]["new_metric"] == "" and recs[1]["new_metric"] == "3.5"
    assert list(recs[0])[: len(CONTRACT_COLUMNS)] == list(CONTRACT_COLUMNS)


@pytest.mark.parametrize("name", ["r.csv", "r.jsonl"])
def test_torn_last_line_is_ignored_and_cut(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    append_row(p, row("a"))
    with open(p, "a") as fh:
        fh.write('{"model": "half' if name.endswith("jsonl") else "half,null,fp")
    assert [r["model"] for r in read_rows(p)] == ["a"]
    append_row(p, row("c"))
    assert [r["model"] for r in read_rows(p)] == ["a", "c"]
    assert p.read_text().endswith("\n")


def test_jsonl_nan_becomes_null(tmp_path: Path) -> None:
    p = tmp_path / "r.jsonl"
    append_row(p, row(latency_ms_p50=math.nan))
    assert json.loads(p.read_text())["latency_ms_p50"] is None


def test_write_rows_replaces_the_file(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    append_row(p, row("a"))
    write_rows(p, [row("z")])
    assert [r["model"] for r in read_rows(p)] == ["z"]
    assert not list(tmp_path.glob(".*tmp"))


def test_cell_key_identifies_the_cell() -> None:
    assert cell_key(row()) == "m|null|fp32|cpu|1|offline"
    assert cell_key(row(batch=8)) != cell_key(row())
    s1 = cell_key(row(scenario="server", target_qps=100.0))
    assert s1.endswith("qps=100") and s1 != cell_key(row(scenario="server", target_qps=200))
    assert cell_key(row(scenario="server", target_qps=None)).endswith("peak")


def _writer(path: str, who: int, n: int, start: object) -> None:
    from cnnbench.bench.measure import samples

    start.wait()  # type: ignore[attr-defined]
    for i in range(n):
        row: dict[str, object] = {"model": f"m{who}", "engine": "null", "precision": "fp32"}
        row["batch"] = i
        row[f"extra_{who}_{i % 3}"] = i  # new columns: the writer rewrites the widened header
        row[samples.SAMPLES_KEY] = [who * 1000 + i] * (i + 1)
        samples.store(path, row)
        append_row(path, row)


@pytest.mark.parametrize("name", ["r.csv", "r.jsonl"])
def test_concurrent_writers_lose_no_row_and_no_sample(tmp_path: Path, name: str) -> None:
    """Four processes add rows (widening the CSV header) and samples to one new file at once."""
    import multiprocessing as mp

    from cnnbench.bench.measure import samples

    ctx = mp.get_context("fork")
    path = str(tmp_path / "out" / name)
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(path, w, 12, start)) for w in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    rows = read_rows(path)
    assert sorted((r["model"], r["batch"]) for r in rows) == sorted(
        (f"m{w}", i) for w in range(4) for i in range(12)
    )
    for r in rows:
        who, i = int(r["model"][1:]), r["batch"]
        got = samples.load(path, r)
        assert got is not None and got.tolist() == [who * 1000 + i] * (i + 1)
