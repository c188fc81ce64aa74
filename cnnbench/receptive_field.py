"""Receptive-field arithmetic, and a tracer that carries it along a network's real dataflow.

For a layer with kernel k, stride s, padding p and dilation d applied to a map whose units see
r input pixels, are j input pixels apart and whose first unit is centred at c::

    k_eff = d (k - 1) + 1,   r' = r + (k_eff - 1) j,   j' = j s,   c' = c + ((k_eff - 1)/2 - p) j

Coordinates are input pixels; pixel i covers [i, i + 1), so the input's own units have
r = 1, j = 1, c = 0.5.

:class:`RFTracer` is a ``TorchDispatchMode`` that attaches a receptive field to every tensor
computed from the input, op by op at the ATen level, so branches (Inception) and shortcuts
(ResNet) are followed exactly: ops that merge tensors (add, cat, mul) take the largest field per
axis; convolutions and pooling apply the formula; padding shifts the start; any other op that
changes the spatial size (global/adaptive pooling, mean over H and W, flatten before a linear
layer) is treated as a window of stride ``in // out`` that spans the rest of the map, so a
unit after global pooling or a fully connected layer sees what the arithmetic gives: the whole
map's field, which can exceed the image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode

from cnnbench.meta_fast import fast_meta_op, leaves

INPUT_START = 0.5


@dataclass(frozen=True)
class RF:
    """Receptive field per spatial axis (H, W for images): size, jump and first-unit centre.

    ``shape`` is the spatial size of the map the field belongs to, or None once the spatial
    axes have been flattened away (after a linear layer's flatten).
    """

    size: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[float, ...]
    shape: tuple[int, ...] | None

    @classmethod
    def input(cls, spatial: Sequence[int]) -> RF:
        n = len(spatial)
        return cls((1,) * n, (1,) * n, (INPUT_START,) * n, tuple(spatial))

    def main_axis(self) -> int:
        """The axis with the largest field (first on ties): the one a scalar report shows."""
        return max(range(len(self.size)), key=lambda i: (self.size[i], -i))


def apply_window(
    rf: RF,
    kernel: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int] | None = None,
    shape: tuple[int, ...] | None = None,
) -> RF:
    """The field after one window op (conv or pooling), per axis; ``shape`` is its output size."""
    n = len(rf.size)
    k, s, p = _per_axis(kernel, n), _per_axis(stride, n), _per_axis(padding, n)
    d = _per_axis(dilation or [1], n)
    size, jump, start = [], [], []
    for i in range(n):
        k_eff = d[i] * (k[i] - 1) + 1
        size.append(rf.size[i] + (k_eff - 1) * rf.jump[i])
        jump.append(rf.jump[i] * s[i])
        start.append(rf.start[i] + ((k_eff - 1) / 2 - p[i]) * rf.jump[i])
    return RF(tuple(size), tuple(jump), tuple(start), shape)


def chain(layers: Sequence[tuple[int, int, int]], *, axes: int = 1) -> list[RF]:
    """Fields after each (kernel, stride, padding) layer of a plain stack, starting at the input."""
    rf, out = RF.input((0,) * axes), []
    for k, s, p in layers:
        rf = apply_window(rf, [k], [s], [p])
        out.append(rf)
    return out


def merge(fields: Sequence[RF], shape: tuple[int, ...] | None) -> RF:
    """Fields merging in one op (add, cat, mul): per axis, the largest field wins."""
    best = []
    for i in range(len(fields[0].size)):
        top = fields[0]
        for f in fields[1:]:
            if f.size[i] > top.size[i]:
                top = f
        best.append(top)
    return RF(
        tuple(b.size[i] for i, b in enumerate(best)),
        tuple(b.jump[i] for i, b in enumerate(best)),
        tuple(b.start[i] for i, b in enumerate(best)),
        shape,
    )


def _per_axis(v: Any, n: int) -> list[int]:
    vals = [int(x) for x in v] if isinstance(v, (list, tuple)) else [int(v)]
    if not vals:
        return [1] * n
    if len(vals) < n:
        vals = vals * n if len(vals) == 1 else [1] * (n - len(vals)) + vals
    return vals[-n:]


@dataclass
class OpEvent:
    """One ATen op that touched the traced data: what the counting code needs to know."""

    name: str
    args: dict[str, Any]
    inputs: list[Any]
    outputs: list[Any]
    kind: str  # conv | linear | pool | reduce | other
    window: tuple[int, ...] = ()  # spatial window of a pool/reduce op


_LINEAR_OPS = {"addmm", "mm", "bmm", "baddbmm", "linear", "matmul"}
_VIEW_OPS = {"view", "_unsafe_view", "reshape", "flatten", "squeeze", "unsqueeze", "permute",
             "expand", "clone", "select", "slice", "index_select", "contiguous", "alias",
             "_reshape_alias", "t", "transpose", "detach", "as_strided"}  # fmt: skip


class RFTracer(TorchDispatchMode):
    """Carries an :class:`RF` on every tensor derived from ``start``; reports each op.

    Tensors are kept alive in the table, so ids stay unique and the Python objects the model
    sees are the ones holding the fields (on the meta device this costs no memory).
    """

    def __init__(self, axes: int, on_op: Callable[[OpEvent], None] | None = None) -> None:
        super().__init__()
        self.axes = axes
        self.on_op = on_op
        self._rf: dict[int, tuple[Any, RF]] = {}
        self.notes: list[str] = []
        self.paused = False  # set while the caller inspects tensors (e.g. inside a hook)
        self.fast_meta = True  # shape-only shortcuts for meta tensors (cnnbench.meta_fast)

    def mark_input(self, t: Any) -> None:
        self._rf[id(t)] = (t, RF.input(tuple(t.shape[-self.axes :])))

    def rf_of(self, t: Any) -> RF | None:
        hit = self._rf.get(id(t))
        return hit[1] if hit is not None and hit[0] is t else None

    def set_rf(self, t: Any, rf: RF) -> None:
        self._rf[id(t)] = (t, rf)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = fast_meta_op(func, args, kwargs) if self.fast_meta else NotImplemented
        if out is NotImplemented:
            out = func(*args, **kwargs)
        if self.paused:
            return out
        flat_in = [a for a in leaves((args, kwargs)) if self.rf_of(a) is not None]
        if not flat_in:
            return out
        name = func.overloadpacket.__name__
        named = _named_args(func, args, kwargs)
        outs = [o for o in leaves(out) if hasattr(o, "shape")]
        event = OpEvent(name, named, flat_in, outs, "other")
        rf = self._propagate(event, flat_in, outs)
        for o in outs:
            self.set_rf(o, rf)
        if self.on_op is not None:
            self.on_op(event)
        return out

    def _propagate(self, ev: OpEvent, inputs: list[Any], outs: list[Any]) -> RF:
        n = self.axes
        first = inputs[0]
        rf0 = self.rf_of(first)
        assert rf0 is not None
        out_shape = tuple(outs[0].shape[-n:]) if outs and outs[0].dim() >= n + 2 else None
        if ev.name == "convolution" and rf0.shape is not None:
            a = ev.args
            ev.kind = "conv"
            if a.get("transposed"):
                self.notes.append("transposed convolution: receptive field not tracked")
                return replace(rf0, shape=out_shape)
            k = list(a["weight"].shape[2:])
            return apply_window(rf0, k, a["stride"], a["padding"], a["dilation"], out_shape)
        if "pool" in ev.name and "adaptive" not in ev.name and "backward" not in ev.name:
            a = ev.args
            k = _per_axis(a["kernel_size"], n)
            stride = a.get("stride") or k
            ev.kind, ev.window = "pool", tuple(k)
            if rf0.shape is not None:
                return apply_window(
                    rf0, k, stride, a.get("padding", 0), a.get("dilation"), out_shape
                )
        if ev.name == "constant_pad_nd" and rf0.shape is not None:
            pad = list(ev.args["pad"])
            left = [pad[2 * i] if 2 * i < len(pad) else 0 for i in range(n)][::-1]
            start = tuple(c - p * j for c, p, j in zip(rf0.start, left, rf0.jump, strict=True))
            return RF(rf0.size, rf0.jump, start, out_shape)
        if ev.name in _LINEAR_OPS:
            ev.kind = "linear"
        parts = []
        for t in inputs:
            rf = self.rf_of(t)
            assert rf is not None
            parts.append(self._resize(ev, rf, t, outs[0] if outs else None))
        return merge(parts, out_shape if any(p.shape is not None for p in parts) else None)

    def _resize(self, ev: OpEvent, rf: RF, t: Any, out: Any) -> RF:
        # An op that keeps the spatial size keeps the field; one that shrinks or flattens it acts
        # as a window of stride in // out spanning the map (global pooling, mean, flatten).
        n = self.axes
        if rf.shape is None or out is None:
            return rf
        same_rank = out.dim() == t.dim() and out.dim() >= n + 2
        if out.dim() >= n and tuple(out.shape[-n:]) == rf.shape:
            return rf
        ins = rf.shape
        outs = tuple(out.shape[-n:]) if same_rank else (1,) * n
        if any(o > i for i, o in zip(ins, outs, strict=True)):
            self.notes.append(f"{ev.name} enlarges the map: receptive field kept")
            return replace(rf, shape=outs)
        stride = [max(1, i // o) for i, o in zip(ins, outs, strict=True)]
        kernel = [i - (o - 1) * s for i, o, s in zip(ins, outs, stride, strict=True)]
        if ev.name not in _VIEW_OPS and ev.kind == "other":
            ev.kind, ev.window = ("pool" if "adaptive" in ev.name else "reduce"), tuple(kernel)
        return apply_window(rf, kernel, stride, [0] * n, None, outs if same_rank else None)


def _named_args(func: Any, args: tuple, kwargs: dict) -> dict[str, Any]:
    named: dict[str, Any] = {}
    for i, a in enumerate(func._schema.arguments):
        if i < len(args):
            named[a.name] = args[i]
        elif a.name in kwargs:
            named[a.name] = kwargs[a.name]
        elif a.has_default_value():
            named[a.name] = a.default_value
    return named


__all__ = ["INPUT_START", "RF", "OpEvent", "RFTracer", "apply_window", "chain", "merge"]
