"""Raw samples stored beside the results, and a compare that decides with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cnnbench.bench.measure import samples
from cnnbench.bench.measure.stats import summarize
from cnnbench.bench.results.compare import compare_files
from cnnbench.bench.results.files import append_row, read_rows
from cnnbench.bench.results.significance import mann_whitney, ratio_ci
from cnnbench.cli import cli


def test_stored_samples_give_back_the_row_percentiles(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    args = ["run", "-m", "lenet5", "-e", "onnxruntime", "-b", "1", "-s", "single-stream",
            "--out", str(out), "--artifacts", str(tmp_path / "art"), "--min-count", "150",
            "--min-time", "0.2", "--max-time", "2"]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    [row] = read_rows(out)
    assert row["samples_file"] == "r.csv.samples"
    arr = samples.load(out, row)
    assert arr is not None and arr.size == row["samples"] == row["samples_count"]
    stats = summarize(arr)
    assert stats.p50 == pytest.approx(row["latency_ms_p50"], rel=1e-12)
    assert stats.p99 == pytest.approx(row["latency_ms_p99"], rel=1e-12)


def _results(path: Path, lat_ns: np.ndarray, **extra: object) -> Path:
    stats = summarize(lat_ns)
    row: dict[str, object] = {
        "model": "lenet5", "engine": "onnxruntime", "precision": "fp32", "device": "cpu",
        "batch": 1, "scenario": "single-stream", "error": None, **stats.to_dict(),
        "throughput_ips": 1e9 / float(lat_ns.mean()), "samples": int(lat_ns.size),
        "valid": True, "invalid_reason": "", samples.SAMPLES_KEY: lat_ns,
    }  # fmt: skip
    row.update(extra)
    samples.store(path, row)
    append_row(path, row)
    return path


def _lat(seed: int, scale: float = 1.0, n: int = 2000, spread: float = 0.03) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (1e6 * scale * (1 + spread * rng.standard_normal(n))).astype(np.int64)


def test_noise_is_not_a_regression_and_a_slowdown_is(tmp_path: Path) -> None:
    base = _results(tmp_path / "base.csv", _lat(0))
    same = _results(tmp_path / "same.csv", _lat(1))
    slow = _results(tmp_path / "slow.csv", _lat(2, scale=1.5))
    ok = compare_files(base, same, threshold_pct=5)
    assert {r["status"] for r in ok.rows} == {"ok"} and not ok.regressions
    # one process per side: the bootstrap and the rank test see the 50 %, but cannot see the
    # noise between processes, so the cell is not decided from them alone
    single = compare_files(base, slow, threshold_pct=5)
    p50 = single.rows[0]
    assert p50["ratio_ci_low"] > 1.05 and p50["p_value"] < 1e-6 and "bootstrap" in p50["test"]
    assert {r["status"] for r in single.rows} == {"inconclusive"} and not single.regressions
    # repeats on both sides (each its own process): every new one is beyond every base one
    for i, (b_seed, n_seed) in enumerate(((3, 4), (5, 6)), start=2):
        _results(base, _lat(b_seed), repeat=i)
        _results(slow, _lat(n_seed, scale=1.5), repeat=i)
    bad = compare_files(base, slow, threshold_pct=5)
    assert [r["status"] for r in bad.rows] == ["regression", "regression"]
    assert bad.rows[0]["repeats"] == "3/3" and bad.rows[0]["ratio_ci_low"] > 1.4


def test_beyond_the_threshold_but_within_the_noise_is_inconclusive(tmp_path: Path) -> None:
    # a 6% shift of a very noisy, short run: beyond 5%, but its CI reaches below 1.05
    lat = _lat(0, n=40, spread=0.4)
    base = _results(tmp_path / "base.csv", lat)
    shifted = np.random.default_rng(5).permutation((lat * 1.06).astype(np.int64))
    new = _results(tmp_path / "new.csv", shifted)
    cmp = compare_files(base, new, threshold_pct=5)
    p50 = cmp.rows[0]
    assert p50["change_pct"] == pytest.approx(6.0, abs=0.01)
    assert p50["status"] == "inconclusive" and "within the noise" in p50["note"]
    assert p50["ratio_ci_low"] < 1.05 < p50["ratio_ci_high"]
    assert not cmp.regressions


def test_an_invalid_side_is_inconclusive_and_strict_ci_fails_on_it(tmp_path: Path) -> None:
    base = _results(tmp_path / "base.csv", _lat(0))
    busy = _results(
        tmp_path / "busy.csv", _lat(2, scale=1.5), valid=False,
        invalid_reason="foreign CPU load: other processes used 0.99 cores (> 0.25)",
    )  # fmt: skip
    cmp = compare_files(base, busy, threshold_pct=5)
    assert {r["status"] for r in cmp.rows} == {"inconclusive"} and not cmp.regressions
    assert "new row invalid: foreign CPU load" in cmp.rows[0]["note"]
    res = CliRunner().invoke(cli, ["compare", str(base), str(busy)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["compare", str(base), str(busy), "--fail-on-inconclusive"])
    assert res.exit_code == 1 and "inconclusive" in res.output


def test_tests_on_known_distributions() -> None:
    a, b = _lat(0), _lat(1)
    assert mann_whitney(a, b) > 0.01 and mann_whitney(a, _lat(2, scale=1.1)) < 1e-10
    point, lo, hi = ratio_ci(a, _lat(3, scale=2.0))
    assert 1.9 < lo <= point <= hi < 2.1
