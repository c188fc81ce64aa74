"""Where Q/DQ goes in an INT8 graph, the way TensorRT fuses it (the other targets' variants
are in :mod:`export.int8`'s ``TARGET_OPTIONS`` and :mod:`export.qdq_check`).

The rules (TensorRT's explicit-quantization guidance, as ModelOpt applies it):

1. The activation input and the weight of every weighted op (Conv, ConvTranspose, Gemm,
   MatMul) are quantized, except a convolution whose channels TensorRT has no kernel for in
   that precision that gains on (:mod:`export.qdq_convs`, the test ModelOpt applies: for INT8
   fewer than 16 input or output channels outside a few cases; for FP8 16 or fewer, or a
   filter larger than 32 taps), which stays float.
2. A weighted op's output is not quantized, except where that output is the identity branch of
   a residual Add (a downsample projection): TensorRT fuses Conv(+BN)+ReLU and Conv+Add+ReLU
   only when the conv output stays unquantized.
3. A residual Add (two computed inputs) has exactly one quantized input, its identity branch,
   so the other branch fuses into its convolution.
4. Pooling gets no Q/DQ of its own: TensorRT moves a Q/DQ pair across max pooling (they
   commute), so a pool between two quantized convs runs in INT8 without one; average pooling in
   front of the classifier is left in the float precision.
5. The network's outputs stay float: no DequantizeLinear produces a graph output (logits
   quantized to 8 bits tie at the top-k boundary).

:func:`residual_adds` finds the Adds and their identity branch; :func:`quantize_identities`
applies rule 3 after a quantizer that only knows rules 1 and 2; :func:`float_outputs` makes
rule 5 true for a quantizer that quantizes the logits; :func:`export.qdq_check.check_placement`
checks a finished file against all five and says what breaks them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
POOLING_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")
#: ops a conv's output passes through on its way to an Add and still fuses (BN before folding)
_FUSABLE_BETWEEN = ("BatchNormalization",)


@dataclass(frozen=True)
class ResidualAdd:
    """An Add of two computed tensors: ``identity`` is quantized, ``branch`` fuses."""

    node: str
    identity: str
    branch: str
    identity_from_weighted_op: bool  # the identity is a projection (a conv's output)


class _Graph:
    def __init__(self, graph: Any) -> None:
        self.g = graph
        self.inits = {t.name for t in graph.initializer}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)

    def constant(self, name: str) -> bool:
        node = self.producer.get(name)
        return name in self.inits or (node is not None and node.op_type == "Constant")

    def source(self, name: str) -> str:
        """The tensor behind Q/DQ pairs (``x`` for ``DQ(Q(x))``)."""
        node = self.producer.get(name)
        while node is not None and node.op_type == "DequantizeLinear":
            q = self.producer.get(node.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                break
            name = q.input[0]
            node = self.producer.get(name)
        return name

    def from_dq(self, name: str) -> bool:
        """Whether tensor ``name`` is a DequantizeLinear's output."""
        node = self.producer.get(name)
        return node is not None and node.op_type == "DequantizeLinear"

    def weighted_output(self, name: str) -> bool:
        node = self.producer.get(self.source(name))
        while node is not None and node.op_type in _FUSABLE_BETWEEN:
            node = self.producer.get(node.input[0])
        return node is not None and node.op_type in WEIGHTED_OPS

    def depth(self, start: str, stop: set[str]) -> dict[str, int]:
        """Weighted ops met walking back from ``start``: tensor -> count, until ``stop``."""
        seen: dict[str, int] = {}
        todo: deque[tuple[str, int]] = deque([(self.source(start), 0)])
        while todo:
            name, d = todo.popleft()
            if name in seen or self.constant(name):
                continue
            seen[name] = d
            node = self.producer.get(name)
            if node is None or name in stop:
                continue
            step = 1 if node.op_type in WEIGHTED_OPS else 0
            for i in node.input:
                if i and not self.constant(i):
                    todo.append((self.source(i), d + step))
        return seen


def residual_adds(graph: Any) -> list[ResidualAdd]:
    """Every Add of two computed tensors, with its identity branch chosen by the rules.

    One input from a weighted op and one not: the other is the identity. Both from weighted
    ops (a projection shortcut): the identity is the branch with fewer weighted ops back to
    where the two branches meet (ResNet's downsample conv against its two or three convs).
    Neither: no branch fuses, and the Add is left alone (not returned).
    """
    gr = _Graph(graph)
    out: list[ResidualAdd] = []
    for node in graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        a, b = node.input
        if gr.constant(a) or gr.constant(b):
            continue
        wa, wb = gr.weighted_output(a), gr.weighted_output(b)
        if not (wa or wb):
            continue
        if wa != wb:
            identity, branch = (b, a) if wa else (a, b)
        else:
            da, db = gr.depth(a, set()), gr.depth(b, set())
            common = [t for t in da if t in db]
            meet = min(common, key=lambda t: da[t] + db[t]) if common else None
            ca = da[meet] if meet is not None else len(da)
            cb = db[meet] if meet is not None else len(db)
            identity, branch = (a, b) if ca <= cb else (b, a)
        out.append(ResidualAdd(node.name, identity, branch, gr.weighted_output(identity)))
    return out


