from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnbench.bench.results.compare import compare_rows, parse_threshold
from cnnbench.bench.results.files import read_rows, write_rows
from cnnbench.cli import cli
from cnnbench.errors import InvalidInputError


def row(model: str, p50: float, ips: float, **kw: object) -> dict:
    r = {"model": model, "engine": "onnxruntime", "precision": "fp32", "device": "cpu",
         "batch": 1, "scenario": "offline", "latency_ms_p50": p50, "throughput_ips": ips,
         "error": None}  # fmt: skip
    r.update(kw)
    return r


def test_threshold_parsing() -> None:
    assert parse_threshold("5%") == 5.0
    assert parse_threshold("7.5") == 7.5
    assert parse_threshold("0.05") == pytest.approx(5.0)
    for bad in ("x%", "-1", ""):
        with pytest.raises(InvalidInputError):
            parse_threshold(bad)


def _repeats(model: str, p50: float, ips: float, n: int = 2, **kw: object) -> list[dict]:
    """``n`` repeats of a cell (each its own process), within 1 % of each other."""
    return [
        row(model, p50 * (1 + 0.01 * i), ips * (1 - 0.01 * i), repeat=i + 1, **kw) for i in range(n)
    ]


def test_directions_and_threshold_on_repeats() -> None:
    base = [*_repeats("a", 10.0, 100.0), *_repeats("b", 10.0, 100.0), *_repeats("c", 10.0, 100.0)]
    new = [*_repeats("a", 10.4, 96.0), *_repeats("b", 11.5, 100.0), *_repeats("c", 8.0, 80.0)]
    cmp = compare_rows(base, new, threshold_pct=5.0)
    status = {(r["model"], r["metric"]): r["status"] for r in cmp.rows}
    assert status[("a", "latency_ms_p50")] == "ok"  # +4 %
    assert status[("a", "throughput_ips")] == "ok"  # -4 %
    assert status[("b", "latency_ms_p50")] == "regression"  # +15 %, every pair beyond 5 %
    assert status[("c", "latency_ms_p50")] == "improvement"
    assert status[("c", "throughput_ips")] == "regression"  # -20 % throughput is worse
    r = next(r for r in cmp.rows if r["model"] == "b" and r["metric"] == "latency_ms_p50")
    assert r["ratio"] == pytest.approx(1.15) and r["change_pct"] == pytest.approx(15.0)
    assert len(cmp.regressions) == 2


def test_one_process_per_side_never_decides_a_timing() -> None:
    """Two single runs that differ by 20 % with tight CIs: what one process per side shows is
    within-run noise only, so the timing is inconclusive and says to measure repeats; memory,
    which has no samples behind it, is still decided by the threshold."""
    b = row("a", 10.0, 100.0, latency_ms_median_ci_low=9.9, latency_ms_median_ci_high=10.1,
            host_peak_rss_mb=100.0)  # fmt: skip
    n = row("a", 12.0, 83.0, latency_ms_median_ci_low=11.9, latency_ms_median_ci_high=12.1,
            host_peak_rss_mb=150.0)  # fmt: skip
    metrics = ("latency_ms_p50", "host_peak_rss_mb")
    cmp = compare_rows([b], [n], metrics=metrics, threshold_pct=5.0)
    lat, rss = cmp.rows
    assert lat["status"] == "inconclusive" and "--repeats" in lat["note"]
    assert lat["ci_overlap"] is False  # significant within the runs, and still not decided
    assert rss["status"] == "regression" and cmp.regressions == [rss]


def test_last_good_row_wins_and_errors_are_reported() -> None:
    base = [row("a", 10.0, 100.0), row("x", 1.0, 1.0)]
    new = [row("a", 99.0, 1.0), row("a", 10.0, 100.0), row("x", 0, 0, error="boom")]
    cmp = compare_rows(base, new)
    assert not cmp.regressions
    assert any("new error: boom" in e for e in cmp.errors)


def test_ci_overlap_flag() -> None:
    b = row("a", 10.0, 1.0, latency_ms_median_ci_low=9.9, latency_ms_median_ci_high=10.1)
    n = row("a", 12.0, 1.0, latency_ms_median_ci_low=11.9, latency_ms_median_ci_high=12.1)
    cmp = compare_rows([b], [n], metrics=("latency_ms_p50",))
    assert cmp.rows[0]["ci_overlap"] is False


def _files(tmp_path: Path, new_p50: float) -> tuple[str, str]:
    base, new = tmp_path / "base.csv", tmp_path / "new.csv"
    write_rows(base, [*_repeats("a", 10.0, 100.0), *_repeats("b", 5.0, 200.0)])
    write_rows(new, [*_repeats("a", new_p50, 100.0), *_repeats("b", 5.0, 200.0)])
    return str(base), str(new)


def test_cli_passes_without_regression(tmp_path: Path) -> None:
    base, new = _files(tmp_path, 10.2)
    out = tmp_path / "cmp.csv"
    res = CliRunner().invoke(cli, ["compare", base, new, "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = read_rows(out)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert res.output.strip().splitlines()[-1] == str(out)


def test_cli_fails_on_regression_and_names_the_cell(tmp_path: Path) -> None:
    base, new = _files(tmp_path, 12.0)
    res = CliRunner().invoke(cli, ["compare", base, new, "--threshold", "5%"])
    assert res.exit_code == 1
    assert "a/onnxruntime/fp32/b1/offline latency_ms_p50 +20.0%" in res.output.replace("\n", " ")
    res = CliRunner().invoke(cli, ["compare", base, new, "--threshold", "25%"])
    assert res.exit_code == 0


def test_cli_bad_input_is_one_line_exit_2(tmp_path: Path) -> None:
    base, new = _files(tmp_path, 10.0)
    for args in (
        [base, new, "--metric", "nope"],
        [base, new, "--threshold", "abc"],
        [base, str(tmp_path / "missing.csv")],
    ):
        res = CliRunner().invoke(cli, ["compare", *args])
        assert res.exit_code == 2, res.output
        assert len(res.output.strip().splitlines()) == 1
    other = tmp_path / "other.csv"
    write_rows(other, [row("zzz", 1.0, 1.0)])
    res = CliRunner().invoke(cli, ["compare", base, str(other)])
    assert res.exit_code == 2 and "nothing to compare" in res.output
