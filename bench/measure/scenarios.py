"""Scenarios in MLPerf LoadGen's vocabulary, and the fixed-load ones' measurement.

* ``single-stream``: one sample per query, issued when the previous one finishes; headline p90.
* ``multi-stream``: queries of ``batch`` samples (8 by default, as LoadGen), back to back; p99.
* ``offline``: the engine fed whole batches back to back; headline throughput.
* ``server``: Poisson arrivals into a dynamic batcher (see :mod:`bench.measure.loadgen`); headline p99
  of query latency including queueing.

Throughput everywhere: images/s = batch x completed queries / wall time of the measured window
(server: completed samples / wall time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnbench.bench.measure.cuda_timing import (
    END_TO_END,
    TIMING_ABOUT,
    device_timing_method,
    measure_cuda,
)
from cnnbench.bench.measure.energy import EnergyMeter
from cnnbench.bench.measure.samples import SAMPLES_KEY
from cnnbench.bench.measure.stats import CI_LEVEL, CI_METHOD, PERCENTILE_METHOD, summarize
from cnnbench.bench.measure.timing import Guard, StopRule, Timing, measure
from cnnbench.bench.results.files import THROUGHPUT_DEFINITION
from cnnbench.errors import InvalidInputError
from cnnbench.naming import lookup


@dataclass(frozen=True)
class Scenario:
    name: str
    loadgen: str
    headline: str
    default_batch: int
    about: str


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("single-stream", "SingleStream", "latency_ms_p90", 1,
                 "batch 1, back to back; p90 latency"),
        Scenario("multi-stream", "MultiStream", "latency_ms_p99", 8,
                 "queries of N samples (8), back to back; p99 latency"),
        Scenario("offline", "Offline", "throughput_ips", 1,
                 "whole batches back to back; throughput"),
        Scenario("server", "Server", "latency_ms_p99", 8,
                 "Poisson arrivals into a dynamic batcher (batch = max batch); p99 latency"),
    )
}  # fmt: skip
_ALIASES = {
    "singlestream": "single-stream",
    "single_stream": "single-stream",
    "multistream": "multi-stream",
    "multi_stream": "multi-stream",
}


def canonical_scenario(name: str) -> str:
    """``single-stream`` etc. from any LoadGen-style spelling; UnknownNameError otherwise."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    return lookup("scenario", key, SCENARIOS).name


def check_batch(scenario: str, batch: int) -> None:
    """Reject batches a scenario cannot use, with a one-line InvalidInputError."""
    if scenario == "single-stream" and batch != 1:
        raise InvalidInputError(
            f"single-stream runs batch 1 (LoadGen SingleStream), got batch {batch}; "
            "use --scenario offline or multi-stream for larger batches"
        )


def method_fields() -> dict[str, Any]:
    """The named methods every row carries."""
    return {
        "percentile_method": PERCENTILE_METHOD,
        "ci_method": CI_METHOD,
        "ci_level": CI_LEVEL,
        "throughput_definition": THROUGHPUT_DEFINITION,
    }


def timing_fields(timing: Timing, batch: int) -> dict[str, Any]:
    """Row fields from a fixed-load measurement: latency stats per query and throughput."""
    stats = summarize(timing.samples_ns)
    wall_s = timing.wall_ns / 1e9
    fields: dict[str, Any] = stats.to_dict()
    fields[SAMPLES_KEY] = timing.samples_ns  # stored beside the results, not in the row
    fields.update(
        ci_half_width_pct=stats.ci_half_width_pct,
        queries=timing.count,
        samples=timing.count,
        wall_s=round(wall_s, 6),
        throughput_ips=batch * timing.count / wall_s if wall_s > 0 else None,
        stop_reason=timing.stop_reason,
        warmup_count=timing.warmup_count,
        warmup_s=round(timing.warmup_ns / 1e9, 6),
    )
    if timing.device_samples_ns is not None and timing.device_samples_ns.size:
        dev = summarize(timing.device_samples_ns)
        fields.update(
            device_latency_ms_p50=dev.p50,
            device_latency_ms_p90=dev.p90,
            device_latency_ms_p99=dev.p99,
            device_latency_ms_mean=dev.mean,
        )
    fields["latency_kind"] = "host clock around synchronised infer()"
    return fields


def run_fixed(
    engine: Any,
    batch_array: np.ndarray,
    scenario: str,
    rule: StopRule,
    energy: EnergyMeter | None = None,
    mode: str = END_TO_END,
    guard: Guard | None = None,
) -> dict[str, Any]:
    """Measure single-stream, multi-stream or offline; returns row fields (with the energy
    over the measured window, per image, when ``energy`` is given). On a GPU, in timing
    ``mode`` (:mod:`bench.measure.cuda_timing`), which the row names. ``guard`` (the CPU
    window's) stops a measurement that can no longer be valid, after ``min_time``."""
    batch = int(batch_array.shape[0])
    check_batch(scenario, batch)
    if str(engine.device).startswith("cuda"):
        timing = measure_cuda(engine, batch_array, rule, energy, mode, guard)
        fields = timing_fields(timing, batch)
        fields.update(
            timing_mode=mode,
            latency_kind=TIMING_ABOUT[mode],
            device_timing_method=device_timing_method(engine),
        )
    else:
        # CPU engines finish their work inside infer(); synchronize() is a no-op there.
        timing = measure(engine.infer, batch_array, rule, energy, guard)
        fields = timing_fields(timing, batch)
    if energy is not None:
        fields.update(energy.fields(batch * timing.count))
    head = SCENARIOS[scenario].headline
    fields.update(headline_metric=head, headline_value=fields.get(head))
    return fields