def _scale(ranges_path: Path, tensor: str) -> float | None:
    from onnxruntime.quantization import load_tensors_data

    rng = load_tensors_data(ranges_path).data.get(tensor)
    if rng is None:
        return None
    lo, hi = np.asarray(rng.range_value, dtype=np.float64).reshape(-1)[:2]
    amax = float(max(abs(lo), abs(hi)))
    return amax / 127.0 if amax > 0 else None


def quantize_identities(path: Path, ranges_path: Path) -> dict[str, int]:
    """Rule 3 on a quantized file in place: each residual Add reads its identity branch through
    a Q/DQ pair (the one its other consumers already use, else a new one from the calibrated
    range) and its other branch unquantized. Returns counts of what changed."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    gr = _Graph(g)
    adds = {a.node: a for a in residual_adds(g)}
    already = reused = inserted = unquantized = 0
    new_nodes: dict[str, list[Any]] = {}  # after which tensor's producer
    for node in g.node:
        add = adds.get(node.name)
        if add is None:
            continue
        for k, name in enumerate(node.input):
            src = gr.source(name)
            if name == add.branch:
                if src != name:  # the fusing branch must stay unquantized
                    node.input[k] = src
                    unquantized += 1
                continue
            if src != name:
                already += 1  # the quantizer already reads it through its Q/DQ pair
                continue
            shared = _existing_dq(gr, src)
            if shared is not None:
                node.input[k] = shared
                reused += 1
                continue
            scale = _scale(ranges_path, src)
            if scale is None:
                continue  # no calibrated range: leave it float rather than guess one
            base = f"{src}_identity"
            inits = [
                numpy_helper.from_array(np.array(scale, dtype=np.float32), f"{base}_scale"),
                numpy_helper.from_array(np.array(0, dtype=np.int8), f"{base}_zero_point"),
            ]
            g.initializer.extend(inits)
            q = helper.make_node(
                "QuantizeLinear", [src, inits[0].name, inits[1].name], [f"{base}_q"],
                name=f"{base}_QuantizeLinear",
            )  # fmt: skip
            d = helper.make_node(
                "DequantizeLinear", [f"{base}_q", inits[0].name, inits[1].name], [f"{base}_dq"],
                name=f"{base}_DequantizeLinear",
            )  # fmt: skip
            new_nodes.setdefault(src, []).extend([q, d])
            node.input[k] = d.output[0]
            inserted += 1
    if new_nodes:
        order: list[Any] = []
        graph_inputs = {i.name for i in g.input}
        for src in list(new_nodes):
            if src in graph_inputs:
                order.extend(new_nodes.pop(src))
        for n in g.node:
            order.append(n)
            for o in n.output:
                order.extend(new_nodes.pop(o, []))
        del g.node[:]
        g.node.extend(order)
    _prune_dead_qdq(g)
    onnx.save(model, str(path))
    return {
        "residual_adds": len(adds),
        "identity_already_quantized": already,
        "identity_reused": reused,
        "identity_inserted": inserted,
        "branch_unquantized": unquantized,
    }


def _existing_dq(gr: _Graph, src: str) -> str | None:
    """The output of a DQ(Q(src)) pair already in the graph, if there is one."""
    for q in gr.consumers.get(src, []):
        if q.op_type != "QuantizeLinear":
            continue
        for d in gr.consumers.get(q.output[0], []):
            if d.op_type == "DequantizeLinear":
                return str(d.output[0])
    return None


def _prune_dead_qdq(g: Any) -> None:
    """Drop Q/DQ nodes whose outputs nothing reads any more (after a branch was unquantized)."""
    outputs = {o.name for o in g.output}
    while True:
        used = {i for n in g.node for i in n.input} | outputs
        dead = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]  # fmt: skip
        if not dead:
            return
        for n in dead:
            g.node.remove(n)


def float_outputs(path: Path) -> int:
    """Rule 5 on a quantized file in place: a graph output produced through a
    QuantizeLinear -> DequantizeLinear pair is produced by the tensor before the pair instead
    (logits quantized to 8 bits tie at the top-k boundary). Returns how many outputs changed."""
    import onnx

    model = onnx.load(str(path))
    g = model.graph
    gr = _Graph(g)
    changed = 0
    for out in g.output:
        src = gr.source(out.name)
        if src == out.name:
            continue
        node = gr.producer.get(src)
        if node is None:  # the pair quantizes a graph input: nothing to rewire to
            continue
        for k, name in enumerate(node.output):
            if name == src:
                node.output[k] = out.name
        for n in g.node:  # the tensor's other readers follow it
            for k, name in enumerate(n.input):
                if name == src:
                    n.input[k] = out.name
        dq = gr.producer[out.name]
        dq.output[0] = f"{out.name}_unused_dq"
        changed += 1
    if changed:
        _prune_dead_qdq(g)
        used = {i for n in g.node for i in n.input}
        for init in [t for t in g.initializer if t.name not in used]:
            g.initializer.remove(init)  # the pair's scale and zero point
        onnx.save(model, str(path))
    return changed
