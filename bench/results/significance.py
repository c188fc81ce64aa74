"""Is a difference between two runs' latency samples real? A bootstrap CI and a rank test.

* :func:`ratio_ci`: percentile-bootstrap confidence interval of ``stat(new) / stat(base)``
  (``stat`` a percentile or the mean), resampling each side independently. Seeded, so the same
  two files always give the same interval.
* :func:`mann_whitney`: two-sided Mann-Whitney U p-value (normal approximation with the tie
  correction): whether one side's latencies tend to be larger.

Very long sample arrays (microsecond calls give millions) are first thinned to an evenly spaced
subsample of at most ``cap`` values, which keeps both tests fast and, if anything, conservative.
"""

from __future__ import annotations

import math

import numpy as np

CI_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 400
CAP = 4000
METHOD = f"percentile bootstrap ({BOOTSTRAP_RESAMPLES} resamples), {CI_LEVEL:.0%} CI"


def _thin(x: np.ndarray, cap: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.size <= cap:
        return x
    # Evenly spaced in time order: a drift over the run stays in the subsample.
    return x[np.linspace(0, x.size - 1, cap).astype(np.int64)]


def _stat(x: np.ndarray, stat: str) -> np.ndarray:
    if stat == "mean":
        return x.mean(axis=-1)
    return np.percentile(x, float(stat), axis=-1)


def ratio_ci(
    base: np.ndarray, new: np.ndarray, stat: str = "50", *, seed: int = 0, cap: int = CAP
) -> tuple[float, float, float]:
    """(point, low, high): ``stat(new) / stat(base)`` and its bootstrap CI.

    ``stat`` is a percentile ("50", "99", ...) or "mean".
    """
    b, n = _thin(base, cap), _thin(new, cap)
    if b.size == 0 or n.size == 0:
        raise ValueError("both sides need samples")
    rng = np.random.default_rng(seed)
    sb = _stat(b[rng.integers(0, b.size, (BOOTSTRAP_RESAMPLES, b.size))], stat)
    sn = _stat(n[rng.integers(0, n.size, (BOOTSTRAP_RESAMPLES, n.size))], stat)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = sn / sb
    tail = (1 - CI_LEVEL) / 2 * 100
    lo, hi = np.percentile(ratios[np.isfinite(ratios)], [tail, 100 - tail])
    point = float(_stat(n, stat) / _stat(b, stat))
    return point, float(lo), float(hi)


def mann_whitney(base: np.ndarray, new: np.ndarray, *, cap: int = 20_000) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, tie-corrected)."""
    b, n = _thin(base, cap), _thin(new, cap)
    n1, n2 = b.size, n.size
    if n1 == 0 or n2 == 0:
        raise ValueError("both sides need samples")
    both = np.concatenate([b, n])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(both.size, dtype=np.float64)
    sorted_vals = both[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    mu = n1 * n2 / 2.0
    total = n1 + n2
    tie = float(np.sum(counts.astype(np.float64) ** 3 - counts)) / (total * (total - 1))
    sigma = math.sqrt(n1 * n2 / 12.0 * ((total + 1) - tie))
    if sigma == 0:
        return 1.0
    z = (abs(u1 - mu) - 0.5) / sigma  # continuity correction
    return float(min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2.0))))
