"""How long each layer took, per profiled query, as each runtime's profiler reports it.

An engine profiles on a session of its own (the timed one is never profiled) and turns its
runtime's report into :class:`LayerTimes`: its layers (:class:`ExecutedLayer`, naming the ONNX
nodes each covers) and each layer's time in every profiled query. The parsers here take plain
data (the profiler's JSON, or the records an engine collected), so they are tested on recorded
fixtures without the runtime:

* ONNX Runtime: the profiler's JSON (``SessionOptions.enable_profiling``), one
  ``<node>_kernel_time`` event per node per run, ``dur`` in microseconds;
* OpenVINO: ``InferRequest.get_profiling_info()`` after each query (``PERF_COUNT``): per node
  its status, type, primitive and ``real_time``; nodes NOT_RUN were fused into another;
* TensorRT: ``IProfiler.report_layer_time(layer_name, ms)``, called once per layer per
  execution, joined with the engine inspector's layers by name; or trtexec's
  ``--exportProfile`` JSON (a count, then one object per layer with its average and median);
* torch: :mod:`cnnbench.engines.torch_profile`.

Layers the runtime added (reorders, reformats, casts, Q/DQ that did not fuse) are kept, with
their time: :func:`is_conversion` says which they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cnnbench.engines.executed import ExecutedLayer, ort_profile_layers, precision_word

#: layer kinds that move or convert data and compute nothing of the model's: layouts
#: (ONNX Runtime's NCHWc reorders, OpenVINO's Reorder, TensorRT's Reformat), types (Cast,
#: Convert) and quantization that stayed a layer of its own
CONVERSION_KINDS = frozenset(
    {"Reorder", "ReorderInput", "ReorderOutput", "Reformat", "Reformatting", "Convert", "Cast",
     "QuantizeLinear", "DequantizeLinear", "FakeQuantize", "Quantize", "Dequantize",
     "MemcpyToHost", "MemcpyFromHost", "Copy"}
)  # fmt: skip
#: ONNX ops that convert only (a layer made of nothing else is conversion overhead)
CONVERSION_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "Cast"})


@dataclass(frozen=True)
class LayerTimes:
    """Per-layer times of ``queries`` profiled queries at one batch size."""

    #: in execution order
    layers: list[ExecutedLayer]
    #: per layer (same order): its time in each profiled query, in ms
    times_ms: list[list[float]]
    #: where the times come from, in words
    source: str
    queries: int
    #: the profiled queries' own wall times in ms (host clock), where the engine took them
    wall_ms: list[float] = field(default_factory=list)


def is_conversion(kind: str, onnx_ops: Sequence[str] = (), added: bool = False) -> bool:
    """Whether a layer converts rather than computes: a conversion kind; an ONNX node's op
    that only converts; or a layout change the runtime inserted (``added``: it names no ONNX
    node), such as ONNX Runtime's NHWC Transposes."""
    if kind in CONVERSION_KINDS:
        return True
    if onnx_ops and all(op in CONVERSION_OPS for op in onnx_ops):
        return True
    return added and kind == "Transpose"


def _last(values: list[float], n: int) -> list[float]:
    return values[-n:] if n > 0 else values


# ---- ONNX Runtime ---------------------------------------------------------------------------
_KERNEL = "_kernel_time"


def ort_layer_times(events: Iterable[Mapping[str, Any]], queries: int) -> LayerTimes:
    """Layers and times from an ONNX Runtime profile of warm-up runs then ``queries`` runs:
    each node's kernel time in the last ``queries`` runs (``model_run`` events give the wall)."""
    events = list(events)
    per: dict[str, list[float]] = {}
    runs: list[float] = []
    for ev in events:
        name, cat = str(ev.get("name", "")), ev.get("cat")
        if cat == "Node" and name.endswith(_KERNEL):
            per.setdefault(name[: -len(_KERNEL)], []).append(float(ev.get("dur", 0)) / 1e3)
        elif cat == "Session" and name == "model_run":
            runs.append(float(ev.get("dur", 0)) / 1e3)
    layers = [_with_io(layer, events) for layer in ort_profile_layers(events)]
    return LayerTimes(
        layers=layers,
        times_ms=[_last(per.get(layer.name, []), queries) for layer in layers],
        source="onnxruntime profiler (kernel time per node)",
        queries=queries,
        wall_ms=_last(runs, queries),
    )


_ITEM_BYTES = {"float": 4, "float16": 2, "bfloat16": 2, "double": 8, "int8": 1, "uint8": 1,
               "int32": 4, "uint32": 4, "int64": 8, "bool": 1, "int16": 2, "uint16": 2,
               "float8e4m3fn": 1, "float8e5m2": 1}  # fmt: skip


def _tensor_bytes(entries: Any) -> int:
    total = 0
    for entry in entries or []:
        for dtype, shape in (entry or {}).items():
            n = 1
            for d in shape if isinstance(shape, list) else []:
                n *= int(d)
            total += n * _ITEM_BYTES.get(str(dtype), 4)
    return total


