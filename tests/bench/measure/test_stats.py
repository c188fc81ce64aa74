from __future__ import annotations

import math

import numpy as np
import pytest

from cnnbench.bench.measure.stats import (
    CI_METHOD,
    PERCENTILE_METHOD,
    ci_half_width_pct_of,
    median_ci,
    median_ci_ranks,
    summarize,
)


@pytest.mark.parametrize(
    ("n", "ranks"),
    # Published 95 % order-statistic intervals (1-based): n=6 (1,6), n=10 (2,9), n=20 (6,15),
    # n=100 (40,61); converted to 0-based.
    [(6, (0, 5)), (10, (1, 8)), (20, (5, 14)), (100, (39, 60))],
)
def test_median_ci_ranks_match_tables(n: int, ranks: tuple[int, int]) -> None:
    assert median_ci_ranks(n) == ranks


def test_median_ci_undefined_for_tiny_samples() -> None:
    assert median_ci_ranks(5) is None
    lo, hi = median_ci(np.arange(5.0))
    assert math.isnan(lo) and math.isnan(hi)
    assert summarize([1_000_000] * 5).ci_half_width_pct == math.inf


def test_large_n_uses_normal_approximation_continuously() -> None:
    exact = median_ci_ranks(1000)
    approx = median_ci_ranks(1001)
    assert exact is not None and approx is not None
    assert abs(exact[0] - approx[0]) <= 1 and abs(exact[1] - approx[1]) <= 2


def test_ci_coverage_is_near_nominal() -> None:
    rng = np.random.default_rng(1)
    n, trials = 40, 3000
    lo, hi = median_ci_ranks(n)  # type: ignore[misc]
    hits = 0
    for _ in range(trials):
        x = np.sort(rng.exponential(size=n))
        hits += x[lo] <= math.log(2) <= x[hi]
    assert 0.93 <= hits / trials <= 0.99


def test_summarize_in_ms_with_numpy_linear_percentiles() -> None:
    ns = np.arange(1, 101) * 1_000_000  # 1 .. 100 ms
    s = summarize(ns[::-1])  # order must not matter
    assert s.count == 100
    assert s.p50 == pytest.approx(50.5)
    assert s.p90 == pytest.approx(np.percentile(np.arange(1, 101), 90, method="linear"))
    assert s.p99 == pytest.approx(99.01)
    assert s.mean == pytest.approx(50.5)
    assert s.stdev == pytest.approx(np.std(np.arange(1, 101), ddof=1))
    assert (s.median_ci_low, s.median_ci_high) == (40.0, 61.0)
    d = s.to_dict()
    assert d["samples"] == 100 and d["latency_ms_p95"] == pytest.approx(95.05)
    assert "Hyndman-Fan type 7" in PERCENTILE_METHOD and "order-statistic" in CI_METHOD


def test_summarize_rejects_empty() -> None:
    with pytest.raises(ValueError, match="no latency samples"):
        summarize([])


def test_half_width_shrinks_with_more_samples() -> None:
    rng = np.random.default_rng(0)
    small = ci_half_width_pct_of(rng.normal(100, 10, 20))
    large = ci_half_width_pct_of(rng.normal(100, 10, 2000))
    assert large < small / 4
