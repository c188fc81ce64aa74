"""What an engine really ran, per layer, as the runtime reports it, and the share of MACs that
ran in each precision (the answer to "did FP16/INT8 actually happen?").

Each engine that can tell turns its runtime's own report into :class:`ExecutedLayer` records:
OpenVINO's runtime model (exec type and runtime precision per node), ONNX Runtime's profiler
(the kernel that ran per node, with its input types) and TensorRT's engine inspector (layer
information, JSON). A layer names the ONNX nodes it was made from, so its MACs come from the
ONNX graph (:func:`cnnbench.export.onnx_macs.node_macs`), the same count for every engine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from cnnbench.export.onnx_macs import CONV_OPS, MATMUL_OPS
from cnnbench.precision import Precision

_P = Precision
#: precision words as runtimes spell them -> ours (int8 includes u8); our own names and words
#: for types our table does not have (fp8, int32) pass as they are
_WORDS: dict[str, str] = {
    "i8": _P.INT8.value, "u8": _P.INT8.value, "uint8": _P.INT8.value, "i4": "int4", "u4": "int4",
    "f16": _P.FP16.value, "half": _P.FP16.value, "float16": _P.FP16.value,
    "bfloat16": _P.BF16.value, "f32": _P.FP32.value, "float": _P.FP32.value,
    "float32": _P.FP32.value, "f8e4m3": _P.FP8.value, "f8e5m2": "fp8e5m2", "i32": "int32",
    "i64": "int64", "float8e4m3fn": _P.FP8.value,
}  # fmt: skip
#: what TensorRT's format strings may name a tensor's type with
_TRT_TOKENS = {
    *(p.value for p in _P),
    "half",
    "bfloat16",
    "float",
    "fp8",
    "int32",
    "int64",
    "uint8",
}
#: the precisions a MAC share is given for, in the row's column names (narrowest first)
SHARE_PRECISIONS = tuple(p.value for p in (_P.INT8, _P.FP8, _P.FP16, _P.BF16, _P.FP32))


def precision_word(word: str | None) -> str | None:
    """Our precision name for a runtime's word (``u8``, ``Half``, ``bfloat16``), else the word."""
    if not word:
        return None
    return _WORDS.get(word.strip().lower(), word.strip().lower())


def trt_format_precision(text: str) -> str | None:
    """The data type in a TensorRT ``Format/Datatype`` string ("Row major linear FP32",
    "Thirty-two wide channel vectorized row major Int8 format", "Half")."""
    for token in re.findall(r"[A-Za-z0-9]+", text):
        low = token.lower()
        if low in _TRT_TOKENS:
            return precision_word(low)
    return None


@dataclass(frozen=True)
class ExecutedLayer:
    """One layer as the runtime ran it."""

    name: str
    #: the runtime's layer type (Convolution, FusedConv, CaskConvolution, ...)
    kind: str
    #: the precision the layer computed in (ours: int8, fp16, bf16, fp32, ...), None if unknown
    precision: str | None
    #: the kernel or primitive, as the runtime names it (brgconv_avx512_I8, a tactic, ...)
    kernel: str = ""
    #: the ONNX nodes the layer was made from (fused layers name several)
    nodes: tuple[str, ...] = ()
    #: MACs per image the runtime's own shapes give, when it reports them (fallback only)
    shape_macs: int | None = None
    #: MACs per image, from the ONNX graph (set by :func:`attribute`)
    macs: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["nodes"] = list(self.nodes)
        return d


def attribute(
    layers: Iterable[ExecutedLayer],
    graph_macs: Mapping[str, int],
    aliases: Mapping[str, str] | None = None,
) -> list[ExecutedLayer]:
    """Each layer with its MACs: the sum over the weighted ONNX nodes it names (each counted
    once, by the first layer that names it), else the runtime's own shape count. ``aliases``
    maps other names a runtime uses (a fused chain's output tensor) to weighted nodes."""
    aliases = aliases or {}
    seen: set[str] = set()
    out = []
    for layer in layers:
        names = [n if n in graph_macs else aliases.get(n, n) for n in layer.nodes]
        mine = [n for n in dict.fromkeys(names) if n in graph_macs and n not in seen]
        seen.update(mine)
        macs = sum(graph_macs[n] for n in mine) if mine else layer.shape_macs
        out.append(ExecutedLayer(**{**layer.__dict__, "macs": macs}))
    return out


