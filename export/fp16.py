"""FP16 mixed precision as a strongly typed ONNX graph (TensorRT 11 reads precision from the file).

The converter is onnxconverter-common's ``float16.convert_float_to_float16`` with
``keep_io_types=True``: graph inputs and outputs stay float32 (Cast nodes are inserted at the
edges), so every engine feeds and reads float32 whatever the precision inside. Ops whose FP16
results overflow or lose too much (sums of squares, exponentials, normalisations, reductions)
stay in FP32: see :data:`FP32_OPS`. Initialisers are cast with ``max_finite_val`` at the FP16
limit (65504), so only weights that cannot be represented at all are clamped.
"""

from __future__ import annotations

import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

from cnnbench.artifacts import atomic_path
from cnnbench.errors import ArtifactError, first_line

CONVERTER = "onnxconverter-common"

#: Ops kept in FP32 besides the converter's own block list (ML ops with no FP16 kernels).
#: LRN, Pow, ReduceSumSquare, ReduceL2 square their inputs (overflow above ~256); Exp, Softmax,
#: LogSoftmax and Log overflow or underflow; ReduceSum/ReduceMean/ReduceProd accumulate long sums;
#: normalisations divide by small variances.
OVERFLOW_OPS: tuple[str, ...] = (
    "LRN",
    "Pow",
    "Exp",
    "Log",
    "Softmax",
    "LogSoftmax",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL2",
    "ReduceLogSumExp",
    "ReduceMean",
    "ReduceProd",
    "LayerNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "LpNormalization",
    "MeanVarianceNormalization",
)

FP16_MAX = 65504.0
FP16_MIN_POSITIVE = 1e-7


def converter_version() -> str:
    """The installed onnxconverter-common version."""
    return metadata.version("onnxconverter-common")


def fp32_ops() -> list[str]:
    """Every op type kept in FP32: the converter's default block list plus :data:`OVERFLOW_OPS`."""
    from onnxconverter_common import float16

    return sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(OVERFLOW_OPS))


def convert_fp16(src: str | Path, dst: str | Path) -> dict[str, Any]:
    """Convert the FP32 ONNX file ``src`` to mixed FP16 at ``dst`` (written atomically).

    Returns:
        The converter record for the manifest: name, version, options, and :func:`describe_fp16`
        of the result.

    Raises:
        ArtifactError: ``src`` is not a readable ONNX model, or the result fails onnx.checker.
    """
    import onnx
    from onnxconverter_common import float16

    try:
        model = onnx.load(str(src))
    except Exception as exc:  # onnx raises DecodeError, OSError, ValueError...
        raise ArtifactError(f"cannot read FP32 ONNX file {src}: {first_line(exc)}") from None
    block = fp32_ops()
    with warnings.catch_warnings():
        # the converter warns once per clamped constant; we report the count instead
        warnings.simplefilter("ignore")
        converted = float16.convert_float_to_float16(
            model,
            min_positive_val=FP16_MIN_POSITIVE,
            max_finite_val=FP16_MAX,
            keep_io_types=True,
            op_block_list=block,
        )
    # The converter leaves the old float32 value_info of blocked nodes' outputs beside the new
    # float16 one, and ONNX Runtime then rejects the graph; drop them all and infer them afresh.
    del converted.graph.value_info[:]
    try:
        converted = onnx.shape_inference.infer_shapes(converted, check_type=True)
        onnx.checker.check_model(converted)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ArtifactError(f"FP16 conversion of {src} is invalid: {first_line(exc)}") from None
    with atomic_path(dst, suffix=".onnx") as tmp:
        onnx.save(converted, str(tmp))
    return {
        "converter": CONVERTER,
        "converter_version": converter_version(),
        "mode": "onnxconverter",
        "function": "onnxconverter_common.float16.convert_float_to_float16",
        "options": {
            "keep_io_types": True,
            "min_positive_val": FP16_MIN_POSITIVE,
            "max_finite_val": FP16_MAX,
            "op_block_list": block,
        },
        "graph": describe_fp16(dst),
    }


def describe_fp16(onnx_path: str | Path) -> dict[str, Any]:
    """What precision a converted graph actually holds (used by tests and the manifest).

    Keys: ``inputs``/``outputs`` ({name: elem type name}), ``initializers`` (count per elem type),
    ``casts`` (number of Cast nodes), ``fp32_nodes`` (op types computing in FP32, with counts),
    ``fp16_nodes`` (number of nodes with an FP16 output).
    """
    import onnx
    from onnx import TensorProto

    model = onnx.load(str(onnx_path))
    g = model.graph
    name = TensorProto.DataType.Name

    def elem(vi: Any) -> str:
        return str(name(vi.type.tensor_type.elem_type))

    inits: dict[str, int] = {}
    for t in g.initializer:
        inits[name(t.data_type)] = inits.get(name(t.data_type), 0) + 1
    typed = {vi.name: vi.type.tensor_type.elem_type for vi in (*g.value_info, *g.output)}
    if not g.value_info:
        typed.update(
            {vi.name: vi.type.tensor_type.elem_type for vi in _inferred(model).graph.value_info}
        )
    fp16_nodes = 0
    fp32_nodes: dict[str, int] = {}
    for node in g.node:
        if node.op_type == "Cast":
            continue
        types = {typed.get(o) for o in node.output}
        if TensorProto.FLOAT16 in types:
            fp16_nodes += 1
        elif TensorProto.FLOAT in types:
            fp32_nodes[node.op_type] = fp32_nodes.get(node.op_type, 0) + 1
    return {
        "inputs": {vi.name: elem(vi) for vi in g.input},
        "outputs": {vi.name: elem(vi) for vi in g.output},
        "initializers": inits,
        "casts": sum(1 for n in g.node if n.op_type == "Cast"),
        "fp16_nodes": fp16_nodes,
        "fp32_nodes": fp32_nodes,
    }


def _inferred(model: Any) -> Any:
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort for a description
        return model
