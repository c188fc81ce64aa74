"""The placement check of a finished INT8 file, per Q/DQ target: what the file holds against
the rules its target runtime fuses by (export.qdq_placement states them), and what breaks them.

* ``tensorrt``: rules 1-5 of :mod:`export.qdq_placement`.
* ``openvino``: rules 1, 4 and 5; a residual Add reads both inputs quantized (so the conv
  before it ends quantized, NNCF's placement for the CPU plugin), and no other weighted op's
  output is quantized.
* ``onnxruntime``: every weighted op reads a quantized input (no small-conv exception); ONNX
  Runtime fuses DQ -> Conv -> Q into QLinearConv only when the output is quantized, so weighted
  outputs left float are counted (``weighted_outputs_float``: a note, not a breach, since they
  cost speed, not correctness; what really ran is the profile's to say); rule 5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnbench.export.qdq_convs import float_convs
from cnnbench.export.qdq_placement import (
    _FUSABLE_BETWEEN,
    WEIGHTED_OPS,
    ResidualAdd,
    _Graph,
    residual_adds,
)
from cnnbench.precision import Precision


def check_placement(
    path_or_model: Path | str | Any,
    target: str = "tensorrt",
    precision: Precision = Precision.INT8,
) -> dict[str, Any]:
    """The placement summary of an INT8 (or FP8) file and every breach of ``target``'s rules
    (FP8 is ModelOpt's, for TensorRT: its convs left float are FP8's, :mod:`export.qdq_convs`).

    Keys: ``target``, ``quantized_ops`` (op type -> nodes with a dequantized input),
    ``qdq_count``, ``weighted_unquantized`` (weighted ops whose activation input is float),
    ``quantized_weighted_outputs`` (weighted-op outputs that feed a QuantizeLinear where the
    target wants them float), ``weighted_outputs_float`` (onnxruntime: outputs left float),
    ``residual_adds`` / ``residual_adds_one_dq`` / ``residual_adds_both_dq``,
    ``outputs_from_dq``, ``float_outputs``, ``violations`` (one line each), ``notes``, ``ok``.
    """
    import onnx

    model = (
        onnx.load(str(path_or_model), load_external_data=False)
        if isinstance(path_or_model, (str, Path))
        else path_or_model
    )
    g = model.graph
    gr = _Graph(g)
    violations: list[str] = []
    notes: list[str] = []
    small = set() if target == "onnxruntime" else set(float_convs(g, precision))
    weighted_float = _weighted_float_inputs(g, gr, small)
    if weighted_float:
        violations.append(f"{len(weighted_float)} weighted op(s) read a float input: "
                          f"{', '.join(weighted_float[:3])}")  # fmt: skip
    adds = residual_adds(g)
    fused = {gr.source(a.identity) for a in adds}
    if target == "openvino":
        fused |= {gr.source(a.branch) for a in adds}
    bad_out = [] if target == "onnxruntime" else _quantized_weighted_outputs(g, gr, fused)
    if bad_out:
        violations.append(f"{len(bad_out)} weighted op output(s) quantized: "
                          f"{', '.join(bad_out[:3])}")  # fmt: skip
    float_out = _float_weighted_outputs(g, gr) if target == "onnxruntime" else []
    if float_out:
        notes.append(f"{len(float_out)} weighted op output(s) float: ONNX Runtime runs them "
                     f"as float convs ({', '.join(float_out[:3])})")  # fmt: skip
    one_dq, both_dq, add_violations = _residual_add_inputs(g, gr, adds, target)
    violations.extend(add_violations)
    outs_dq = _outputs_from_qdq(g, gr)
    if outs_dq:
        violations.append(f"graph output(s) {', '.join(outs_dq)} come from Q/DQ; keep them float")
    qdq = sum(1 for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear"))
    return {
        "target": target,
        "quantized_ops": dict(sorted(_dequantized_ops(g, gr).items())),
        "qdq_count": qdq,
        "weighted_unquantized": len(weighted_float),
        "float_small_convs": sorted(small),
        "quantized_weighted_outputs": len(bad_out),
        "weighted_outputs_float": len(float_out),
        "residual_adds": len(adds),
        "residual_adds_one_dq": one_dq,
        "residual_adds_both_dq": both_dq,
        "outputs_from_dq": outs_dq,
        "float_outputs": [o.name for o in g.output if o.name not in outs_dq],
        "violations": violations,
        "notes": notes,
        "ok": not violations,
    }


def _dequantized_ops(g: Any, gr: _Graph) -> dict[str, int]:
    """Op type -> nodes with a dequantized input."""
    quantized_ops: dict[str, int] = {}
    for n in g.node:
        if any(gr.from_dq(i) for i in n.input):
            quantized_ops[n.op_type] = quantized_ops.get(n.op_type, 0) + 1
    return quantized_ops


def _weighted_float_inputs(g: Any, gr: _Graph, small: set[str]) -> list[str]:
    """Rule 1: the weighted ops whose activation input is float, but for the small convs the
    rule leaves float."""
    return [
        n.name
        for n in g.node
        if n.op_type in WEIGHTED_OPS and n.name not in small and not gr.from_dq(n.input[0])
    ]


def _quantized_weighted_outputs(g: Any, gr: _Graph, identities: set[str]) -> list[str]:
    """Rule 2: the weighted ops whose output (or its BatchNorm's) feeds a QuantizeLinear without
    being a residual Add's identity (once per such tensor)."""
    bad_out = []
    for n in g.node:
        if n.op_type in WEIGHTED_OPS:
            out = n.output[0]
            follow = [out]
            for c in gr.consumers.get(out, []):  # BN after the conv, before folding
                if c.op_type in _FUSABLE_BETWEEN:
                    follow.append(c.output[0])
            for t in follow:
                if t in identities:
                    continue
                if any(c.op_type == "QuantizeLinear" for c in gr.consumers.get(t, [])):
                    bad_out.append(n.name)
    return bad_out


def _residual_add_inputs(
    g: Any, gr: _Graph, adds: list[ResidualAdd], target: str
) -> tuple[int, int, list[str]]:
    """Rule 3 (tensorrt: only the identity branch quantized) or its openvino and onnxruntime
    form (both inputs quantized): the Adds with one and with two quantized inputs, and a
    violation line for each Add that breaks the target's form."""
    one_dq = both_dq = 0
    violations = []
    nodes = {n.name: n for n in g.node}
    for a in adds:
        dq_inputs = sum(1 for i in nodes[a.node].input if gr.from_dq(i))
        if dq_inputs == 1 and gr.source(a.identity) != a.identity:
            one_dq += 1
        both_dq += dq_inputs == 2
        if target == "tensorrt" and not (dq_inputs == 1 and gr.source(a.identity) != a.identity):
            violations.append(f"residual Add {a.node} has {dq_inputs} quantized input(s), "
                              "not just its identity branch")  # fmt: skip
        elif target != "tensorrt" and dq_inputs != 2:
            violations.append(f"residual Add {a.node} has {dq_inputs} quantized input(s); "
                              f"{target} runs it in INT8 with both")  # fmt: skip
    return one_dq, both_dq, violations


def _float_weighted_outputs(g: Any, gr: _Graph) -> list[str]:
    """The weighted ops whose output feeds no QuantizeLinear (the graph's outputs aside)."""
    outputs = {o.name for o in g.output}
    return [
        n.name
        for n in g.node
        if n.op_type in WEIGHTED_OPS
        and n.output[0] not in outputs
        and not any(c.op_type == "QuantizeLinear" for c in gr.consumers.get(n.output[0], []))
    ]


def _outputs_from_qdq(g: Any, gr: _Graph) -> list[str]:
    """Rule 5: the graph outputs a QuantizeLinear or DequantizeLinear produces."""
    return [o.name for o in g.output
            if gr.producer.get(o.name) is not None
            and gr.producer[o.name].op_type in ("DequantizeLinear", "QuantizeLinear")]  # fmt: skip
