"""Two profiles of one model side by side (int8 against fp32, openvino against onnxruntime):
per ONNX node group the time ratio and the precision change, the groups that explain most of
the difference, and one paragraph the per-layer data supports.

A runtime fuses several ONNX nodes into one layer, and two runtimes (or two precisions) fuse
differently, so the unit of comparison is a *group*: the ONNX nodes that some layer of either
profile covers together (a connected component of "covered by the same layer"). Layers that
name no ONNX node (reorders, reformats, quantize/dequantize a runtime inserted) are compared as
one bucket per side and layer type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from cnnbench.bench.measure.profile import Profile, ProfiledLayer


@dataclass
class Group:
    """ONNX nodes compared as one, with each side's layers in it."""

    name: str
    nodes: list[str]
    a: list[ProfiledLayer] = field(default_factory=list)
    b: list[ProfiledLayer] = field(default_factory=list)

    def time(self, side: str) -> float:
        return sum(layer.time_ms for layer in (self.a if side == "a" else self.b))

    def precision(self, side: str) -> str:
        layers = self.a if side == "a" else self.b
        if not layers:
            return "-"
        main = max(layers, key=lambda layer: (layer.macs or 0, layer.time_ms))
        return main.precision or "?"

    def kind(self) -> str:
        layers = self.a + self.b
        main = max(layers, key=lambda layer: (layer.macs or 0, layer.time_ms))
        return main.type

    def row(self) -> dict[str, Any]:
        ta, tb = self.time("a"), self.time("b")
        return {
            "group": self.name,
            "nodes": self.nodes,
            "type": self.kind(),
            "time_ms_a": round(ta, 4),
            "time_ms_b": round(tb, 4),
            "ratio": round(tb / ta, 3) if ta > 0 else None,
            "delta_ms": round(tb - ta, 4),
            "precision_a": self.precision("a"),
            "precision_b": self.precision("b"),
            "conversion": all(layer.conversion for layer in self.a + self.b),
        }


def groups(a: Profile, b: Profile) -> list[Group]:
    """The node groups of ``a`` and ``b`` (graph order of their first layer), then one bucket
    per side and type of the layers that name no ONNX node."""
    parent: dict[str, str] = {}

    def find(n: str) -> str:
        while parent.setdefault(n, n) != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for layer in (*a.layers, *b.layers):
        for n in layer.nodes[1:]:
            parent[find(n)] = find(layer.nodes[0])
        if layer.nodes:
            find(layer.nodes[0])
    by_root: dict[str, Group] = {}
    order: list[str] = []
    for side, prof in (("a", a), ("b", b)):
        for layer in prof.layers:
            if layer.nodes:
                root = find(layer.nodes[0])
                key = root
            else:
                key = f"(added) {layer.type or 'layer'}"
            if key not in by_root:
                by_root[key] = Group(name=key, nodes=[])
                order.append(key)
            g = by_root[key]
            (g.a if side == "a" else g.b).append(layer)
            g.nodes.extend(n for n in layer.nodes if n not in g.nodes)
    for g in by_root.values():
        if g.nodes:
            main = max(g.a + g.b, key=lambda layer: (layer.macs or 0, layer.time_ms))
            first = main.nodes[0] if main.nodes else g.nodes[0]
            g.name = first + (f" +{len(g.nodes) - 1}" if len(g.nodes) > 1 else "")
    return [by_root[k] for k in order]


def labels(a: Profile, b: Profile) -> tuple[str, str]:
    """What tells the two cells apart: their precisions, their engines, or both."""
    if a.engine == b.engine and a.precision != b.precision:
        return a.precision.upper(), b.precision.upper()
    if a.precision == b.precision and a.engine != b.engine:
        return a.engine, b.engine
    if a.precision == b.precision and a.engine == b.engine:  # two files: say which
        ta, tb = _file_tag(a.onnx), _file_tag(b.onnx)
        if ta != tb:
            return f"{a.precision.upper()} ({ta})", f"{b.precision.upper()} ({tb})"
        return f"{a.precision.upper()} (A)", f"{b.precision.upper()} (B)"
    return f"{a.engine} {a.precision}", f"{b.engine} {b.precision}"


def _file_tag(onnx: str | None) -> str:
    """A profiled file's folder without its request key (``int8-tensorrt-68fa64b700`` ->
    ``int8-tensorrt``: the Q/DQ placement), else its path."""
    if not onnx:
        return "?"
    folder = PurePath(onnx).parent.name
    return re.sub(r"-[0-9a-f]{8,}$", "", folder) or onnx


def diff(a: Profile, b: Profile, top: int = 10) -> dict[str, Any]:
    """The comparison: totals, the rows by group, the top contributors and the paragraph."""
    rows = [g.row() for g in groups(a, b)]
    ta, tb = a.layer_time_ms_total, b.layer_time_ms_total
    delta = tb - ta
    sign = 1 if delta >= 0 else -1
    ranked = sorted(rows, key=lambda r: -sign * r["delta_ms"])
    explain = [r for r in ranked if sign * r["delta_ms"] > 0][:top]
    la, lb = labels(a, b)
    out: dict[str, Any] = {
        "a": {"label": la, **_side(a)},
        "b": {"label": lb, **_side(b)},
        "ratio": round(tb / ta, 4) if ta > 0 else None,
        "delta_ms": round(delta, 4),
        "rows": rows,
        "top": [
            {**r, "share_of_difference": round(r["delta_ms"] / delta, 4) if delta else None}
            for r in explain
        ],
    }
    out["summary"] = paragraph(a, b, out)
    return out


