"""PyTorch -> ONNX: the torch.export-based (dynamo) exporter first, TorchScript only as fallback.

The dynamo exporter's operator library is written at opset 18 and reaches other opsets through
a version converter; when that converter cannot produce the requested opset the exporter
silently keeps 18, so the produced opset is checked and treated as a failure.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnbench.batch import BatchRange
from cnnbench.errors import ArtifactError, InvalidInputError, first_line
from cnnbench.export.graph import opset_of, quiet

if TYPE_CHECKING:
    import onnx
    import torch
    from torch import nn

#: the dynamo exporter's native opset (torch.onnx's TORCHLIB_OPSET): no version conversion, and
#: within what TensorRT 10, OpenVINO and ONNX Runtime all accept
DEFAULT_OPSET = 18
MIN_OPSET = 7
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
#: dynamic exports trace with this batch: 0 and 1 would be specialised by torch.export
TRACE_BATCH = 2


@dataclass(frozen=True)
class Exported:
    """An in-memory export: the proto and which exporter made it."""

    proto: onnx.ModelProto
    exporter: str  # "dynamo" | "torchscript"
    notes: tuple[str, ...] = ()


def max_opset() -> int:
    """The highest opset this torch's exporter can write."""
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_MAX_OPSET", 23))


def resolve_opset(opset: int | None) -> int:
    """Validate ``opset`` (None -> DEFAULT_OPSET); out of range raises InvalidInputError."""
    if opset is None:
        return DEFAULT_OPSET
    hi = max_opset()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= hi:
        import torch

        raise InvalidInputError(
            f"opset {opset} cannot be produced by torch {torch.__version__}'s ONNX exporter; "
            f"choose {MIN_OPSET}..{hi} (default {DEFAULT_OPSET})"
        )
    return opset


def example_input(input_shape: tuple[int, ...], batch: BatchRange, dynamic: bool) -> torch.Tensor:
    """A deterministic example input (values do not matter to the graph, only the shape)."""
    import torch

    n = TRACE_BATCH if dynamic else batch.opt
    gen = torch.Generator().manual_seed(0)
    return torch.randn((n, *input_shape), generator=gen)


def export_module(
    module: nn.Module,
    input_shape: tuple[int, ...],
    *,
    opset: int,
    batch: BatchRange,
    dynamic: bool,
) -> Exported:
    """Export ``module`` (in eval mode) to an in-memory ONNX proto at exactly ``opset``.

    Raises:
        ArtifactError: neither exporter could produce the model at ``opset``.
    """
    x = example_input(input_shape, batch, dynamic)
    try:
        proto = _dynamo(module, x, opset, dynamic)
    except Exception as exc:  # the exporter raises many types; all mean "try the fallback"
        dynamo_err = first_line(exc)
    else:
        got = opset_of(proto)
        if got == opset:
            return Exported(proto, "dynamo")
        dynamo_err = f"produced opset {got} instead of {opset}"
    if opset > _torchscript_max_opset():
        raise ArtifactError(
            f"cannot export at opset {opset}: dynamo exporter {dynamo_err}; "
            f"the TorchScript exporter stops at {_torchscript_max_opset()}"
        )
    try:
        proto = _torchscript(module, x, opset, dynamic)
    except Exception as exc:
        raise ArtifactError(
            f"cannot export at opset {opset}: dynamo exporter: {dynamo_err}; "
            f"TorchScript exporter: {first_line(exc)}"
        ) from None
    return Exported(proto, "torchscript", (f"dynamo exporter: {dynamo_err}",))


def _dynamo(module: nn.Module, x: torch.Tensor, opset: int, dynamic: bool) -> onnx.ModelProto:
    import torch

    # positional form: no need to know what the model's forward calls its input
    shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic else None
    with quiet(), torch.no_grad():
        program = torch.onnx.export(
            module,
            (x,),
            None,
            dynamo=True,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=shapes,
            optimize=True,
            external_data=False,
            verbose=False,
        )
        if program is None:
            raise RuntimeError("the dynamo exporter returned no program")
        return program.model_proto


def _torchscript(module: nn.Module, x: torch.Tensor, opset: int, dynamic: bool) -> onnx.ModelProto:
    import onnx
    import torch

    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic else None
    buf = io.BytesIO()
    with quiet(), torch.no_grad():
        torch.onnx.export(
            module,
            (x,),
            buf,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    return onnx.load_from_string(buf.getvalue())


def _torchscript_max_opset() -> int:
    from torch.onnx import _constants

    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 17))
