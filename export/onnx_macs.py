"""Multiply-accumulates per weighted node of an ONNX graph, per image (the zoo's convention:
Conv, ConvTranspose, Gemm and MatMul count; so do their quantized forms).

Shapes come from ONNX shape inference, so a Q/DQ or FP16 file gives the same figures as its
FP32 source. The batch dimension is left out: figures are per input image.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from cnnbench.export.graph import infer_shapes, load

if TYPE_CHECKING:
    import onnx

#: op type -> index of the weight input (the kernel or the right-hand matrix)
CONV_OPS = {
    "Conv": 1, "ConvTranspose": 1, "ConvInteger": 1, "QLinearConv": 3,
    "FusedConv": 1, "NchwcConv": 1,  # ONNX Runtime's own, in its optimised graphs
}  # fmt: skip
MATMUL_OPS = {
    "Gemm": 1, "MatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3, "QGemm": 3,
    "FusedGemm": 1, "FusedMatMul": 1,
}  # fmt: skip
WEIGHTED_OPS = (*CONV_OPS, *MATMUL_OPS)


def _shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    out: dict[str, list[int | None]] = {}
    g = model.graph
    for vi in [*g.input, *g.value_info, *g.output]:
        t = vi.type.tensor_type
        if t.HasField("shape"):
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    for init in g.initializer:
        out[init.name] = list(init.dims)
    return out


def _prod(dims: list[int | None]) -> int | None:
    return None if any(d is None for d in dims) else math.prod(d for d in dims if d is not None)


def _gemm_k(node: onnx.NodeProto, a: list[int | None]) -> int | None:
    trans_a = next((at.i for at in node.attribute if at.name == "transA"), 0)
    if not a:
        return None
    return a[0] if trans_a and len(a) == 2 else a[-1]


def node_macs(model: onnx.ModelProto | str | Path) -> dict[str, int]:
    """Per-image MACs of each weighted node whose shapes are known, by node name."""
    proto = model if hasattr(model, "graph") else load(Path(str(model)))
    model = infer_shapes(proto)  # type: ignore[arg-type]
    shapes = _shapes(model)
    out: dict[str, int] = {}
    for i, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        y = shapes.get(node.output[0]) if node.output else None
        if not y:
            continue
        per_image = _prod(y[1:])
        if node.op_type in CONV_OPS:
            w = shapes.get(node.input[CONV_OPS[node.op_type]])
            if not w or per_image is None:
                continue
            # Conv: (Cin/groups)*kh*kw per output; ConvTranspose's (Cin, Cout/groups, k...)
            # gives Cin*k per input position, the same total as out*Cin/groups*k.
            if node.op_type == "ConvTranspose":
                x = shapes.get(node.input[0])
                k = _prod(w[2:])
                if not x or k is None or _prod(x[1:]) is None:
                    continue
                macs = _prod(x[1:]) * k * (w[1] or 0)  # type: ignore[operator]
            else:
                k = _prod(w[1:])
                if k is None:
                    continue
                macs = per_image * k
        elif node.op_type in MATMUL_OPS:
            a = shapes.get(node.input[0]) or []
            gemm = node.op_type in ("Gemm", "FusedGemm", "QGemm")
            k = _gemm_k(node, a) if gemm else (a[-1] if a else None)
            if k is None or per_image is None:
                continue
            macs = per_image * k
        else:
            continue
        out[name] = int(macs)
    return out


#: ops a runtime fuses into the weighted op before them (activations, scales, BN, a residual Add)
FUSABLE_OPS = frozenset(
    {"Relu", "Tanh", "Sigmoid", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Elu",
     "BatchNormalization", "Add", "Sum", "Identity", "Mul", "Div", "Sub"}
)  # fmt: skip


def fused_outputs(model: onnx.ModelProto | str | Path) -> dict[str, str]:
    """Tensor -> the weighted node whose fused chain produces it: a weighted node's output,
    then through the activations, BN and residual Adds a runtime fuses into it. An Add takes
    the nearer of its inputs (the conv branch, one step back, not the identity from a block
    before); a tie is left out. Runtimes that rename fused nodes after their output tensor
    (ONNX Runtime's ``relu_nchwc``) are mapped back to ONNX nodes through this."""
    proto = model if hasattr(model, "graph") else load(Path(str(model)))
    g = proto.graph  # type: ignore[union-attr]
    near: dict[str, tuple[str, int]] = {}  # tensor -> (weighted node, steps from it)
    for i, node in enumerate(g.node):
        name = node.name or f"{node.op_type}_{i}"
        if node.op_type in WEIGHTED_OPS and node.output:
            near[node.output[0]] = (name, 0)
        elif node.op_type in FUSABLE_OPS and node.output:
            cands = sorted((near[t][1], near[t][0]) for t in node.input if t in near)
            if cands and (len(cands) == 1 or cands[0][0] < cands[1][0]):
                near[node.output[0]] = (cands[0][1], cands[0][0] + 1)
    return {t: n for t, (n, _) in near.items()}
