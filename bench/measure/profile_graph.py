"""The ONNX side of a profile: which ONNX nodes a runtime layer covers, and the bytes those
nodes read and write.

A runtime names its layers in its own way: OpenVINO and TensorRT list the ONNX nodes a layer
was made from; ONNX Runtime names a node of its optimised graph, renamed by its layout passes
(``relu_3_nchwc``: a fused conv named after its chain's output tensor; ``node_Conv_293_token_1``).
:meth:`GraphFacts.cover` turns any of these into ONNX node names, so two profiles of one model
(two engines, two precisions) line up node by node.

Bytes are counted per layer at the precision it executed in: its weights (the initialisers of
its weighted nodes, through their DequantizeLinear) and the activations it reads from outside
itself and writes for others, from ONNX shape inference, times the batch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from cnnbench.errors import ArtifactError
from cnnbench.export import graph
from cnnbench.export.onnx_macs import FUSABLE_OPS, WEIGHTED_OPS, fused_outputs

#: bytes per element at an executed precision (ours: int8, fp16, ...); unknown: 4
PRECISION_BYTES = {"int8": 1.0, "fp8": 1.0, "int4": 0.5, "fp16": 2.0, "bf16": 2.0, "fp32": 4.0,
                   "int32": 4.0, "int64": 8.0}  # fmt: skip
#: how runtimes extend an ONNX node's name (ONNX Runtime's layout passes)
_RENAMED = re.compile(r"(_nchwc|_token_\d+)$")
_QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass
class GraphFacts:
    """An ONNX file's nodes, their tensors and sizes (per image), for aligning profiles."""

    op: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, list[str]] = field(default_factory=dict)
    outputs: dict[str, list[str]] = field(default_factory=dict)
    producer: dict[str, str] = field(default_factory=dict)
    consumers: dict[str, list[str]] = field(default_factory=dict)
    #: elements per image of each activation tensor (batch dimension left out)
    elems: dict[str, int] = field(default_factory=dict)
    #: elements of each initialiser (and Constant output)
    consts: dict[str, int] = field(default_factory=dict)
    #: tensor -> the weighted node whose fused chain produces it (export.onnx_macs)
    alias: dict[str, str] = field(default_factory=dict)
    #: weighted nodes in graph order
    weighted: list[str] = field(default_factory=list)
    graph_outputs: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, proto: Any) -> GraphFacts:
        model = graph.infer_shapes(proto)
        g = model.graph
        f = cls(alias=fused_outputs(model))
        for init in g.initializer:
            f.consts[init.name] = math.prod(init.dims)
        sizes = {}
        for vi in [*g.input, *g.value_info, *g.output]:
            dims = [
                d.dim_value if d.HasField("dim_value") else 0 for d in vi.type.tensor_type.shape.dim
            ]
            if dims and all(dims[1:]):
                sizes[vi.name] = math.prod(dims[1:])
        f.elems = sizes
        for i, node in enumerate(g.node):
            name = node.name or f"{node.op_type}_{i}"
            f.op[name] = node.op_type
            f.inputs[name] = [t for t in node.input if t]
            f.outputs[name] = [t for t in node.output if t]
            if node.op_type == "Constant" and node.attribute:
                f.consts[node.output[0]] = math.prod(node.attribute[0].t.dims)
            for t in f.outputs[name]:
                f.producer[t] = name
            for t in f.inputs[name]:
                f.consumers.setdefault(t, []).append(name)
            if node.op_type in WEIGHTED_OPS:
                f.weighted.append(name)
        f.graph_outputs = {o.name for o in g.output}
        return f

    # ---- a runtime layer's ONNX nodes ------------------------------------------------------
    def cover(self, names: Iterable[str]) -> list[str]:
        """The ONNX nodes a runtime layer covers, in graph order: names that are nodes; names
        a runtime renamed (suffix dropped); tensors a fused chain produces (the chain, from its
        weighted node to the tensor)."""
        found: dict[str, None] = {}
        for raw in names:
            for name in dict.fromkeys((raw, _RENAMED.sub("", raw))):
                if name in self.op:
                    found[name] = None
                elif name in self.alias:
                    found.update(dict.fromkeys(self._chain(name)))
                elif name.startswith("node_") is False and f"node_{name}" in self.op:
                    found[f"node_{name}"] = None  # a dynamo export's node named after its output
        order = {n: i for i, n in enumerate(self.op)}
        return sorted(found, key=lambda n: order[n])

    def _chain(self, tensor: str) -> list[str]:
        """The nodes from the weighted node behind ``tensor`` to the node producing it."""
        root = self.alias[tensor]
        out: list[str] = []
        node = self.producer.get(tensor)
        while node is not None and node not in out:
            out.append(node)
            if node == root or self.op[node] not in FUSABLE_OPS:
                break
            # step back along the input that leads to the same weighted node
            ins = [t for t in self.inputs[node] if self.alias.get(t) == root]
            node = self.producer.get(ins[0]) if ins else None
        return out[::-1]

    # ---- bytes -----------------------------------------------------------------------------
    def weight_elems(self, nodes: list[str]) -> int:
        """Elements of the constants the layer's weighted nodes read (through a
        DequantizeLinear, its quantized initialiser), each counted once."""
        seen: set[str] = set()
        for n in nodes:
            if self.op.get(n) not in WEIGHTED_OPS:
                continue
            for t in self.inputs[n][1:]:
                src = self.producer.get(t)
                if src is not None and self.op[src] == "DequantizeLinear":
                    t = self.inputs[src][0]
                if t in self.consts:
                    seen.add(t)
        return sum(self.consts[t] for t in seen)

    def activation_elems(self, nodes: list[str]) -> tuple[int, int]:
        """Elements per image the nodes read from outside themselves and write for others
        (constants and weight paths left out)."""
        inside = set(nodes)
        made = {t for n in nodes for t in self.outputs[n]}
        reads: set[str] = set()
        for n in nodes:
            for t in self.inputs[n]:
                if t in made or t in self.consts or self._weight_path(t):
                    continue
                reads.add(t)
        writes = {
            t
            for t in made
            if t in self.graph_outputs or any(c not in inside for c in self.consumers.get(t, []))
        }
        return sum(self.elems.get(t, 0) for t in reads), sum(self.elems.get(t, 0) for t in writes)

    def _weight_path(self, tensor: str) -> bool:
        src = self.producer.get(tensor)
        return (
            src is not None
            and self.op[src] in _QDQ
            and all(t in self.consts for t in self.inputs[src])
        )

    def ops(self, nodes: list[str]) -> list[str]:
        return [self.op[n] for n in nodes]


@lru_cache(maxsize=8)
def _facts(path: str, size: int, mtime_ns: int) -> GraphFacts:
    return GraphFacts.of(graph.load(path))


def graph_facts(path: Path) -> GraphFacts:
    """The facts of an ONNX file (cached while it is unchanged)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror}") from None
    return _facts(str(path), st.st_size, st.st_mtime_ns)


def bytes_per(precision: str | None) -> float:
    return PRECISION_BYTES.get(precision or "fp32", 4.0)
