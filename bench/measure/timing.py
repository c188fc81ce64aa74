"""The measuring loop: warm-up, then timed calls until the stop rule says enough.

On the CPU each sample is ``perf_counter_ns`` around one synchronised call; on a CUDA device
:mod:`bench.measure.cuda_timing` times each query in the cell's timing mode. The loop body does nothing else: stop checks are integer
comparisons, and the median CI (for ``ci_target``) is recomputed only at geometric intervals.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from cnnbench.bench.measure.stats import ci_half_width_pct_of
from cnnbench.progress import note

#: seconds between two progress lines during a measurement
PROGRESS_EVERY_S = 2.0


def _progress(samples: list[int], elapsed_ns: int) -> None:
    n = len(samples)
    # The CI costs a sort; past 100k samples (microsecond calls) the count alone is shown.
    ci = f", median CI ±{ci_half_width_pct_of(samples):.1f}%" if 1 < n <= 100_000 else ""
    note(f"  measuring: {n} samples in {elapsed_ns / 1e9:.0f}s{ci}")


@dataclass(frozen=True)
class StopRule:
    """When to stop warming up and measuring.

    Warm-up runs until ``warmup_count`` calls AND ``warmup_time`` seconds are both done (capped
    at ``max_time``). Measurement stops once ``min_count`` samples AND ``min_time`` seconds are
    both reached and, if ``ci_target`` (percent) is set, the median's 95 % CI half-width is at
    most ``ci_target`` % of the median; in any case it stops after ``max_time`` seconds (with at
    least one sample). The row is valid only if the target was met (:mod:`bench.measure.validity`);
    ``ci_target=None`` measures without one.
    """

    warmup_count: int = 5
    warmup_time: float = 0.2
    min_count: int = 100  # p99 needs 100 samples (bench.measure.validity)
    min_time: float = 2.0
    max_time: float = 60.0
    ci_target: float | None = 2.0

    def __post_init__(self) -> None:
        for name in ("warmup_count", "min_count"):
            v = getattr(self, name)
            if (
                not isinstance(v, int)
                or isinstance(v, bool)
                or v < (1 if name == "min_count" else 0)
            ):
                low = 1 if name == "min_count" else 0
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        for name in ("warmup_time", "min_time", "max_time"):
            v = getattr(self, name)
            if (
                not isinstance(v, (int, float))
                or isinstance(v, bool)
                or not math.isfinite(v)
                or v < 0
            ):
                raise ValueError(f"{name} must be a number of seconds >= 0, got {v!r}")
        if self.max_time <= 0:
            raise ValueError(f"max_time must be > 0 seconds, got {self.max_time!r}")
        if self.min_time > self.max_time:
            raise ValueError(
                f"min_time ({self.min_time}) must not exceed max_time ({self.max_time})"
            )
        if self.ci_target is not None and not (
            isinstance(self.ci_target, (int, float)) and 0 < self.ci_target < 100
        ):
            raise ValueError(f"ci_target must be a percentage in (0, 100), got {self.ci_target!r}")

    def to_dict(self) -> dict[str, Any]:
        return {f"stop_{k}": getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Timing:
    """Raw result of one measured window."""

    samples_ns: np.ndarray
    wall_ns: int
    warmup_count: int
    warmup_ns: int
    stop_reason: str
    device_samples_ns: np.ndarray | None = None

    @property
    def count(self) -> int:
        return int(self.samples_ns.size)


def warmup(call: Callable[[Any], Any], arg: Any, rule: StopRule) -> tuple[int, int]:
    """Warm up: ``warmup_count`` calls always, and ``warmup_time`` seconds (capped at
    ``max_time``). The count is never cut by the cap: a first call that compiles (torch.compile)
    can outlast ``max_time`` alone, and the calls after it (CUDA graph recording) must still
    happen here, not in the measured window."""
    clock = time.perf_counter_ns
    want_ns = min(int(rule.warmup_time * 1e9), int(rule.max_time * 1e9))
    n = 0
    start = clock()
    while True:
        now = clock()
        if n >= rule.warmup_count and now - start >= want_ns:
            return n, now - start
        call(arg)
        n += 1


def loop(body: Callable[[], int], rule: StopRule) -> tuple[list[int], int, str]:
    """Run ``body`` (which returns one sample in ns) until the rule stops it."""
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    min_count, min_ns, max_ns = rule.min_count, int(rule.min_time * 1e9), int(rule.max_time * 1e9)
    target = rule.ci_target
    next_ci = min_count
    every = int(PROGRESS_EVERY_S * 1e9)
    start = clock()
    next_note = start + every
    while True:
        append(body())
        now = clock()
        if now >= next_note:
            next_note = now + every
            _progress(samples, now - start)
        elapsed = now - start
        if elapsed >= max_ns:
            return samples, elapsed, "max-time"
        if len(samples) >= min_count and elapsed >= min_ns:
            if target is None:
                return samples, elapsed, "min-count+min-time"
            if len(samples) >= next_ci:
                if ci_half_width_pct_of(samples) <= target:
                    return samples, clock() - start, "ci-target"
                next_ci = int(len(samples) * 1.25) + 1


class Window(Protocol):
    """Told when the measured window (after warm-up) opens and closes, e.g. an energy meter."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def measure(
    call: Callable[[Any], Any], arg: Any, rule: StopRule, window: Window | None = None
) -> Timing:
    """Time ``call(arg)`` on the host clock; ``call`` must return only when its work is done.

    The samples are the individual call times; ``wall_ns`` spans the whole measured window
    (first call start to last check), so throughput = batch x count / wall. ``window`` is
    started just before the window opens and stopped just after it closes.
    """
    warm_n, warm_ns = warmup(call, arg, rule)
    if window is not None:
        window.start()
    clock = time.perf_counter_ns
    # Inline loop (not loop): two clock reads, an append and, until min_time has passed, one
    # comparison per call (min_time <= max_time, so max_time needs no check before that).
    samples: list[int] = []
    append = samples.append
    min_count, target = rule.min_count, rule.ci_target
    next_ci = min_count
    every = int(PROGRESS_EVERY_S * 1e9)
    start = clock()
    min_end, max_end = start + int(rule.min_time * 1e9), start + int(rule.max_time * 1e9)
    next_note = start + every
    while True:
        t0 = clock()
        call(arg)
        t1 = clock()
        append(t1 - t0)
        if t1 >= next_note:  # a live line on stderr: samples so far and the CI half-width
            next_note = t1 + every
            _progress(samples, t1 - start)
        if t1 < min_end:
            continue
        if t1 >= max_end:
            reason = "max-time"
            break
        if len(samples) >= min_count:
            if target is None:
                reason = "min-count+min-time"
                break
            if len(samples) >= next_ci:
                if ci_half_width_pct_of(samples) <= target:
                    reason = "ci-target"
                    break
                next_ci = int(len(samples) * 1.25) + 1
    wall = clock() - start
    if window is not None:
        window.stop()
    return Timing(np.asarray(samples, dtype=np.int64), wall, warm_n, warm_ns, reason)
