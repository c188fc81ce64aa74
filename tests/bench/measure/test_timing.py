from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from cnnbench.bench.measure.timing import StopRule, measure


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"min_count": 0}, "min_count"),
        ({"warmup_count": -1}, "warmup_count"),
        ({"min_time": -1.0}, "min_time"),
        ({"max_time": 0}, "max_time"),
        ({"min_time": 5.0, "max_time": 1.0}, "min_time"),
        ({"ci_target": 0}, "ci_target"),
        ({"min_count": 2.5}, "min_count"),
    ],
)
def test_stop_rule_validation_names_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        StopRule(**kw)


class Counter:
    def __init__(self, sleep_s: float = 0.0) -> None:
        self.calls = 0
        self.sleep_s = sleep_s

    def __call__(self, _x: object) -> None:
        self.calls += 1
        if self.sleep_s:
            time.sleep(self.sleep_s)


def test_warmup_and_min_count_and_min_time_are_all_met() -> None:
    c = Counter()
    rule = StopRule(
        warmup_count=7, warmup_time=0.0, min_count=50, min_time=0.05, max_time=5, ci_target=None
    )
    t = measure(c, None, rule)
    assert t.warmup_count == 7
    assert t.count >= 50
    assert t.wall_ns >= 0.05e9
    assert c.calls == t.count + 7
    assert t.stop_reason == "min-count+min-time"
    assert (t.samples_ns > 0).all()


def test_min_count_dominates_when_calls_are_slow() -> None:
    c = Counter(0.002)
    t = measure(c, None, StopRule(warmup_count=0, warmup_time=0, min_count=15, min_time=0.0))
    assert t.count == 15
    assert t.samples_ns.min() >= 2_000_000  # each sample covers the sleep


def test_max_time_caps_the_run() -> None:
    c = Counter(0.01)
    rule = StopRule(warmup_count=0, warmup_time=0, min_count=10_000, min_time=0.0, max_time=0.1)
    t0 = time.perf_counter()
    t = measure(c, None, rule)
    assert time.perf_counter() - t0 < 1.0
    assert t.stop_reason == "max-time"
    assert 1 <= t.count < 100


def test_ci_target_stops_once_the_median_is_tight() -> None:
    c = Counter()
    rule = StopRule(
        warmup_count=0, warmup_time=0, min_count=20, min_time=0, max_time=5, ci_target=50
    )
    t = measure(c, None, rule)
    assert t.stop_reason == "ci-target"
    assert t.count >= 20


def test_warmup_time_is_honoured() -> None:
    c = Counter()
    t = measure(c, None, StopRule(warmup_count=1, warmup_time=0.05, min_count=1, min_time=0))
    assert t.warmup_ns >= 0.05e9
    assert t.warmup_count > 1


class FakeDeviceEngine:
    """Stage/run/to_host take known times, so the split of end-to-end time can be checked."""

    name = "fake"
    device = "cuda"

    def __init__(self) -> None:
        self.synced = 0
        self.calls = {"stage": 0, "run": 0, "to_host": 0}

    @staticmethod
    def _spin(s: float) -> None:
        end = time.perf_counter() + s
        while time.perf_counter() < end:
            pass

    def stage(self, x: object) -> object:
        self.calls["stage"] += 1
        self._spin(0.001)
        return x

    def run(self, x: object) -> object:
        self.calls["run"] += 1
        self._spin(0.002)
        return x

    def to_host(self, x: object) -> object:
        self.calls["to_host"] += 1
        self._spin(0.001)
        return x

    def synchronize(self) -> None:
        self.synced += 1


def test_device_path_reports_compute_apart_from_copies() -> None:
    import numpy as np

    from cnnbench.bench.measure.scenarios import run_fixed

    eng = FakeDeviceEngine()
    rule = StopRule(warmup_count=2, warmup_time=0, min_count=20, min_time=0)
    f = run_fixed(eng, np.zeros((1, 1), dtype=np.float32), "single-stream", rule)
    assert eng.synced > 20
    # end-to-end includes both 1 ms copies; device-only is the 2 ms run
    assert f["latency_ms_p50"] >= 4.0
    assert 2.0 <= f["device_latency_ms_p50"] < f["latency_ms_p50"] - 1.5
    assert f["timing_mode"] == "end_to_end" and f["latency_kind"].startswith("end_to_end")
    assert f["device_timing_method"].startswith("host perf_counter_ns")


