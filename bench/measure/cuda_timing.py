"""Timing a query on a GPU, in one of two timing modes that every GPU row names (``timing_mode``):

* ``end_to_end``: host to device to host. Each query copies its batch in (``stage``), computes
  (``run``), copies the result back (``to_host``) and synchronises; the host clock around the
  whole query is its latency, and throughput counts these queries.
* ``gpu_compute``: the device's work alone, as trtexec 11 times by default: the batch is staged
  once, before the window; each query is ``run`` on the staged input and synchronised, with no
  host<->device copies, and the engines that can replay a CUDA graph do (their ``cuda_graphs``
  option defaults to true in this mode: :func:`cnnbench.engines.timing_options`).

In both modes a second, device-only figure per query comes from CUDA events recorded around
``run`` on the engine's stream, or, for an engine whose stream we cannot see, from the host
clock around ``run`` + ``synchronize``. Throughput is batch x queries / wall time of the
measured window, in the row's mode.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from cnnbench.bench.measure.timing import Guard, StopRule, Timing, Window, loop, warmup
from cnnbench.errors import InvalidInputError
from cnnbench.naming import lookup

END_TO_END = "end_to_end"
GPU_COMPUTE = "gpu_compute"
#: the timing modes of a GPU cell, the default first
TIMING_MODES = (END_TO_END, GPU_COMPUTE)
#: what each mode's latency and throughput include, for the row and the docs
TIMING_ABOUT = {
    END_TO_END: "end_to_end: host clock over host->device copy, compute, device->host copy",
    GPU_COMPUTE: "gpu_compute: host clock over compute only (input on the device, no copies; "
    "a CUDA graph where the engine has one)",
}


def parse_timing(text: str) -> str:
    """A timing mode from its name (``end_to_end``, ``gpu_compute``; ``-`` for ``_``)."""
    word = str(text).strip().lower().replace("-", "_")
    return str(lookup("timing mode", word, {m: m for m in TIMING_MODES}))


def check_timing(timing: str, device: str, scenarios: tuple[str, ...] = ()) -> None:
    """One line when ``timing`` cannot apply to ``device`` or to one of ``scenarios``."""
    if timing != GPU_COMPUTE:
        return
    if not device.startswith("cuda"):
        raise InvalidInputError(
            "--timing gpu_compute needs --device cuda: on the CPU no copies are left out"
        )
    if "server" in scenarios:
        raise InvalidInputError(
            "the server scenario times queries from arrival to result (end to end); "
            "--timing gpu_compute is for the fixed-load scenarios"
        )


def _events(engine: Any) -> tuple[Any, Any]:
    """torch (or None) and the engine's stream, when CUDA events can be recorded on it."""
    try:
        import torch
    except ImportError:
        return None, None
    if not torch.cuda.is_available():
        return torch, None
    return torch, engine.stream


def measure_cuda(
    engine: Any,
    batch: np.ndarray,
    rule: StopRule,
    window: Window | None = None,
    mode: str = END_TO_END,
    guard: Guard | None = None,
) -> Timing:
    """Host time per query in ``mode``, and the device-only time of its ``run`` (``guard``:
    see :func:`bench.measure.timing.measure`)."""
    torch, stream = _events(engine)
    stage, run, to_host, sync = engine.stage, engine.run, engine.to_host, engine.synchronize
    staged: Any = None
    if mode == GPU_COMPUTE:
        staged = stage(batch)  # once, before the window: no copies inside it
        sync()

    def query(x: np.ndarray) -> None:
        out = run(staged if mode == GPU_COMPUTE else stage(x))
        if mode != GPU_COMPUTE:
            to_host(out)
        sync()

    warm_n, warm_ns = warmup(query, batch, rule)
    clock = time.perf_counter_ns
    device: list[float] = []
    if stream is not None:
        ev0 = torch.cuda.Event(enable_timing=True)
        ev1 = torch.cuda.Event(enable_timing=True)

        def body() -> int:
            t0 = clock()
            x = staged if mode == GPU_COMPUTE else stage(batch)
            ev0.record(stream)
            out = run(x)
            ev1.record(stream)
            if mode != GPU_COMPUTE:
                to_host(out)
            sync()
            ev1.synchronize()
            t1 = clock()
            device.append(ev0.elapsed_time(ev1) * 1e6)  # ms -> ns
            return t1 - t0
    else:

        def body() -> int:
            t0 = clock()
            x = staged if mode == GPU_COMPUTE else stage(batch)
            sync()
            t_run = clock()
            out = run(x)
            sync()
            device.append(clock() - t_run)
            if mode != GPU_COMPUTE:
                to_host(out)
                sync()
            return clock() - t0

    if window is not None:
        window.start()
    samples, wall, reason = loop(body, rule, guard)
    if window is not None:
        window.stop()
    return Timing(
        np.asarray(samples, dtype=np.int64), wall, warm_n, warm_ns, reason,
        device_samples_ns=np.asarray(device, dtype=np.float64),
    )  # fmt: skip


def device_timing_method(engine: Any) -> str:
    """How :func:`measure_cuda` times device-only work for this engine (for the row)."""
    torch, stream = _events(engine)
    if stream is not None:
        return "CUDA events around run() on the engine's stream"
    return "host perf_counter_ns around run()+synchronize()"
