"""Shape-only shortcuts for building and running models on the meta device.

PyTorch computes the meta outputs of pointwise ops, batch norm and random initialisers with
Python reference decompositions (about a millisecond each) and a zoo model needs thousands of
them. Shapes are all the analysis needs, so these shortcuts produce the same shapes, dtypes and
strides directly; anything they do not recognise goes to the real meta kernel.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Pointwise ops whose float result has the broadcast shape and the (common) input dtype.
_POINTWISE = {
    "relu", "relu_", "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "tanh",
    "tanh_", "sigmoid", "sigmoid_", "hardtanh", "hardtanh_", "clamp", "clamp_", "clamp_min",
    "clamp_min_", "pow", "neg", "exp", "sqrt", "rsqrt", "silu", "silu_", "gelu", "leaky_relu",
    "leaky_relu_", "threshold", "abs", "elu", "elu_",
}  # fmt: skip


def leaves(obj: Any) -> list[Any]:
    """The leaves of nested tuples, lists and dicts (ATen arguments and results): a cheaper
    ``tree_flatten`` for the few container types ops use."""
    out: list[Any] = []
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, (tuple, list)):
            stack.extend(reversed(o))
        elif isinstance(o, dict):
            stack.extend(reversed(list(o.values())))
        else:
            out.append(o)
    return out


def _tensors(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    return [a for a in leaves((args, kwargs)) if isinstance(a, torch.Tensor)]


def _all_meta(ts: list[torch.Tensor]) -> bool:
    return bool(ts) and all(t.device.type == "meta" for t in ts)


def fast_meta_op(func: Any, args: tuple, kwargs: dict) -> Any:
    """The result of ``func`` on meta tensors without its slow meta kernel, or NotImplemented."""
    name = func.overloadpacket.__name__
    ts = _tensors(args, kwargs)
    if not _all_meta(ts):
        return NotImplemented
    if name in _POINTWISE:
        dtypes = {t.dtype for t in ts}
        if len(dtypes) != 1 or not ts[0].is_floating_point():
            return NotImplemented
        shape = torch.broadcast_shapes(*(t.shape for t in ts))
        if name.endswith("_"):
            self = args[0]
            if not isinstance(self, torch.Tensor) or self.shape != shape:
                return NotImplemented
            return self
        like = next((t for t in ts if t.shape == shape), None)
        if like is not None:
            return torch.empty_like(like)
        return torch.empty(shape, dtype=ts[0].dtype, device="meta")
    if name == "native_batch_norm" and isinstance(args[0], torch.Tensor) and args[0].dim() >= 2:
        x = args[0]
        stats = torch.empty((x.shape[1],), dtype=x.dtype, device="meta")
        return torch.empty_like(x), stats, torch.empty_like(stats)
    return NotImplemented


class SkipMetaInit(TorchDispatchMode):
    """While building on the meta device: in-place ops on meta tensors (the initialisers'
    ``normal_``, ``uniform_``, ``copy_``, ...) return their target unchanged, as a meta
    kernel would, minus its cost."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        schema = func._schema
        if (
            schema.is_mutable
            and func.overloadpacket.__name__.endswith("_")
            and args
            and isinstance(args[0], torch.Tensor)
            and _all_meta(_tensors(args, kwargs))
        ):
            return args[0]
        return func(*args, **kwargs)