def test_a_long_first_call_does_not_cut_the_warmup_count() -> None:
    # issue 26: torch.compile's first call can outlast max_time; the warm-up then stopped after
    # it, and the calls that record CUDA graphs (reduce-overhead) fell into the measured window
    calls: list[float] = []

    def call(_: object) -> None:
        calls.append(time.perf_counter())
        if len(calls) == 1:
            time.sleep(0.06)  # "compiling"

    rule = StopRule(warmup_count=3, warmup_time=0.0, min_count=1, min_time=0.0, max_time=0.05)
    t = measure(call, None, rule)
    assert t.warmup_count == 3
    assert len(calls) == 3 + t.count


def test_gpu_compute_times_the_device_work_alone_and_says_so() -> None:
    # issue 26: every GPU row names its timing mode; gpu_compute (trtexec 11's default) stages
    # the input once, before the window, and copies nothing back
    import numpy as np

    from cnnbench.bench.measure.scenarios import run_fixed

    eng = FakeDeviceEngine()
    rule = StopRule(warmup_count=2, warmup_time=0, min_count=30, min_time=0, ci_target=None)
    f = run_fixed(eng, np.zeros((4, 1), dtype=np.float32), "offline", rule, mode="gpu_compute")
    assert eng.calls["stage"] == 1 and eng.calls["to_host"] == 0
    assert eng.calls["run"] == 2 + f["samples"]
    assert f["timing_mode"] == "gpu_compute" and f["latency_kind"].startswith("gpu_compute")
    assert 2.0 <= f["latency_ms_p50"] < 3.0  # the 2 ms run, no 1 ms copies
    assert f["throughput_ips"] == pytest.approx(4 * f["samples"] / f["wall_s"], rel=1e-3)
    e2e = run_fixed(FakeDeviceEngine(), np.zeros((4, 1), dtype=np.float32), "offline", rule)
    assert e2e["timing_mode"] == "end_to_end" and e2e["latency_ms_p50"] >= 4.0


def _alternating() -> Callable[[], int]:
    """Samples of 1 us and 6 us in turn: the median sits in the gap between the two, so its CI
    stays as wide as the gap, whatever the count (what a shared core does to a cell). Given to
    ``loop`` as the samples themselves: a real 1 us call on a busy machine is stretched past
    the gap now and then, which tips the balance, pulls the median into one mode and lets the
    CI meet its target (CI saw that), so the stop rule is checked on exact samples."""
    n = [0]

    def body() -> int:
        n[0] += 1
        return 1000 if n[0] % 2 else 6000

    return body


def test_a_ci_that_stopped_narrowing_ends_the_run_before_max_time() -> None:
    from cnnbench.bench.measure.timing import loop, plateaued

    assert not plateaued([4.0, 3.0, 2.2, 1.6, 1.15])  # narrowing as 1/sqrt(n): keep going
    assert plateaued([4.0, 3.0, 2.9, 2.8, 2.85])  # stuck: stop
    rule = StopRule(warmup_count=0, warmup_time=0, min_count=200, min_time=0, max_time=20.0,
                    ci_target=2.0)  # fmt: skip
    samples, _, why = loop(_alternating(), rule)
    assert why == "ci-plateau" and len(samples) < 1000
    late = StopRule(**{**rule.__dict__, "early": False, "max_time": 0.3})
    assert loop(_alternating(), late)[2] == "max-time"  # the old rule


def test_the_timed_loop_stops_on_the_ci_rule_before_max_time() -> None:
    """measure() runs its own inline loop: it must ask the same stop rule at its checkpoints."""
    rule = StopRule(warmup_count=1, warmup_time=0, min_count=200, min_time=0.2, max_time=20.0,
                    ci_target=50.0)  # fmt: skip
    t0 = time.perf_counter()
    t = measure(lambda _: time.sleep(0.0002), None, rule)
    assert t.stop_reason in ("ci-target", "ci-plateau") and time.perf_counter() - t0 < 10


def test_a_window_that_cannot_be_valid_stops_after_min_time() -> None:
    """... but not before the guard has a second of ticks to judge by."""
    asked: list[float] = []

    def guard() -> str | None:
        asked.append(time.perf_counter())
        return "foreign-load"

    rule = StopRule(warmup_count=1, warmup_time=0, min_count=10**9, min_time=0.3, max_time=10.0)
    t0 = time.perf_counter()
    t = measure(lambda _: None, None, rule, guard=guard)
    assert t.stop_reason == "foreign-load"
    assert asked and asked[0] - t0 >= 1.0 and time.perf_counter() - t0 < 3.0
    longer = StopRule(**{**rule.__dict__, "min_time": 1.5})
    t0 = time.perf_counter()
    asked.clear()
    assert measure(lambda _: None, None, longer, guard=guard).stop_reason == "foreign-load"
    assert asked[0] - t0 >= 1.5
