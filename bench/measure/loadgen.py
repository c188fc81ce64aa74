"""LoadGen's Server scenario: Poisson arrivals into a dynamic batcher, and a peak-QPS search.

Queries of one sample arrive at seeded exponential inter-arrival times (a Poisson process at
``target_qps``). The batcher takes the oldest waiting query, then waits until ``max_batch``
queries have arrived or ``max_queue_delay_ms`` has passed since that query's arrival, whichever
is first, and runs them as one batch (when the engine is busy past that point it takes every
waiting query, up to ``max_batch``). A query's latency is its completion time minus its
*scheduled* arrival, so time spent queued behind a busy engine counts, as in LoadGen.

The arrival schedule is precomputed, so one thread both "issues" and serves: no producer thread
competes for the GIL with the engine, and the run is reproducible for a seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cnnbench.bench.measure.samples import SAMPLES_KEY
from cnnbench.bench.measure.stats import summarize
from cnnbench.bench.measure.timing import StopRule


@dataclass(frozen=True)
class ServerConfig:
    """Server scenario settings; ``max_batch`` is the engine batch (``--batch``)."""

    max_batch: int
    target_qps: float | None = None
    max_queue_delay_ms: float = 2.0
    latency_bound_ms: float | None = None
    find_peak: bool = False
    peak_time: float = 60.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.target_qps is not None and not (
            self.target_qps > 0 and math.isfinite(self.target_qps)
        ):
            raise ValueError(f"target_qps must be > 0, got {self.target_qps}")
        if self.max_queue_delay_ms < 0:
            raise ValueError(f"max_queue_delay_ms must be >= 0, got {self.max_queue_delay_ms}")
        if self.latency_bound_ms is not None and self.latency_bound_ms <= 0:
            raise ValueError(f"latency_bound_ms must be > 0, got {self.latency_bound_ms}")
        if self.find_peak and self.latency_bound_ms is None:
            raise ValueError("latency_bound_ms is required with find_peak")
        if not self.find_peak and self.target_qps is None:
            raise ValueError("target_qps is required for the server scenario (or use find_peak)")
        if self.peak_time <= 0:
            raise ValueError(f"peak_time must be > 0 seconds, got {self.peak_time}")


class _Schedule:
    """Arrival times in ns from the run start, generated lazily from a seeded RNG."""

    def __init__(self, qps: float, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        self._scale_ns = 1e9 / qps
        self.times = np.empty(0, dtype=np.int64)

    def upto(self, n: int) -> np.ndarray:
        while self.times.size < n:
            gaps = self._rng.standard_exponential(max(1024, self.times.size)) * self._scale_ns
            last = float(self.times[-1]) if self.times.size else 0.0
            self.times = np.concatenate([self.times, (last + np.cumsum(gaps)).astype(np.int64)])
        return self.times


def poisson_arrivals(qps: float, n: int, seed: int) -> np.ndarray:
    """The first ``n`` arrival times (ns) of the seeded Poisson process at ``qps``."""
    return _Schedule(qps, seed).upto(n)[:n].copy()


def _wait_until(deadline_ns: int, start: int) -> None:
    clock = time.perf_counter_ns
    remaining = deadline_ns - (clock() - start)
    # Sleep only the bulk of long waits: a loaded machine wakes sleepers late.
    if remaining > 3_000_000:
        time.sleep((remaining - 2_000_000) / 1e9)
    while clock() - start < deadline_ns:
        pass


def run_server(
    infer: Callable[[np.ndarray], Any],
    inputs: np.ndarray,
    cfg: ServerConfig,
    qps: float,
    rule: StopRule,
    *,
    abort_wait_ms: float | None = None,
) -> dict[str, Any]:
    """One server run at ``qps``; ``infer`` must return when its work is done.

    Queries are issued while fewer than ``min_count`` were issued or the schedule is before
    ``min_time``, and never after ``max_time``; every issued query is served, unless the system
    is overloaded: the run then stops (``stop_reason`` "overloaded", the queries not served
    counted in ``unserved_queries``) once the oldest waiting query has waited ``abort_wait_ms``
    or the wall time reaches twice ``max_time``.
    """
    clock = time.perf_counter_ns
    sched = _Schedule(qps, cfg.seed)
    delay_ns = int(cfg.max_queue_delay_ms * 1e6)
    min_ns, max_ns = int(rule.min_time * 1e9), int(rule.max_time * 1e9)
    mb = cfg.max_batch
    lat: list[int] = []
    sizes: list[int] = []
    abort_ns = int(abort_wait_ms * 1e6) if abort_wait_ms is not None else None
    hard_ns = 2 * max_ns
    overloaded = False
    i = 0
    start = clock()
    while True:
        arr = sched.upto(i + mb + 1)
        if _stop_issuing(i, int(arr[i]), rule.min_count, min_ns, max_ns):
            break
        first = int(arr[i])
        now = clock() - start
        if i and (now >= hard_ns or (abort_ns is not None and now - first > abort_ns)):
            overloaded = True
            break
        if now < first:
            _wait_until(first, start)
        # The last query index this batch may contain: never past the stop point.
        last = i + 1
        while last < i + mb and not _stop_issuing(
            last, int(arr[last]), rule.min_count, min_ns, max_ns
        ):
            last += 1
        close = min(first + delay_ns, int(arr[last - 1]))
        now = clock() - start
        if now < close:
            _wait_until(close, start)
            now = clock() - start
        k = int(np.searchsorted(arr[i:last], now, side="right")) or 1
        infer(inputs[:k])
        done = clock() - start
        lat.extend(done - int(t) for t in arr[i : i + k])
        sizes.append(k)
        i += k
    wall = clock() - start
    return _server_fields(
        lat, sizes, i, wall, qps, cfg,
        stop_reason=_stop_reason(sched, i, overloaded, max_ns),
        unserved=_unserved(sched, i, rule.min_count, min_ns, max_ns) if overloaded else 0,
    )  # fmt: skip


def _stop_reason(sched: _Schedule, issued: int, overloaded: bool, max_ns: int) -> str:
    """Why the run stopped issuing queries: overloaded, the max time reached, or the min count
    and the min time both met."""
    if overloaded:
        return "overloaded"
    return "max-time" if int(sched.times[issued - 1]) >= max_ns else "min-count+min-time"


def _server_fields(
    lat: list[int],
    sizes: list[int],
    queries: int,
    wall: int,
    qps: float,
    cfg: ServerConfig,
    *,
    stop_reason: str,
    unserved: int,
) -> dict[str, Any]:
    """A server run's result fields: the query latencies' statistics (and the latencies
    themselves, stored beside the results), throughput, achieved QPS and the batch sizes run."""
    samples = np.asarray(lat, dtype=np.int64)
    stats = summarize(samples)
    fields: dict[str, Any] = stats.to_dict()
    fields[SAMPLES_KEY] = samples  # the query latencies, stored beside the results
    fields.update(
        ci_half_width_pct=stats.ci_half_width_pct,
        queries=queries,
        wall_s=round(wall / 1e9, 6),
        throughput_ips=queries / (wall / 1e9) if wall > 0 else None,
        target_qps=qps,
        achieved_qps=queries / (wall / 1e9) if wall > 0 else None,
        max_queue_delay_ms=cfg.max_queue_delay_ms,
        latency_bound_ms=cfg.latency_bound_ms,
        mean_batch=float(np.mean(sizes)) if sizes else None,
        stop_reason=stop_reason,
        unserved_queries=unserved,
        latency_kind="query latency: completion - scheduled arrival (queueing included)",
    )
    return fields


def _unserved(sched: _Schedule, i: int, min_count: int, min_ns: int, max_ns: int) -> int:
    """How many more queries the schedule would have issued after the first ``i``."""
    n = max(min_count, i + 1)
    while True:
        t = sched.upto(n)
        if t[-1] >= max_ns or (t.size >= min_count and t[-1] >= min_ns) or t.size > 50_000_000:
            break
        n = t.size * 2
    j_max = max(1, int(np.searchsorted(t, max_ns, side="left")))
    j_min = max(min_count, int(np.searchsorted(t, min_ns, side="left")))
    return max(0, min(j_max, j_min) - i)


def _stop_issuing(i: int, t: int, min_count: int, min_ns: int, max_ns: int) -> bool:
    if t >= max_ns and i > 0:
        return True
    return i >= min_count and t >= min_ns


def warm_sizes(max_batch: int) -> list[int]:
    """Batch sizes to warm before a server run (each shape's first call can be slow)."""
    if max_batch <= 16:
        return list(range(1, max_batch + 1))
    sizes = [1 << p for p in range(int(math.log2(max_batch)) + 1)]
    return sorted({*sizes, max_batch})


def find_peak(
    infer: Callable[[np.ndarray], Any],
    inputs: np.ndarray,
    cfg: ServerConfig,
    rule: StopRule,
) -> dict[str, Any]:
    """Highest QPS whose p99 meets ``cfg.latency_bound_ms``, by bisection within ``peak_time``.

    The upper bracket is 1.2 x the offline capacity at ``max_batch`` (measured briefly first).
    Returns the fields of the best passing run with ``server_peak_qps`` set, or of the lowest
    run tried with ``server_peak_qps`` None when even that missed the bound.
    """
    assert cfg.latency_bound_ms is not None
    clock = time.perf_counter_ns
    t0 = clock()
    reps = []
    for _ in range(3):
        a = clock()
        infer(inputs[: cfg.max_batch])
        reps.append(clock() - a)
    capacity = cfg.max_batch / (min(reps) / 1e9)
    lo, hi = 0.0, capacity * 1.2
    best: dict[str, Any] | None = None
    lowest: dict[str, Any] | None = None
    trials: list[tuple[float, float]] = []
    budget_ns = int(cfg.peak_time * 1e9)
    while True:
        left = (budget_ns - (clock() - t0)) / 1e9
        if trials and (left <= 0.05 or len(trials) >= 30 or hi - lo <= 0.02 * hi):
            break
        left = max(left, 0.05)
        qps = (lo + hi) / 2
        trial_rule = replace(
            rule, min_time=min(rule.min_time, left), max_time=min(rule.max_time, left)
        )
        fields = run_server(
            infer, inputs, cfg, qps, trial_rule, abort_wait_ms=10 * cfg.latency_bound_ms
        )
        p99 = math.inf if fields["stop_reason"] == "overloaded" else fields["latency_ms_p99"]
        trials.append((round(qps, 3), round(p99, 4)))
        if lowest is None or qps < lowest["target_qps"]:
            lowest = fields
        if p99 <= cfg.latency_bound_ms:
            lo, best = qps, fields
        else:
            hi = qps
    assert lowest is not None
    out = dict(best or lowest)
    out["server_peak_qps"] = best["target_qps"] if best else None
    out["peak_search"] = {
        "capacity_qps_estimate": round(capacity, 3),
        "trials_qps_p99_ms": trials,
        "seconds": round((clock() - t0) / 1e9, 3),
        "note": None if best else "no tried QPS met the latency bound",
    }
    return out
