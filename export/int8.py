"""INT8 as explicit Q/DQ in the form TensorRT consumes, made by ONNX Runtime's static quantizer.

Form (checked by :func:`describe_qdq`):

- activations: QuantizeLinear -> DequantizeLinear pairs, int8, per-tensor scale, zero point 0
  (``ActivationSymmetric``);
- weights: int8 initialisers -> DequantizeLinear, symmetric in [-127, 127], zero point 0, one
  scale per output channel (``per_channel``): axis 0 for Conv and for Gemm with transB=1
  (torch's Linear), axis 1 for Gemm with transB=0, MatMul (B is K×N) and ConvTranspose;
- biases stay float32 (``QuantizeBias`` off): TensorRT's parser rejects an int32 bias behind a
  DequantizeLinear ("only activation types allowed as input to this layer").

Before calibration the FP32 graph goes through ORT's ``quant_pre_process`` (symbolic shape
inference and ORT's basic optimisations, which fold BatchNorm into Conv), so Q/DQ lands where
TensorRT will fuse it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.errors import ArtifactError
from cnnbench.export.calibration import ort_method
from cnnbench.export.qdq_check import check_placement
from cnnbench.export.qdq_convs import float_convs
from cnnbench.export.qdq_placement import WEIGHTED_OPS, float_outputs, quantize_identities
from cnnbench.precision import Precision

QUANTIZER = "onnxruntime.quantization"
#: the version of the Q/DQ placement rules (export.qdq_placement); files made by another are
#: not reused
PLACEMENT_SCHEME = 3

EXTRA_OPTIONS: dict[str, Any] = {
    "ActivationSymmetric": True,
    "WeightSymmetric": True,
    "QuantizeBias": False,
    # rule 2 of export.qdq_placement: a weighted op's output stays float, so it fuses
    "OpTypesToExcludeOutputQuantization": list(WEIGHTED_OPS),
}


def quantizer_version() -> str:
    return metadata.version("onnxruntime")


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    # the quantizer logs advice through the root logger; our stderr is for our own progress
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def preprocess(src: Path, dst: Path) -> None:
    """ORT's ``quant_pre_process`` (shape inference + basic optimisation) of ``src`` into ``dst``."""
    from onnxruntime.quantization import quant_pre_process

    try:
        with _quiet_ort():
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    except Exception as exc:  # ORT raises bare Exceptions / asserts on graphs it cannot handle
        raise ArtifactError(f"quantization pre-processing of {src} failed: {_line(exc)}") from None


def op_types() -> list[str]:
    """Every op type ORT's QDQ quantizer knows: calibration records the ranges of all their
    tensors (a residual Add's identity branch needs one), though only weighted ops are
    quantized."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


#: how each Q/DQ target's file is made (ONNX Runtime's quantize_static options beyond the
#: calibration): TensorRT's rules 1-3 (export.qdq_placement); OpenVINO's, as NNCF places them
#: for its CPU plugin (TensorRT's, but a residual Add reads both inputs quantized, so the
#: convolution before it ends quantized and the Add runs in INT8); ONNX Runtime's own, as its
#: quantizer places them for the CPU provider (every quantizable op with its output, uint8
#: asymmetric activations: its S8S8 activations left 11 of resnet18's 20 convolutions float,
#: U8S8 fused all 20 into QLinearConv and the residual Adds into QLinearAdd)
TARGET_OPTIONS: dict[str, dict[str, Any]] = {
    "tensorrt": {
        "op_types_to_quantize": list(WEIGHTED_OPS),
        "activation_type": "QInt8",
        "extra_options": dict(EXTRA_OPTIONS),
        "exclude_small_convs": True,
    },
    "openvino": {
        "op_types_to_quantize": [*WEIGHTED_OPS, "Add"],
        "activation_type": "QInt8",
        "extra_options": {
            **EXTRA_OPTIONS,
            "OpTypesToExcludeOutputQuantization": [*WEIGHTED_OPS, "Add"],
        },
        "exclude_small_convs": True,
    },
    "onnxruntime": {
        "op_types_to_quantize": None,
        "activation_type": "QUInt8",
        "extra_options": {"ActivationSymmetric": False, "WeightSymmetric": True},
        "exclude_small_convs": False,
    },
}


def quantize(
    src: Path, dst: Path, ranges_path: Path, method: str, target: str = "tensorrt"
) -> dict[str, Any]:
    """Quantize the pre-processed ``src`` to ``dst`` with the cached ``ranges_path``, placing
    Q/DQ the way ``target`` fuses it (``TARGET_OPTIONS``).

    Returns:
        The quantizer record for the manifest (name, version, options).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    opts = TARGET_OPTIONS[target]
    small = (
        float_convs(onnx.load(str(src), load_external_data=False).graph)  # rule 1's exception
        if opts["exclude_small_convs"]
        else []
    )
    try:
        with _quiet_ort():
            quantize_static(
                str(src),
                str(dst),
                calibration_data_reader=None,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=opts["op_types_to_quantize"],
                nodes_to_exclude=small,
                per_channel=True,
                reduce_range=False,
                activation_type=getattr(QuantType, opts["activation_type"]),
                weight_type=QuantType.QInt8,
                calibrate_method=ort_method(method),
                extra_options=dict(opts["extra_options"]),
                calibration_cache_path=str(ranges_path),
            )
    except Exception as exc:
        raise ArtifactError(f"INT8 quantization of {src} failed: {_line(exc)}") from None
    placed: dict[str, int] = {}
    if target == "tensorrt":  # rule 3: residual Adds, identity only
        placed = quantize_identities(dst, ranges_path)
    float_out = float_outputs(dst)  # rule 5 for every target: the logits stay float
    return {
        "quantizer": QUANTIZER,
        "quantizer_version": quantizer_version(),
        "function": "onnxruntime.quantization.quantize_static",
        "qdq_target": target,
        "options": {
            "quant_format": "QDQ",
            "activation_type": opts["activation_type"],
            "weight_type": "QInt8",
            "per_channel": True,
            "reduce_range": False,
            "calibrate_method": method,
            "extra_options": dict(opts["extra_options"]),
            "op_types_to_quantize": opts["op_types_to_quantize"] or "all the quantizer knows",
            "nodes_to_exclude": small,
            "pre_process": "onnxruntime.quantization.quant_pre_process",
            **(
                {"residual_identity": "export.qdq_placement.quantize_identities"}
                if target == "tensorrt"
                else {}
            ),
            "outputs_float": "export.qdq_placement.float_outputs",
        },
        **({"residual_identity": placed} if target == "tensorrt" else {}),
        "outputs_unquantized": float_out,
    }


_LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: the Q/DQ element type of each quantized precision (TensorProto values)
_ELEMENT_TYPES = {Precision.INT8: 3, Precision.FP8: 17}  # INT8, FLOAT8E4M3FN


def _output_channel_axis(consumer: Any, weight_rank: int) -> int | None:
    """The output-channel axis of a weight fed to ``consumer`` (None: unknown op)."""
    op = consumer.op_type
    if op == "Conv":
        return 0
    if op == "ConvTranspose":
        return 1
    if op == "Gemm":
        trans_b = next((a.i for a in consumer.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if op == "MatMul":
        return weight_rank - 1
    return None


class _QdqGraph:
    """Lookups over a quantized graph: its initialisers, each tensor's producer and consumers,
    and the constant value or element type behind a tensor's name."""

    def __init__(self, g: Any) -> None:
        self.inits = {t.name: t for t in g.initializer}
        self.producers = {o: n for n in g.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def const(self, name: str) -> Any:
        """The value of an initialiser or of a Constant's output (None: neither)."""
        from onnx import numpy_helper

        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producers.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def elem_type(self, name: str) -> int | None:
        """The element type of an initialiser, a Constant's output or a QuantizeLinear's output
        (its zero point's); None when it is none of these."""
        if name in self.inits:
            return int(self.inits[name].data_type)
        node = self.producers.get(name)
        if node is not None and node.op_type == "QuantizeLinear" and len(node.input) > 2:
            return self.elem_type(node.input[2])
        if node is not None and node.op_type == "Constant":
            return int(node.attribute[0].t.data_type)
        return None


@dataclass
class _WeightScales:
    """How the weights' DequantizeLinear nodes are scaled."""

    per_channel: int = 0
    per_tensor: int = 0
    axes_ok: bool = True  # every per-channel scale is on its consumers' output-channel axis
    linear_per_tensor: int = 0  # Conv/Gemm/MatMul weights without per-channel scales


def _weight_scales(gr: _QdqGraph, dqs: list[Any]) -> _WeightScales:
    """Count the DequantizeLinear nodes of initialisers (weights) by scale: per tensor, or per
    channel and then on which axis."""
    out = _WeightScales()
    for dq in dqs:
        if dq.input[0] not in gr.inits:
            continue
        scale = gr.const(dq.input[1])
        users = gr.consumers.get(dq.output[0], [])
        if scale is None or scale.ndim == 0:
            out.per_tensor += 1
            out.linear_per_tensor += sum(1 for c in users if c.op_type in _LINEAR_OPS)
            continue
        out.per_channel += 1
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        rank = len(gr.inits[dq.input[0]].dims)
        axis = axis % rank
        for c in users:
            if _output_channel_axis(c, rank) not in (None, axis):
                out.axes_ok = False
    return out


def _quantized_ops(gr: _QdqGraph, dqs: list[Any]) -> dict[str, int]:
    """Op type -> count of the nodes fed by a DequantizeLinear (once per dequantized input),
    sorted by op type."""
    ops: dict[str, int] = {}
    for dq in dqs:
        for c in gr.consumers.get(dq.output[0], []):
            ops[c.op_type] = ops.get(c.op_type, 0) + 1
    return dict(sorted(ops.items()))


def describe_qdq(
    onnx_path: str | Path, precision: Precision = Precision.INT8, target: str = "tensorrt"
) -> dict[str, Any]:
    """The Q/DQ structure of a quantized file (for tests, the manifest and ``target``'s
    rules), INT8 or FP8 (E4M3: its Q/DQ tensors and zero points are FLOAT8E4M3FN).

    Keys: ``quantize_linear``/``dequantize_linear`` (node counts), ``qdq_pairs`` (Q nodes feeding
    a DQ), ``weight_dq`` (DQ of an initialiser), ``zero_points`` (count, ``all_zero``,
    ``types``), ``element_type`` (the precision's: INT8 or FLOAT8E4M3FN), ``typed`` (every Q/DQ
    tensor and zero point is of it), ``int8`` (every one is int8), ``int32_dq`` (DQ of int32 data, e.g.
    biases: TensorRT rejects these), ``per_channel_weights`` / ``per_tensor_weights`` (counts),
    ``weight_axes_ok`` (every per-channel scale is on the consumer's output-channel axis),
    ``linear_weights_per_tensor`` (Conv/Gemm/MatMul weights lacking per-channel scales: 0),
    ``activation_per_tensor`` (every Q scale is a scalar), ``quantized_ops`` (op type -> count
    of nodes fed by a DQ), ``placement`` (:func:`export.qdq_check.check_placement`: where
    Q/DQ sits, and what breaks ``target``'s placement rules), ``ok`` (the form conditions hold:
    per-channel weights on the right axis, per-tensor activations; for TensorRT and OpenVINO
    also int8 everywhere, zero points 0 and float biases; ONNX Runtime's form has uint8
    asymmetric activations and int32 biases. Placement is checked on its own).
    """
    import onnx
    from onnx import TensorProto

    model = onnx.load(str(onnx_path))
    gr = _QdqGraph(model.graph)
    qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dqs = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    pairs = sum(
        1
        for q in qs
        if any(c.op_type == "DequantizeLinear" for c in gr.consumers.get(q.output[0], []))
    )
    zps = [gr.const(n.input[2]) for n in qs + dqs if len(n.input) > 2 and n.input[2]]
    zp_types = sorted(
        {
            TensorProto.DataType.Name(t)
            for n in qs + dqs
            if len(n.input) > 2 and (t := gr.elem_type(n.input[2])) is not None
        }
    )
    data_types = [gr.elem_type(n.input[0]) for n in dqs]
    int32_dq = sum(1 for t in data_types if t == TensorProto.INT32)
    want = _ELEMENT_TYPES[precision]
    int8, typed = (_all_of(gr, qs, dqs, t) for t in (TensorProto.INT8, want))
    weights = _weight_scales(gr, dqs)
    act_per_tensor = all((s := gr.const(q.input[1])) is not None and s.size == 1 for q in qs)
    all_zero = bool(zps) and all(zp is not None and not np.any(zp) for zp in zps)
    out = {
        "quantize_linear": len(qs),
        "dequantize_linear": len(dqs),
        "qdq_pairs": pairs,
        "weight_dq": weights.per_channel + weights.per_tensor,
        "zero_points": {"count": len(zps), "all_zero": all_zero, "types": zp_types},
        "element_type": TensorProto.DataType.Name(want),
        "typed": typed,
        "int8": int8,
        "int32_dq": int32_dq,
        "per_channel_weights": weights.per_channel,
        "per_tensor_weights": weights.per_tensor,
        "weight_axes_ok": weights.axes_ok,
        "linear_weights_per_tensor": weights.linear_per_tensor,
        "activation_per_tensor": act_per_tensor,
        "quantized_ops": _quantized_ops(gr, dqs),
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "placement": check_placement(model, target, precision),
    }
    out["ok"] = bool(
        pairs > 0
        and (all_zero and typed and int32_dq == 0 or target == "onnxruntime")
        and weights.per_channel > 0
        and weights.axes_ok
        and act_per_tensor
        and weights.linear_per_tensor == 0
    )
    return out


def _all_of(gr: _QdqGraph, qs: list[Any], dqs: list[Any], want: int) -> bool:
    """Whether every DQ's data and every zero point is of element type ``want``."""
    data = [gr.elem_type(n.input[0]) for n in dqs]
    zps = [n.input[2] for n in qs + dqs if len(n.input) > 2 and n.input[2]]
    return (
        bool(qs or dqs)
        and all(t == want for t in data if t is not None)
        and all(gr.elem_type(z) == want for z in zps)
    )


def _line(exc: BaseException) -> str:
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:200]
    return type(exc).__name__