def summarize(layers: Iterable[ExecutedLayer], total_macs: int | None = None) -> dict[str, Any]:
    """MACs by executed precision, as shares of the MACs accounted for, and the coverage of
    the graph's total (``total_macs``) that the runtime's report accounts for."""
    by: dict[str, int] = {}
    count: dict[str, int] = {}
    for layer in layers:
        if not layer.macs:
            continue
        p = layer.precision or "unknown"
        by[p] = by.get(p, 0) + layer.macs
        count[p] = count.get(p, 0) + 1
    accounted = sum(by.values())
    out: dict[str, Any] = {
        "macs_accounted": accounted,
        "macs_by_precision": dict(sorted(by.items(), key=lambda kv: -kv[1])),
        "weighted_layers_by_precision": count,
    }
    for p in SHARE_PRECISIONS:
        out[f"macs_{p}_share"] = round(by.get(p, 0) / accounted, 4) if accounted else None
    if total_macs:
        out["macs_coverage"] = round(accounted / total_macs, 4)
    return out


# ---- ONNX Runtime: the profiler's per-node events ------------------------------------------
#: ORT ops that compute in integers whatever their input types say
ORT_INTEGER_OPS = frozenset(
    {"QLinearConv", "ConvInteger", "QGemm", "QLinearMatMul", "MatMulInteger",
     "DynamicQuantizeMatMul", "QLinearAdd", "QLinearMul", "QLinearAveragePool",
     "QLinearGlobalAveragePool", "QLinearLeakyRelu", "QLinearSigmoid", "QLinearConcat"}
)  # fmt: skip
_KERNEL_SUFFIX = "_kernel_time"
#: what ONNX Runtime's layout transformers append to a node's name
_ORT_RENAMED = re.compile(r"(_nchwc|_token_\d+)$")


def _shape_of(entries: Any, i: int) -> list[int] | None:
    try:
        shape = next(iter(entries[i].values()))
    except (IndexError, AttributeError, StopIteration, TypeError):
        return None
    return [int(d) for d in shape] if isinstance(shape, list) else None


def _profile_macs(op: str, inputs: Any, outputs: Any) -> int | None:
    """Per-image MACs from a profiled node's logical shapes: a conv's
    output elements times its kernel's size, a matmul's output elements times its inner dim.
    The profiler's names are those of the optimised graph (``relu_nchwc``), so this, not the
    ONNX node name, is what attributes ONNX Runtime's layers."""
    out = _shape_of(outputs, 0)
    if not out:
        return None
    if op in CONV_OPS:
        w = _shape_of(inputs, CONV_OPS[op])
        k = w[1:] if w and len(w) == len(out) else None
    elif op in MATMUL_OPS:
        x = _shape_of(inputs, 0)
        k = x[-1:] if x else None
    else:
        return None
    if not k:
        return None
    n = 1
    for d in [*out[1:], *k]:
        n *= d
    return n


