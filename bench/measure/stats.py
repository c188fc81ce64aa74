"""Latency statistics from raw samples, with every method named.

Percentiles use numpy's ``linear`` method (Hyndman & Fan 1996, type 7: the sample quantile at
``(n - 1) * q`` with linear interpolation). The confidence interval of the median is the
distribution-free order-statistic interval: ranks ``j < k`` around ``n / 2`` chosen so that
``P(j <= B < k) >= level`` for ``B ~ Binomial(n, 1/2)``, exact for n <= 1000 and by the normal
approximation above. It assumes only independent samples, not normality.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

PERCENTILE_METHOD = "numpy linear (Hyndman-Fan type 7)"
CI_METHOD = "distribution-free order-statistic CI of the median (binomial)"
CI_LEVEL = 0.95
_EXACT_LIMIT = 1000


@dataclass(frozen=True)
class LatencyStats:
    """Summary of one set of latency samples, in milliseconds."""

    count: int
    mean: float
    stdev: float
    min: float
    max: float
    p50: float
    p90: float
    p95: float
    p99: float
    median_ci_low: float
    median_ci_high: float

    @property
    def ci_half_width_pct(self) -> float:
        """Half the CI width as a percentage of the median (inf when the CI is undefined)."""
        return half_width_pct(self.p50, self.median_ci_low, self.median_ci_high)

    def to_dict(self, prefix: str = "latency_ms_") -> dict[str, float | int]:
        """Flat row fields: ``latency_ms_p50`` ... and ``latency_ms_median_ci_low``."""
        return {("samples" if k == "count" else prefix + k): v for k, v in asdict(self).items()}


def half_width_pct(median: float, low: float, high: float) -> float:
    if not (math.isfinite(low) and math.isfinite(high)) or median <= 0:
        return math.inf
    return (high - low) / 2.0 / median * 100.0


def _binom_cdf_table(n: int) -> np.ndarray:
    """P(B <= i) for i = 0..n, B ~ Binomial(n, 1/2), computed in log space (no overflow)."""
    i = np.arange(n + 1)
    logc = np.array([math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) for k in i])
    pmf = np.exp(logc - n * math.log(2.0))
    return np.cumsum(pmf)


def median_ci_ranks(n: int, level: float = CI_LEVEL) -> tuple[int, int] | None:
    """0-based ranks ``(lo, hi)`` of the sorted samples bounding the median at ``level``.

    The interval ``[x(j), x(n + 1 - j)]`` (1-based) covers the median with probability
    ``1 - 2 P(B <= j - 1)``; ``j`` is the largest rank that keeps this ``>= level``. Returns
    None when ``n`` is too small for any interval to reach ``level`` (n < 6 at 95 %).
    """
    if n < 1 or 1.0 - 2.0 * 0.5**n < level:
        return None
    half_alpha = (1.0 - level) / 2.0
    if n <= _EXACT_LIMIT:
        j = int(np.searchsorted(_binom_cdf_table(n), half_alpha, side="right"))
    else:
        z = NormalDist().inv_cdf(1.0 - half_alpha)
        j = math.floor(n / 2.0 - z * math.sqrt(n) / 2.0)
    j = max(1, min(j, (n + 1) // 2))
    return j - 1, n - j


def median_ci(sorted_values: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """The order-statistic CI of the median of already sorted values; NaNs when undefined."""
    ranks = median_ci_ranks(len(sorted_values), level)
    if ranks is None:
        return math.nan, math.nan
    return float(sorted_values[ranks[0]]), float(sorted_values[ranks[1]])


def summarize(samples_ns: Sequence[int] | np.ndarray, level: float = CI_LEVEL) -> LatencyStats:
    """Summarise raw nanosecond samples as milliseconds.

    Raises:
        ValueError: when there are no samples.
    """
    arr = np.sort(np.asarray(samples_ns, dtype=np.float64)) / 1e6
    n = int(arr.size)
    if n == 0:
        raise ValueError("no latency samples to summarise")
    p50, p90, p95, p99 = np.percentile(arr, [50, 90, 95, 99], method="linear")
    lo, hi = median_ci(arr, level)
    return LatencyStats(
        count=n,
        mean=float(arr.mean()),
        stdev=float(arr.std(ddof=1)) if n > 1 else 0.0,
        min=float(arr[0]),
        max=float(arr[-1]),
        p50=float(p50),
        p90=float(p90),
        p95=float(p95),
        p99=float(p99),
        median_ci_low=lo,
        median_ci_high=hi,
    )


def ci_half_width_pct_of(samples_ns: Sequence[int] | np.ndarray, level: float = CI_LEVEL) -> float:
    """The median CI half-width in percent of the median, for the stop rule."""
    arr = np.sort(np.asarray(samples_ns, dtype=np.float64))
    if arr.size == 0:
        return math.inf
    lo, hi = median_ci(arr, level)
    return half_width_pct(float(np.median(arr)), lo, hi)
