from __future__ import annotations

import time

import numpy as np
import pytest

from cnnbench.bench.measure.loadgen import (
    ServerConfig,
    find_peak,
    poisson_arrivals,
    run_server,
    warm_sizes,
)
from cnnbench.bench.measure.timing import StopRule


def test_poisson_schedule_is_seeded_and_has_the_rate() -> None:
    a = poisson_arrivals(1000.0, 20_000, seed=3)
    assert np.array_equal(a, poisson_arrivals(1000.0, 20_000, seed=3))
    assert not np.array_equal(a, poisson_arrivals(1000.0, 20_000, seed=4))
    gaps = np.diff(a) / 1e9
    assert np.all(gaps >= 0)
    assert gaps.mean() == pytest.approx(1e-3, rel=0.03)
    # exponential gaps: stdev == mean
    assert gaps.std() == pytest.approx(gaps.mean(), rel=0.05)


@pytest.mark.parametrize(
    "kw",
    [
        {"max_batch": 0, "target_qps": 1},
        {"max_batch": 1, "target_qps": -5},
        {"max_batch": 1},
        {"max_batch": 1, "find_peak": True},
        {"max_batch": 1, "target_qps": 1, "max_queue_delay_ms": -1},
    ],
)
def test_config_validation(kw: dict) -> None:
    with pytest.raises(ValueError):
        ServerConfig(**kw)


class Sleeper:
    """A fake engine: a fixed service time per batch, recording batch sizes."""

    def __init__(self, service_s: float) -> None:
        self.service_s = service_s
        self.sizes: list[int] = []

    def __call__(self, x: np.ndarray) -> None:
        self.sizes.append(len(x))
        end = time.perf_counter() + self.service_s
        while time.perf_counter() < end:
            pass


def test_dynamic_batcher_batches_and_counts_queueing() -> None:
    eng = Sleeper(0.004)
    x = np.zeros((8, 1), dtype=np.float32)
    cfg = ServerConfig(max_batch=8, target_qps=1000.0, max_queue_delay_ms=2.0)
    rule = StopRule(min_count=300, min_time=0.2, max_time=5)
    f = run_server(eng, x, cfg, 1000.0, rule)
    assert f["queries"] >= 300 and sum(eng.sizes) == f["queries"]
    assert max(eng.sizes) <= 8
    # 1000 q/s against a 4 ms service time: one query per batch cannot keep up
    assert f["mean_batch"] > 2
    # every query waits for at least the service time of its batch
    assert f["latency_ms_min"] >= 4.0
    assert f["latency_ms_p99"] >= f["latency_ms_p50"]
    assert f["stop_reason"] == "min-count+min-time"


def test_zero_delay_low_rate_runs_batches_of_one() -> None:
    eng = Sleeper(0.0)
    x = np.zeros((4, 1), dtype=np.float32)
    cfg = ServerConfig(max_batch=4, target_qps=200.0, max_queue_delay_ms=0.0)
    f = run_server(eng, x, cfg, 200.0, StopRule(min_count=40, min_time=0.0, max_time=5))
    assert f["queries"] == 40
    assert np.mean(eng.sizes) < 2.0


def test_overload_is_detected_and_bounded_in_time() -> None:
    eng = Sleeper(0.01)  # capacity 100 q/s at batch 1
    x = np.zeros((1, 1), dtype=np.float32)
    cfg = ServerConfig(max_batch=1, target_qps=5000.0)
    t0 = time.perf_counter()
    f = run_server(
        eng, x, cfg, 5000.0, StopRule(min_count=10, min_time=1.0, max_time=2.0), abort_wait_ms=100
    )
    assert time.perf_counter() - t0 < 2.0
    assert f["stop_reason"] == "overloaded" and f["unserved_queries"] > 1000


def test_find_peak_brackets_the_capacity() -> None:
    eng = Sleeper(0.002)  # ~500 q/s at batch 1, ~2000 at batch 4
    x = np.zeros((4, 1), dtype=np.float32)
    cfg = ServerConfig(
        max_batch=4, latency_bound_ms=20.0, find_peak=True, peak_time=4.0, max_queue_delay_ms=1.0
    )
    t0 = time.perf_counter()
    f = find_peak(eng, x, cfg, StopRule(min_count=50, min_time=0.15, max_time=2))
    assert time.perf_counter() - t0 < 8.0
    assert f["server_peak_qps"] is not None
    assert 50 < f["server_peak_qps"] <= 1.2 * 4 / 0.002
    assert f["latency_ms_p99"] <= 20.0
    assert len(f["peak_search"]["trials_qps_p99_ms"]) >= 2


def test_warm_sizes() -> None:
    assert warm_sizes(4) == [1, 2, 3, 4]
    assert warm_sizes(64) == [1, 2, 4, 8, 16, 32, 64]
    assert warm_sizes(48)[-1] == 48
