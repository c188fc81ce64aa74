"""The traced forward behind :func:`cnnbench.analysis.analyze`: one row per layer call.

Hooks on every module keep a stack of the layer being run; the receptive-field tracer reports
each ATen op, whose MACs and connections go to that layer (or, for a conv/linear/pool op run
directly in a container's ``forward``, to a row of its own named ``module:op``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cnnbench.errors import InvalidInputError, first_line
from cnnbench.meta_fast import leaves
from cnnbench.receptive_field import RF, OpEvent, RFTracer, apply_window

if TYPE_CHECKING:
    from torch import nn


class NeedsValues(Exception):
    """A forward on the meta device hit an op that needs real tensor values."""


@dataclass
class LayerStats:
    """One row of the analysis: a leaf module call (or a functional conv/linear/pool op)."""

    name: str
    type: str
    kind: str  # input | conv | linear | pool | custom | elementwise
    output_shape: tuple[int, ...]
    params: int = 0
    weights: int = 0
    connections: int = 0
    macs: int = 0
    activations: int = 0
    rf: RF | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "kind": self.kind,
            "output_shape": list(self.output_shape),
            "params": self.params,
            "weights": self.weights,
            "connections": self.connections,
            "macs": self.macs,
            "activations": self.activations,
            "rf_size": None,
            "rf_jump": None,
            "rf_start": None,
        }
        if self.rf is not None:
            i = self.rf.main_axis()
            d.update(rf_size=self.rf.size[i], rf_jump=self.rf.jump[i], rf_start=self.rf.start[i])
            d.update(rf_size_axes=list(self.rf.size), rf_jump_axes=list(self.rf.jump))
            d["rf_start_axes"] = list(self.rf.start)
        return d


@dataclass
class _Frame:
    name: str
    module: Any
    macs: int = 0
    connections: int = 0
    kinds: set[str] = field(default_factory=set)


def _op_counts(ev: OpEvent) -> tuple[int, int]:
    """(MACs, connections) of one op for a batch-1 input."""
    out = ev.outputs[0].numel() if ev.outputs else 0
    a = ev.args
    if ev.kind == "conv":
        w = a["weight"]
        taps = math.prod(w.shape[1:])
        if a.get("transposed"):
            return a["input"].numel() * taps, a["input"].numel() * taps
        return out * taps, out * (taps + (a.get("bias") is not None))
    if ev.kind == "linear":
        first = {"addmm": "mat1", "baddbmm": "batch1", "linear": "input"}.get(ev.name, "self")
        k = a[first].shape[-1]
        bias = ev.name in ("addmm", "baddbmm") or (
            ev.name == "linear" and a.get("bias") is not None
        )
        return out * k, out * (k + bias)
    if ev.kind in ("pool", "reduce") and math.prod(ev.window) > 1:
        return 0, out * math.prod(ev.window)
    return 0, 0


class _LayerRecorder:
    """The hooks' shared state during the traced forward: the stack of modules being run, the
    frames of the reported layers among them, and the rows they make. ``on_op`` is the
    tracer's callback; ``pre_all`` / ``post_all`` are every module's forward hooks."""

    def __init__(self, model: nn.Module, name: str, shape: tuple[int, ...]) -> None:
        self.name = name
        head = LayerStats("input", "Input", "input", shape, activations=math.prod(shape))
        head.rf = RF.input(shape[1:])
        self.rows = [head]
        self.frames: list[_Frame] = []
        self.all_stack: list[str] = []
        self.executed: set[int] = set()
        self.names = {id(m): n or name for n, m in model.named_modules()}
        self.tracer = RFTracer(len(shape) - 1, self.on_op)
        self.reported = _reported_modules(model)

    def on_op(self, ev: OpEvent) -> None:
        macs, conn = _op_counts(ev)
        kind = ev.kind
        if kind in ("pool", "reduce"):  # a window over channels only (LRN) is no pooling
            kind = "pool" if conn else "other"
        if self.frames:
            self.frames[-1].macs += macs
            self.frames[-1].connections += conn
            self.frames[-1].kinds.add(kind)
        elif macs or conn:
            where = self.all_stack[-1] if self.all_stack else self.name
            out = ev.outputs[0]
            shape = tuple(out.shape[1:])
            row = LayerStats(f"{where}:{ev.name}", ev.name, kind, shape, macs=macs)
            row.connections, row.activations = conn, math.prod(shape)
            row.rf = self.tracer.rf_of(out)
            self.rows.append(row)

    def pre_all(self, m: Any, args: Any) -> None:
        self.executed.add(id(m))
        self.all_stack.append(self.names[id(m)])
        if id(m) in self.reported:
            self.frames.append(_Frame(self.names[id(m)], m))

    def post_all(self, m: Any, args: Any, output: Any) -> None:
        self.all_stack.pop()
        if id(m) in self.reported:
            self.tracer.paused = True
            try:
                row = _row(self.frames.pop(), args, output, self.tracer, leaves)
                if row is not None:  # a module that returns no tensor is no layer
                    self.rows.append(row)
            finally:
                self.tracer.paused = False


def trace(model: nn.Module, name: str, shape: tuple[int, ...]) -> tuple[list, dict, list]:
    """Run ``model`` once on a batch-1 zero input of ``shape`` where its parameters live.

    Returns:
        (rows starting with the input row, totals, notes). Raises NeedsValues when a meta
        forward needs real values, InvalidInputError when the model cannot run on ``shape``.
    """
    import torch

    rec = _LayerRecorder(model, name, shape)
    tracer = rec.tracer
    handles = []
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(rec.pre_all))
        handles.append(m.register_forward_hook(rec.post_all))
    modes = {m: m.training for m in model.modules()}
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros((1, *shape), device=device, dtype=dtype)
    tracer.mark_input(x)
    try:
        model.eval()
        with torch.no_grad(), tracer:
            model(x)
    except NotImplementedError as exc:
        if x.device.type == "meta":
            raise NeedsValues(first_line(exc, 120) if str(exc).strip() else "") from None
        raise InvalidInputError(f"{name} cannot be analysed: {exc}") from None
    except (RuntimeError, ValueError, IndexError) as exc:
        raise InvalidInputError(f"{name} cannot run on input {shape}: {first_line(exc)}") from None
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return rec.rows, _totals(model, rec.rows, rec.executed), sorted(set(tracer.notes))


def _reported_modules(model: nn.Module) -> set[int]:
    """Leaf modules, and modules with ``cnnbench_counts`` (whose children are not reported)."""
    out: set[int] = set()

    def walk(m: Any) -> None:
        children = list(m.children())
        if hasattr(m, "cnnbench_counts") or not children:
            out.add(id(m))
            return
        for c in children:
            walk(c)

    walk(model)
    return out


def _row(
    frame: _Frame, args: Any, output: Any, tracer: RFTracer, flatten: Any
) -> LayerStats | None:
    m = frame.module
    outs = [t for t in flatten(output) if hasattr(t, "shape")]
    ins = [t for t in flatten(args) if hasattr(t, "shape")]
    if not outs:
        return None
    out = outs[0]
    rf = tracer.rf_of(out)
    if hasattr(m, "cnnbench_counts"):
        counts = m.cnnbench_counts(ins[0] if ins else None, out)
        macs, conn = int(counts["macs"]), int(counts["connections"])
        kind = "custom" if macs or conn else "elementwise"
        in_rf = tracer.rf_of(ins[0]) if ins else None
        if rf is None and in_rf is not None and hasattr(m, "kernel_size"):
            rf = apply_window(in_rf, [m.kernel_size], [m.stride], [m.padding])
    else:
        macs, conn = frame.macs, frame.connections
        kind = next((k for k in ("conv", "linear", "pool") if k in frame.kinds), "elementwise")
        if kind == "elementwise":
            conn = 0
    trainable = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
    params = sum(p.numel() for _, p in trainable)
    weights = sum(p.numel() for n, p in trainable if not n.rsplit(".", 1)[-1].startswith("bias"))
    return LayerStats(
        frame.name, type(m).__name__, kind, tuple(out.shape[1:]), params, weights, conn, macs,
        math.prod(out.shape[1:]), rf,
    )  # fmt: skip


def _totals(model: nn.Module, rows: list[LayerStats], executed: set[int]) -> dict[str, int]:
    used: dict[int, Any] = {}
    for m in model.modules():
        if id(m) in executed:
            for p in m.parameters(recurse=False):
                if p.requires_grad:
                    used[id(p)] = p
    every = {id(p): p for p in model.parameters() if p.requires_grad}
    macs = sum(r.macs for r in rows)
    return {
        "params": sum(p.numel() for p in used.values()),
        "params_all": sum(p.numel() for p in every.values()),
        "weights": sum(
            p.numel()
            for n, p in model.named_parameters()
            if id(p) in used and not n.rsplit(".", 1)[-1].startswith("bias")
        ),  # fmt: skip
        "connections": sum(r.connections for r in rows),
        "macs": macs,
        "flops": 2 * macs,
        "activations": sum(r.activations for r in rows if r.kind == "input" or r.connections),
    }