def _side(p: Profile) -> dict[str, Any]:
    mac = [layer for layer in p.layers if layer.macs and not layer.conversion]
    conv = [layer for layer in p.layers if layer.conversion]
    kinds: dict[str, int] = {}
    for layer in conv:
        kinds[layer.type or "layer"] = kinds.get(layer.type or "layer", 0) + 1
    by_prec: dict[str, int] = {}
    for layer in mac:
        by_prec[layer.precision or "?"] = by_prec.get(layer.precision or "?", 0) + 1
    return {
        "engine": p.engine,
        "precision": p.precision,
        "batch": p.batch,
        "layer_time_ms_total": p.layer_time_ms_total,
        "latency_ms_p50": p.latency_ms_p50,
        "mac_layers": len(mac),
        "mac_layers_by_precision": by_prec,
        "conversion_ms": round(sum(layer.time_ms for layer in conv), 4),
        "conversion_share": p.summary.get("conversion_time_share"),
        "conversion_kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
    }


def _ms(v: float) -> str:
    return f"{v:.3g} ms" if v < 10 else f"{v:.1f} ms"


def paragraph(a: Profile, b: Profile, d: dict[str, Any]) -> str:
    """One paragraph, each clause read off the rows: the headline ratio, what precision the
    MAC layers ran in, what the runtime added, and what changed most."""
    sa, sb = d["a"], d["b"]
    la, lb = sa["label"], sb["label"]
    ta, tb = sa["layer_time_ms_total"], sb["layer_time_ms_total"]
    where = f" on {a.engine}" if a.engine == b.engine else ""
    if not ta or not tb:
        return f"{lb} and {la}{where}: a profile without layer times cannot be compared."
    ratio = tb / ta
    speed = "slower" if ratio > 1 else "faster"
    x = ratio if ratio >= 1 else 1 / ratio
    parts = [
        f"{lb} is {x:.2f}x {speed} than {la}{where} at batch {b.batch} "
        f"({_ms(tb)} against {_ms(ta)} per query, summed over layers" + _p50s(sa, sb) + ")."
    ]
    parts.append(_mac_clause(lb, sb, la, sa, b))
    conv = _conversion_clause(lb, sb, la, sa)
    if conv:
        parts.append(conv)
    top = d["top"][:3]
    if top and d["delta_ms"]:
        moved = sum(r["delta_ms"] for r in top)
        named = ", ".join(
            f"{r['group']} ({r['precision_a']}->{r['precision_b']}, "
            f"{_ms(r['time_ms_a'])} -> {_ms(r['time_ms_b'])})"
            for r in top
        )
        parts.append(
            f"The {len(top)} node groups that changed most in that direction moved "
            f"{abs(moved):.3g} ms of the {abs(d['delta_ms']):.3g} ms difference: {named}."
        )
    return " ".join(parts)


def _p50s(sa: dict[str, Any], sb: dict[str, Any]) -> str:
    pa, pb = sa.get("latency_ms_p50"), sb.get("latency_ms_p50")
    return f"; measured p50 {_ms(pb)} against {_ms(pa)}" if pa and pb else ""


def _mac_clause(lb: str, sb: dict[str, Any], la: str, sa: dict[str, Any], b: Profile) -> str:
    def runs(s: dict[str, Any]) -> str:
        by = s["mac_layers_by_precision"]
        return ", ".join(f"{n} {p}" for p, n in sorted(by.items(), key=lambda kv: -kv[1]))

    n = sb["mac_layers"]
    by = sb["mac_layers_by_precision"]
    qdq = sum(
        v for k, v in sb["conversion_kinds"].items() if "Quantize" in k or k == "FakeQuantize"
    )
    if b.precision == "int8" and by.get("int8", 0) < n and qdq:
        float_n = n - by.get("int8", 0)
        return (
            f"In {lb}, {float_n} of {n} MAC layers ran in float ({runs(sb)}) between "
            f"quantize/dequantize layers that did not fuse ({qdq} of them); {la} ran "
            f"{runs(sa)}."
        )
    return (
        f"MAC layers by executed precision: {lb} {runs(sb) or 'none'}; {la} {runs(sa) or 'none'}."
    )


def _conversion_clause(lb: str, sb: dict[str, Any], la: str, sa: dict[str, Any]) -> str:
    cb, ca = sb["conversion_ms"], sa["conversion_ms"]
    if not cb and not ca:
        return ""
    kinds = ", ".join(f"{n} {k}" for k, n in list(sb["conversion_kinds"].items())[:4])
    share_b = 100 * cb / sb["layer_time_ms_total"]
    share_a = 100 * ca / sa["layer_time_ms_total"]
    return (
        f"Layers the runtime added (conversion overhead) cost {_ms(cb)} in {lb} "
        f"({share_b:.0f}% of its time{': ' + kinds if kinds else ''}) against {_ms(ca)} "
        f"({share_a:.0f}%) in {la}."
    )
