from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnbench.bench.compare import compare_rows, parse_threshold
from cnnbench.bench.results import read_rows, write_rows
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


def test_directions_and_threshold() -> None:
    base = [row("a", 10.0, 100.0), row("b", 10.0, 100.0), row("c", 10.0, 100.0)]
    new = [row("a", 10.4, 96.0), row("b", 11.0, 100.0), row("c", 8.0, 80.0)]
    cmp = compare_rows(base, new, threshold_pct=5.0)
    status = {(r["model"], r["metric"]): r["status"] for r in cmp.rows}
    assert status[("a", "latency_ms_p50")] == "ok"  # +4 %
    assert status[("a", "throughput_ips")] == "ok"  # -4 %
    assert status[("b", "latency_ms_p50")] == "regression"  # +10 %
    assert status[("c", "latency_ms_p50")] == "improvement"
    assert status[("c", "throughput_ips")] == "regression"  # -20 % throughput is worse
    r = next(r for r in cmp.rows if r["model"] == "b" and r["metric"] == "latency_ms_p50")
    assert r["ratio"] == pytest.approx(1.1) and r["change_pct"] == pytest.approx(10.0)
    assert len(cmp.regressions) == 2


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
    write_rows(base, [row("a", 10.0, 100.0), row("b", 5.0, 200.0)])
    write_rows(new, [row("a", new_p50, 100.0), row("b", 5.0, 200.0)])
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
    assert "a/onnxruntime/fp32/b1/offline latency_ms_p50 +20.0%" in res.output
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