def ort_profile_layers(events: Iterable[Mapping[str, Any]]) -> list[ExecutedLayer]:
    """Layers from an ONNX Runtime profile (``SessionOptions.enable_profiling``): one per node
    of the optimised graph, in execution order, from its last run. A node's precision is its
    kernel's: integer ops (QLinearConv, ConvInteger, ...) are int8; others compute in the type
    of their first input."""
    last: dict[str, ExecutedLayer] = {}
    for ev in events:
        name = str(ev.get("name", ""))
        if ev.get("cat") != "Node" or not name.endswith(_KERNEL_SUFFIX):
            continue
        args = ev.get("args") or {}
        op = str(args.get("op_name", ""))
        inputs = args.get("input_type_shape") or [{}]
        first = next(iter(inputs[0]), None) if inputs and isinstance(inputs[0], dict) else None
        node = name[: -len(_KERNEL_SUFFIX)]
        outputs = args.get("output_type_shape") or []
        last.pop(node, None)  # keep the order of the last run
        last[node] = ExecutedLayer(
            name=node,
            kind=op,
            precision="int8" if op in ORT_INTEGER_OPS else precision_word(first),
            kernel=str(args.get("provider", "")),
            # its layout passes rename nodes: a fused conv after the chain's output
            # (relu_3_nchwc), an NHWC one with a token (node_Conv_293_token_1)
            nodes=tuple(dict.fromkeys((node, _ORT_RENAMED.sub("", node)))),
            shape_macs=_profile_macs(op, inputs, outputs),
            extra={"dur_us": ev.get("dur")},
        )
    return list(last.values())


# ---- TensorRT: the engine inspector's layer information (JSON) ----------------------------
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]+)\]")
#: TensorRT's DataType names as the inspector writes them (11.3 on: a field of its own)
_TRT_DATA_TYPES = {
    "float": _P.FP32.value, "half": _P.FP16.value, "bf16": _P.BF16.value, "int8": _P.INT8.value,
    "uint8": _P.INT8.value, "fp8": "fp8", "int4": "int4", "fp4": "fp4", "int32": "int32",
    "int64": "int64", "bool": "bool",
}  # fmt: skip


def trt_tensor_precision(tensor: Mapping[str, Any]) -> tuple[str | None, str]:
    """The data type and the format text of one of a layer's tensors, in either schema:
    TensorRT 10.x writes one ``Format/Datatype`` string ("Row major linear FP32 format"),
    11.3 on a ``DataType`` ("Half") and a ``Format`` of their own."""
    if "DataType" in tensor:
        word = str(tensor.get("DataType") or "").strip()
        return _TRT_DATA_TYPES.get(word.lower(), precision_word(word)), str(
            tensor.get("Format", "")
        )
    fmt = str(tensor.get("Format/Datatype") or tensor.get("Format") or "")
    return trt_format_precision(fmt), fmt


def trt_io_tensors(info: str | Mapping[str, Any]) -> list[str]:
    """The engine's I/O tensor names: 10.x's ``Bindings`` (names), or 11.x's ``I/O Tensors``
    (objects with ``Name``, ``IOMode``, ``DataType``, ...)."""
    doc = json.loads(info) if isinstance(info, str) else info
    if "I/O Tensors" in doc:
        return [str(t.get("Name", "")) for t in doc.get("I/O Tensors") or []]
    return [str(b) for b in doc.get("Bindings") or []]


def trt_inspector_layers(info: str | Mapping[str, Any]) -> list[ExecutedLayer]:
    """Layers from ``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)``,
    TensorRT 10.x's schema or 11.3's (:func:`trt_tensor_precision`).

    With ``ProfilingVerbosity.DETAILED`` each layer is an object (Name, LayerType, Inputs with
    their data type and format, TacticName, Metadata naming its ONNX nodes); otherwise only
    names, and the precision is unknown. A layer's precision is its first input's data type,
    the type its kernel reads (an INT8 convolution reads Int8)."""
    doc = json.loads(info) if isinstance(info, str) else info
    layers = []
    for item in doc.get("Layers", []):
        if isinstance(item, str):
            layers.append(ExecutedLayer(item, "", None, nodes=tuple(item.split(" + "))))
            continue
        name = str(item.get("Name", ""))
        nodes = tuple(_ONNX_LAYER.findall(str(item.get("Metadata", "")))) or tuple(
            name.split(" + ")
        )
        inputs = item.get("Inputs") or []
        precision, fmt = trt_tensor_precision(inputs[0]) if inputs else (None, "")
        layers.append(
            ExecutedLayer(
                name=name,
                kind=str(item.get("LayerType", "")),
                precision=precision,
                kernel=str(item.get("TacticName", "")),
                nodes=nodes,
                extra={"format": fmt},
            )
        )
    return layers
