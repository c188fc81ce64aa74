"""TensorRT's per-layer times: an ``IProfiler`` on an execution context of its own.

TensorRT calls ``report_layer_time(layer_name, ms)`` once per layer per execution of a context
whose ``profiler`` is set (NVIDIA's Developer Guide, "Profiling"; profiling synchronises
between layers, so it is never done on the timed context, and CUDA graphs are not used).
"""

from __future__ import annotations

from typing import Any

from cnnbench.engines.executed import ExecutedLayer
from cnnbench.engines.layer_times import LayerTimes, trt_layer_times
from cnnbench.errors import ArtifactError

#: executions of the profiled context before the profiled queries
WARMUP = 3


def recorder(trt: Any) -> Any:
    """An ``IProfiler`` that keeps every ``(layer_name, ms)`` TensorRT reports, in order."""

    class Recorder(trt.IProfiler):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.calls: list[tuple[str, float]] = []

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.calls.append((str(layer_name), float(ms)))

    return Recorder()


def profile_context(
    trt: Any,
    engine: Any,
    io: dict[str, int],
    input_name: str,
    shape: tuple[int, ...],
    stream: Any,
    queries: int,
    inspector: list[ExecutedLayer],
) -> LayerTimes:
    """Run ``queries`` executions (after ``WARMUP``) on a new context of ``engine`` with the
    tensor addresses ``io`` and input ``shape``, on ``stream`` (a torch CUDA stream), and
    return each layer's time per execution joined with the ``inspector``'s layers."""
    ctx = engine.create_execution_context()
    if ctx is None:
        raise ArtifactError("TensorRT could not create a context to profile (out of memory?)")
    for name, ptr in io.items():
        if not ctx.set_tensor_address(name, ptr):
            raise ArtifactError(f"TensorRT refused the address of I/O tensor {name!r}")
    if not ctx.set_input_shape(input_name, shape):
        raise ArtifactError(f"batch {shape[0]} is outside the engine's profile")
    rec = recorder(trt)
    ctx.profiler = rec
    runs: list[list[tuple[str, float]]] = []
    for i in range(WARMUP + queries):
        start = len(rec.calls)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise ArtifactError("TensorRT execute_async_v3 failed while profiling")
        stream.synchronize()
        if i >= WARMUP:
            runs.append(rec.calls[start:])
    return trt_layer_times(runs, inspector)
