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
    #: stop as soon as the answer is known (:func:`early_stop`): the CI stopped narrowing, or
    #: the window can no longer be valid (foreign CPU load over the bound)
    early: bool = True

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
        if not isinstance(self.early, bool):
            raise ValueError(f"early must be true or false, got {self.early!r}")
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


#: how often (seconds) the guard of a window (foreign CPU load) is asked after ``min_time``
GUARD_EVERY_S = 0.5
#: the guard judges no window shorter than this: /proc/stat counts in 10 ms ticks, so over
#: 50 ms one tick is 0.2 cores of 'foreign load', close to the 0.25-core bound
GUARD_MIN_WINDOW_S = 1.0
#: the CI "stopped narrowing" when, over the last ``PLATEAU_CHECKS`` checks (the samples grew
#: about 1.95x, which narrows an i.i.d. median's CI by about 28%), it narrowed by less than this
PLATEAU_NARROWING = 0.10
PLATEAU_CHECKS = 3


class Guard(Protocol):
    """Asked during a measurement (after ``min_time``) whether the window can still be valid:
    a stop reason (``foreign-load``) when it cannot, else None."""

    def __call__(self) -> str | None: ...


def plateaued(widths: list[float]) -> bool:
    """Whether the CI half-widths checked so far stopped narrowing (see ``PLATEAU_NARROWING``)."""
    if len(widths) <= PLATEAU_CHECKS:
        return False
    return widths[-1] > (1 - PLATEAU_NARROWING) * widths[-1 - PLATEAU_CHECKS]


class _Stopper:
    """The stop rule's checks after ``min_time`` and ``min_count``: the CI target, and with
    ``rule.early`` a CI that stopped narrowing or a guard that says the window cannot be valid."""

    def __init__(self, rule: StopRule, guard: Guard | None, start: int) -> None:
        self.rule, self.guard = rule, guard if rule.early else None
        self.next_ci = rule.min_count
        self.widths: list[float] = []
        self.every = int(GUARD_EVERY_S * 1e9)
        #: when to call check next: at the next CI checkpoint or the next guard time
        first = max(rule.min_time, GUARD_MIN_WINDOW_S)
        self.next_guard = start + int(first * 1e9) if self.guard else 2**62

    def check(self, samples: list[int], now: int) -> str | None:
        if self.guard is not None and now >= self.next_guard:
            self.next_guard = now + self.every
            why = self.guard()
            if why:
                return why
        if len(samples) < self.rule.min_count:
            return None
        if self.rule.ci_target is None:
            return "min-count+min-time"
        if len(samples) < self.next_ci:
            return None
        width = ci_half_width_pct_of(samples)
        if width <= self.rule.ci_target:
            return "ci-target"
        self.widths.append(width)
        self.next_ci = int(len(samples) * 1.25) + 1
        return "ci-plateau" if self.rule.early and plateaued(self.widths) else None


def loop(
    body: Callable[[], int], rule: StopRule, guard: Guard | None = None
) -> tuple[list[int], int, str]:
    """Run ``body`` (which returns one sample in ns) until the rule stops it."""
    clock = time.perf_counter_ns
    samples: list[int] = []
    append = samples.append
    min_ns, max_ns = int(rule.min_time * 1e9), int(rule.max_time * 1e9)
    every = int(PROGRESS_EVERY_S * 1e9)
    start = clock()
    stopper = _Stopper(rule, guard, start)
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
        if elapsed >= min_ns and (why := stopper.check(samples, now)):
            return samples, clock() - start, why


class Window(Protocol):
    """Told when the measured window (after warm-up) opens and closes, e.g. an energy meter."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def measure(
    call: Callable[[Any], Any],
    arg: Any,
    rule: StopRule,
    window: Window | None = None,
    guard: Guard | None = None,
) -> Timing:
    """Time ``call(arg)`` on the host clock; ``call`` must return only when its work is done.

    The samples are the individual call times; ``wall_ns`` spans the whole measured window
    (first call start to last check), so throughput = batch x count / wall. ``window`` is
    started just before the window opens and stopped just after it closes. ``guard`` is asked
    every ``GUARD_EVERY_S`` after ``min_time`` whether the window can still be valid.
    """
    warm_n, warm_ns = warmup(call, arg, rule)
    if window is not None:
        window.start()
    clock = time.perf_counter_ns
    # Inline loop (not loop): two clock reads, an append and, until min_time has passed, one
    # comparison per call (min_time <= max_time, so max_time needs no check before that).
    samples: list[int] = []
    append = samples.append
    every = int(PROGRESS_EVERY_S * 1e9)
    start = clock()
    min_end, max_end = start + int(rule.min_time * 1e9), start + int(rule.max_time * 1e9)
    stopper = _Stopper(rule, guard, start)
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
        # one comparison per call: the checks themselves run at their checkpoints only
        if len(samples) >= stopper.next_ci or t1 >= stopper.next_guard:
            why = stopper.check(samples, t1)
            if why:
                reason = why
                break
    wall = clock() - start
    if window is not None:
        window.stop()
    return Timing(np.asarray(samples, dtype=np.int64), wall, warm_n, warm_ns, reason)
