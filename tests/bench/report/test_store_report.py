"""``cnnbench report --db``: history figures from the results store in the offline report,
which loads in headless Chromium without console errors."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import update

from cnnbench.bench.report.history_plots import cells_over_time
from cnnbench.bench.results.schema import cells
from cnnbench.bench.results.store import Store
from cnnbench.cli import cli
from tests.bench.report.test_report_html import _problems, needs_chromium


def _store(path: Path) -> str:
    """Five finished runs of two cells a day apart; run 3's rows are invalid."""
    url = f"sqlite:///{path}"
    with Store.open(url) as store:
        for day in range(5):
            run = store.begin_run(kind="sweep", command="cnnbench sweep c.yaml", config={},
                                  environment={}, git={}, out_file=None)  # fmt: skip
            for batch, p50 in ((1, 0.05), (4, 0.1)):
                valid = day != 2
                row = {"model": "lenet5", "engine": "onnxruntime", "precision": "fp32",
                       "device": "cpu", "batch": batch, "scenario": "offline",
                       "latency_ms_p50": p50 * (1 + 0.02 * day), "latency_ms_p99": p50 * 2,
                       "throughput_ips": batch * 1000 / p50, "params": 61706, "macs": 416520,
                       "host_peak_rss_mb": 80.0, "error": None, "valid": valid,
                       "invalid_reason": "" if valid else "foreign CPU load: 1.0 cores"}  # fmt: skip
                cid = store.record(run, row, np.full(200, int(p50 * 1e6), dtype=np.int64))
                with store.engine.begin() as conn:  # spread the runs over days
                    conn.execute(
                        update(cells).where(cells.c.id == cid)
                        .values(recorded_at=f"2026-11-{20 + day:02d}T10:00:00.000000+00:00")
                    )  # fmt: skip
            store.finish_run(run)
    return url


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("store-report")
    url = _store(tmp / "h.db")
    res = CliRunner().invoke(cli, ["report", "--db", url, "--out", str(tmp / "report")])
    assert res.exit_code == 0, res.output
    return tmp / "report"


def test_report_from_the_store_has_the_history_figures(report_dir: Path) -> None:
    for name in ("latency_over_time", "throughput_over_time"):
        for ext in ("png", "svg"):
            assert (report_dir / f"{name}.{ext}").stat().st_size > 1000
    page = (report_dir / "index.html").read_text()
    refs = set(re.findall(r'(?:src|href)="([^"#:]+)"', page))
    assert {"latency_over_time.svg", "throughput_over_time.png"} <= refs
    assert "invalid rows (2 here" in page  # the caption counts the marked points
    # the comparison table holds the newest run's figures of each cell
    csv = (report_dir / "comparison.csv").read_text()
    assert "lenet5" in csv and ",0.054," in csv  # 0.05 ms x 1.08, the fifth run


def test_history_series_are_per_cell_in_time_order() -> None:
    rows = [
        {"model": "m", "engine": "e", "precision": "fp32", "device": "cpu", "batch": 1,
         "scenario": "offline", "recorded_at": t, "cell_id": i, "run_id": i, "machine": "a",
         "latency_ms_p50": float(i), "error": err}
        for i, (t, err) in enumerate((("2026-01-02", None), ("2026-01-01", None), ("2026-01-03", "x")))
    ]  # fmt: skip
    [series] = cells_over_time(rows).values()
    assert [r["latency_ms_p50"] for r in series] == [1.0, 0.0]  # time order; error row left out


@needs_chromium
def test_store_report_loads_in_chromium_without_errors(report_dir: Path, tmp_path: Path) -> None:
    problems, images = _problems(report_dir / "index.html", tmp_path)
    assert images == 5  # no accuracy figure: these rows are on random weights
    assert problems == []