def _with_io(layer: ExecutedLayer, events: list[Mapping[str, Any]]) -> ExecutedLayer:
    """The layer with the bytes of the tensors ONNX Runtime says it read and wrote (a
    prepacked weight is not among them)."""
    for ev in reversed(events):
        if ev.get("cat") == "Node" and ev.get("name") == layer.name + _KERNEL:
            args = ev.get("args") or {}
            io = (_tensor_bytes(args.get("input_type_shape")),
                  _tensor_bytes(args.get("output_type_shape")))  # fmt: skip
            return ExecutedLayer(**{**layer.__dict__, "extra": {**layer.extra, "io_bytes": io}})
    return layer


# ---- OpenVINO -------------------------------------------------------------------------------
_EXEC_PRECISION = re.compile(r"_([A-Za-z]+\d*)$")


def ov_info(items: Iterable[Any]) -> list[dict[str, Any]]:
    """``get_profiling_info()``'s ProfilingInfo objects as plain records (the fixture form)."""
    return [
        {
            "node_name": p.node_name,
            "node_type": p.node_type,
            "exec_type": p.exec_type,
            "status": str(p.status).rsplit(".", 1)[-1],
            "real_time_ms": p.real_time.total_seconds() * 1e3,
        }
        for p in items
    ]


def ov_layer_times(
    runs: Sequence[Sequence[Mapping[str, Any]]], runtime: Sequence[ExecutedLayer]
) -> LayerTimes:
    """Layers and times from OpenVINO's profiling info of each query (``runs``), joined by
    name with the compiled model's runtime layers (``runtime``: precision and the ONNX nodes
    each was made from). Nodes NOT_RUN were fused into a layer that ran: not layers."""
    by_name = {layer.name: layer for layer in runtime}
    made: dict[str, ExecutedLayer] = {}  # in order of first execution
    per_run: list[dict[str, float]] = []
    for run in runs:
        took: dict[str, float] = {}
        for rec in run:
            if rec.get("status") != "EXECUTED":
                continue
            name = str(rec["node_name"])
            took[name] = took.get(name, 0.0) + float(rec["real_time_ms"])
            if name not in made:
                kind = str(rec.get("node_type", ""))
                known = by_name.get(name)
                # the counters' node type (MaxPool, ReduceMean), as benchmark_app -pc shows it
                made[name] = (
                    replace(known, kind=kind or known.kind)
                    if known is not None
                    else ExecutedLayer(
                        name=name,
                        kind=kind,
                        precision=_exec_precision(str(rec.get("exec_type", ""))),
                        kernel=str(rec.get("exec_type", "")),
                    )
                )
        per_run.append(took)
    # a node the plugin skipped in one query took no time in it
    return LayerTimes(
        layers=list(made.values()),
        times_ms=[[took.get(n, 0.0) for took in per_run] for n in made],
        source="openvino profiling info (PERF_COUNT, real time per node)",
        queries=len(runs),
    )


def _exec_precision(exec_type: str) -> str | None:
    m = _EXEC_PRECISION.search(exec_type)
    return precision_word(m.group(1)) if m else None


# ---- TensorRT ---------------------------------------------------------------------------------
def trt_layer_times(
    runs: Sequence[Sequence[tuple[str, float]]], inspector: Sequence[ExecutedLayer]
) -> LayerTimes:
    """Layers and times from ``IProfiler.report_layer_time`` records, one list per profiled
    execution, joined by name with the engine inspector's layers (precision, tactic, ONNX
    nodes). A layer the inspector does not list (a reformat) keeps its name as its kind."""
    by_name = {layer.name: layer for layer in inspector}
    order: list[str] = []
    times: dict[str, list[float]] = {}
    for run in runs:
        for name, ms in run:
            if name not in times:
                order.append(name)
                times[name] = []
            times[name].append(float(ms))
    layers = [by_name.get(n) or _trt_unlisted(n) for n in order]
    return LayerTimes(
        layers=layers,
        times_ms=[times[n] for n in order],
        source="tensorrt IProfiler (report_layer_time per layer)",
        queries=len(runs),
    )


def _trt_unlisted(name: str) -> ExecutedLayer:
    kind = "Reformat" if name.lower().startswith("reformatting") else ""
    return ExecutedLayer(name=name, kind=kind, precision=None, nodes=tuple(name.split(" + ")))


def trtexec_layer_times(doc: Sequence[Mapping[str, Any]], inspector: Sequence[ExecutedLayer]) -> LayerTimes:  # fmt: skip
    """Layers and times from trtexec's ``--exportProfile`` JSON: ``[{"count": N}, {"name",
    "timeMs", "averageMs", "medianMs", "percentage"}, ...]``; a layer's time is its median
    per execution (its average where no median is given), over ``count`` executions."""
    count = next((int(d["count"]) for d in doc if "count" in d), 0)
    runs_of: list[tuple[str, float]] = []
    for d in doc:
        if "name" not in d:
            continue
        ms = d.get("medianMs", d.get("averageMs"))
        if ms is None:
            continue
        runs_of.append((str(d["name"]), float(ms)))
    out = trt_layer_times([runs_of], inspector)
    return LayerTimes(
        layers=out.layers,
        times_ms=out.times_ms,
        source="trtexec --exportProfile (median per layer)",
        queries=count,
    )
