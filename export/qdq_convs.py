"""Rule 1's exception (export.qdq_placement): the convolutions left float because TensorRT has
no kernel in the quantized precision that gains on their shape. The tests are ModelOpt's
(``find_nodes_from_convs_to_exclude``), per precision:

- INT8: 16+ input and output channels; or a plain conv with a square kernel and a channel
  count that is a multiple of 8, that is the first layer or has 16+ channels on one side; or a
  grouped conv with 8k outputs and a kernel of 3+;
- FP8 (E4M3): more than 16 input and output channels, and a filter of at most 32 taps (a 7x7
  stem is 49: it stays float).
"""

from __future__ import annotations

import math
from typing import Any

from cnnbench.precision import Precision

#: FP8: convolutions with this many input or output channels, or fewer, stay float
FP8_MIN_CHANNELS = 16
#: FP8: the largest filter (kernel taps) an E4M3 convolution is made for
FP8_MAX_FILTER = 32


def int8_conv_supported(node: Any, weight_dims: list[int] | None, first_layer: bool) -> bool:
    """Whether a Conv is worth INT8 for TensorRT (a weight of unknown shape counts as
    supported)."""
    if node.op_type != "Conv" or not weight_dims or len(weight_dims) < 3:
        return True
    out_c, in_c = int(weight_dims[0]), int(weight_dims[1])
    if out_c >= 16 and in_c >= 16:
        return True
    attrs = {a.name: a for a in node.attribute}
    group = int(attrs["group"].i) if "group" in attrs else 1
    kernel = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else weight_dims[2:]
    if group == 1:
        return (
            (out_c % 8 == 0 or in_c % 8 == 0)
            and (first_layer or out_c >= 16 or in_c >= 16)
            and len(set(kernel)) == 1
        )
    return out_c % 8 == 0 and all(int(k) >= 3 for k in kernel)


def fp8_conv_supported(node: Any, weight_dims: list[int] | None) -> bool:
    """Whether a Conv is worth FP8 (E4M3) for TensorRT (unknown shape: supported)."""
    if node.op_type != "Conv" or not weight_dims or len(weight_dims) < 3:
        return True
    out_c, in_c = int(weight_dims[0]), int(weight_dims[1])
    taps = math.prod(int(k) for k in weight_dims[2:])
    return out_c > FP8_MIN_CHANNELS and in_c > FP8_MIN_CHANNELS and taps <= FP8_MAX_FILTER


def float_convs(graph: Any, precision: Precision = Precision.INT8) -> list[str]:
    """Names of the convolutions rule 1 leaves float at ``precision`` (INT8 or FP8)."""
    dims = {t.name: list(t.dims) for t in graph.initializer}
    inputs = {i.name for i in graph.input}
    out = []
    for n in graph.node:
        if n.op_type != "Conv":
            continue
        w = dims.get(n.input[1])
        if precision == Precision.FP8:
            ok = fp8_conv_supported(n, w)
        else:
            ok = int8_conv_supported(n, w, any(i in inputs for i in n.input))
        if not ok:
            out.append(n.name)
    return out
