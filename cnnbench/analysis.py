"""Per-layer analysis of a network: parameters, connections, MACs, activations, receptive field.

One forward pass of a batch-1 input (on the meta device for zoo models, so even VGG costs no
memory) with hooks on every leaf module (and on modules that define ``cnnbench_counts``, which
count for their children) while a :class:`~cnnbench.receptive_field.RFTracer` follows the ATen
ops. The counting convention is :data:`COUNTING_CONVENTION` (also in ``cnnbench inspect
--help``). Totals count each parameter tensor once and only those the inference forward uses
(``params``; ``params_all`` counts every trainable tensor, e.g. GoogLeNet's aux heads). The
activation total adds the input and every layer with connections (conv, linear, pooling,
subsampling), not the elementwise layers (ReLU, norms) that rewrite the same maps.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnbench.analysis_trace import LayerStats, NeedsValues, trace
from cnnbench.errors import InvalidInputError
from cnnbench.meta_fast import SkipMetaInit
from cnnbench.models import get_model, get_spec
from cnnbench.weights import load_weights

if TYPE_CHECKING:
    from torch import nn

COUNTING_CONVENTION = (
    "MACs = multiply-accumulates of conv and linear layers (grouped conv per group); "
    "FLOPs = 2 x MACs; connections as in LeCun et al. 1998 (inputs + bias per unit; pooling: "
    "window per unit; activations/norms: 0); activations = output elements per sample; "
    "receptive field (size, jump, start) in input pixels; params = trainable parameters used "
    "by the inference forward (GoogLeNet's training-only aux classifiers excluded)."
)


@dataclass
class Analysis:
    """The rows of one model at one input shape, and their totals."""

    model: str
    input_shape: tuple[int, ...]
    layers: list[LayerStats]
    totals: dict[str, int]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``cnnbench inspect --format json`` contract (DESIGN.md), plus extra fields."""
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "layers": [layer.to_dict() for layer in self.layers],
            "totals": dict(self.totals),
            "convention": COUNTING_CONVENTION,
            "notes": list(self.notes),
        }


def analyze(
    model_or_name: str | nn.Module,
    *,
    input_shape: tuple[int, ...] | None = None,
    weights: str | Path | None = None,
) -> Analysis:
    """Analyse a zoo model (by name, built on the meta device) or any ``nn.Module``.

    Args:
        model_or_name: a registry name or a module (run where its parameters live).
        input_shape: one sample's (C, H, W) (or (C, L)); defaults to the spec's for a name.
        weights: a state dict checked strictly against the named model (values are not needed).

    Raises:
        UnknownNameError: unknown model name. InvalidInputError: a bad shape or a model that
        cannot run on it. WeightsError: weights that do not match.
    """
    notes: list[str] = []
    if isinstance(model_or_name, str):
        name = model_or_name
        model, shape = _build(name, weights, notes, meta=True)
        shape = tuple(input_shape) if input_shape is not None else shape
    else:
        model, name = model_or_name, type(model_or_name).__name__
        if input_shape is None:
            raise InvalidInputError("input_shape is required when analysing a module")
        shape = tuple(input_shape)
    if len(shape) < 2 or any(int(v) <= 0 for v in shape):
        raise InvalidInputError(f"input shape must be (C, H, W) with positive sizes, got {shape}")
    shape = tuple(int(v) for v in shape)
    try:
        layers, totals, more = trace(model, name, shape)
    except NeedsValues as exc:  # an op without a meta kernel, or data-dependent: use the CPU
        notes.append(f"analysed on the CPU (meta forward failed: {exc})")
        model, _ = _build(name, weights, notes, meta=False)
        layers, totals, more = trace(model, name, shape)
    return Analysis(name, shape, layers, totals, notes + more)


def _build(
    name: str, weights: str | Path | None, notes: list[str], *, meta: bool
) -> tuple[nn.Module, tuple]:
    import torch

    spec = get_spec(name)
    model = None
    if meta:
        try:
            with torch.device("meta"), SkipMetaInit():
                model = get_model(name)
        except Exception as exc:  # a builder that needs real values: analyse on the CPU
            notes.append(f"built on the CPU (meta device failed: {type(exc).__name__})")
    if model is None:
        model = get_model(name)
    if weights is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # loading into meta tensors is a (checked) no-op
            load_weights(model, weights)
    return model, tuple(spec.input_shape)


__all__ = ["COUNTING_CONVENTION", "Analysis", "LayerStats", "analyze"]
