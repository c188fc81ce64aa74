"""Where the time goes: per-layer time on any engine, aligned to the ONNX nodes, with its MACs,
bytes, achieved GMAC/s and arithmetic intensity, checked against the cell's measured p50.

The engine profiles on a session of its own (:meth:`Engine.profile_layers`); this module joins
its layers to the ONNX graph (:mod:`bench.measure.profile_graph`), so the same node has the
same name, MACs and bytes on every engine and precision. The JSON it writes is a contract
(``PROFILE_VERSION``):

* top level: ``engine``, ``precision``, ``batch``, ``latency_ms_p50`` (the cell's measured
  p50, on the unprofiled session), ``layer_time_ms_total`` (the sum of the layers' median
  times), ``layers``; and ``model``, ``engine_version``, ``device``, ``onnx``, ``source``,
  ``queries``, ``gap`` (the sum against p50; ``flag`` beyond ``GAP_FLAG``), ``summary``
  (time shares by executed precision, conversion's share, time by layer type and precision);
* each layer: ``name`` (the runtime's), ``nodes`` (ONNX node names), ``type``, ``precision``
  (executed), ``kernel``, ``time_ms`` (median per query over the profiled queries), ``share``,
  ``macs`` (per query, at the profiled batch), ``bytes`` (``weights``, ``inputs``, ``outputs``,
  ``total``, at the executed precision), ``gmacs_per_s``, ``intensity`` (MACs per byte) and
  ``conversion`` (a layer the runtime added: a reorder, reformat, cast, or a Q/DQ that did
  not fuse).
"""

from __future__ import annotations

import hashlib
import json
import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from cnnbench.bench.measure.layer_report import graph_macs
from cnnbench.bench.measure.profile_graph import GraphFacts, bytes_per, graph_facts
from cnnbench.bench.measure.timing import StopRule, measure
from cnnbench.engines.base import Engine
from cnnbench.engines.executed import SHARE_PRECISIONS
from cnnbench.engines.layer_times import LayerTimes, is_conversion
from cnnbench.errors import ArtifactError, InvalidInputError

PROFILE_VERSION = 1
#: a layer sum this far from the cell's p50 (either way) is flagged
GAP_FLAG = 0.15
#: the profiled queries when none is said (after warm-up)
DEFAULT_QUERIES = 30
#: the key under which a cell's row carries its profile until it is written beside the results
PROFILE_KEY = "_profile"
#: the folder beside a results file that holds its cells' profiles
PROFILES_SUFFIX = ".profiles"


@dataclass(frozen=True)
class ProfiledLayer:
    name: str
    nodes: list[str]
    type: str
    precision: str | None
    kernel: str
    time_ms: float
    share: float
    macs: int | None
    bytes: dict[str, int]
    gmacs_per_s: float | None
    intensity: float | None
    conversion: bool


@dataclass
class Profile:
    engine: str
    precision: str
    batch: int
    latency_ms_p50: float | None
    layer_time_ms_total: float
    layers: list[ProfiledLayer]
    model: str = ""
    engine_version: str = ""
    device: str = "cpu"
    onnx: str | None = None
    source: str = ""
    queries: int = 0
    gap: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    profile_version: int = PROFILE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        if d.get("profile_version") != PROFILE_VERSION or not isinstance(d.get("layers"), list):
            raise InvalidInputError(
                f"not a cnnbench profile (version {PROFILE_VERSION}); write one with "
                "cnnbench profile MODEL -e ENGINE -p PRECISION -o FILE.json"
            )
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        fields["layers"] = [ProfiledLayer(**layer) for layer in d["layers"]]
        return cls(**fields)


def read_profile(path: Path) -> Profile:
    """A profile JSON written by ``cnnbench profile -o`` or ``run --profile``; one line if not."""
    try:
        doc = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise InvalidInputError(f"{path} is not JSON; give a profile written by cnnbench profile -o") from None  # fmt: skip
    if not isinstance(doc, dict):
        raise InvalidInputError(f"{path} is not a cnnbench profile")
    try:
        return Profile.from_dict(doc)
    except TypeError:
        raise InvalidInputError(f"{path} is not a cnnbench profile (fields missing)") from None


#: how a profile's p50 is measured when no cell measured it (``cnnbench profile``): a short
#: window on the unprofiled session, no CI target
P50_RULE = StopRule(
    warmup_count=5, warmup_time=0.2, min_count=30, min_time=1.0, max_time=15.0, ci_target=None
)


def measure_p50(eng: Engine, x: Any) -> float:
    """The median latency (ms) of ``eng`` on ``x``, on the host clock, under ``P50_RULE``."""

    def call(a: Any) -> None:
        eng.infer(a)
        eng.synchronize()

    t = measure(call, x, P50_RULE)
    return float(statistics.median(t.samples_ns.tolist())) / 1e6


def profile_engine(
    eng: Engine,
    x: Any,
    *,
    queries: int = DEFAULT_QUERIES,
    p50_ms: float | None,
    model: str = "",
    onnx: Path | None = None,
) -> Profile:
    """Profile the loaded ``eng`` on batch ``x``: its layers' median times over ``queries``,
    aligned to ``onnx``'s nodes (the artifact's file by default), against ``p50_ms``."""
    times = eng.profile_layers(x, queries)
    if times is None:
        raise InvalidInputError(
            f"engine {eng.name} has no per-layer profiler; profile with onnxruntime, openvino, "
            "tensorrt or torch"
        )
    art = eng.artifact
    path = onnx or (art.onnx_path if art is not None else None)
    facts = graph_facts(Path(path)) if path is not None else None
    macs = graph_macs(Path(path))[0] if path is not None else {}
    if facts is not None:
        times = align_by_order(times, facts)
    batch = int(x.shape[0])
    return build(
        times,
        facts,
        macs,
        engine=eng.name,
        precision=str(art.precision) if art else "",
        batch=batch,
        p50_ms=p50_ms,
        model=model or (art.model if art else ""),
        engine_version=eng.version,
        device=eng.device,
        onnx=str(path) if path is not None else None,
    )


def align_by_order(times: LayerTimes, facts: GraphFacts) -> LayerTimes:
    """Layers numbered in call order (``extra["weighted_index"]``: torch's convolutions and
    linear layers) named after the ONNX graph's weighted nodes in the same order, when the
    counts agree (a model whose export reorders them stays unaligned rather than misaligned)."""
    numbered = [layer for layer in times.layers if "weighted_index" in layer.extra]
    if not numbered or len(numbered) != len(facts.weighted):
        return times
    layers = [
        replace(layer, nodes=(facts.weighted[layer.extra["weighted_index"]],))
        if "weighted_index" in layer.extra
        else layer
        for layer in times.layers
    ]
    return replace(times, layers=layers)


def build(
    times: LayerTimes,
    facts: GraphFacts | None,
    macs: dict[str, int],
    *,
    engine: str,
    precision: str,
    batch: int,
    p50_ms: float | None,
    **meta: Any,
) -> Profile:
    """The profile of ``times``: each layer aligned to its ONNX nodes, with its figures."""
    if not times.layers or times.queries < 1:
        raise ArtifactError(f"{engine} reported no layer times; nothing to profile")
    medians = [statistics.median(t) if t else 0.0 for t in times.times_ms]
    total = sum(medians)
    covers = _covers(times, facts)
    layers = [
        _layer(layer, nodes, med, total, facts, macs, batch)
        for layer, nodes, med in zip(times.layers, covers, medians, strict=True)
    ]
    prof = Profile(
        engine=engine,
        precision=precision,
        batch=batch,
        latency_ms_p50=p50_ms,
        layer_time_ms_total=round(total, 6),
        layers=layers,
        source=times.source,
        queries=times.queries,
        **meta,
    )
    prof.gap = gap(total, p50_ms)
    prof.summary = summarize(layers)
    return prof


#: what the kinds of runtime layers that do a weighted op's MACs contain (Convolution,
#: FullyConnectedQuantizedLegacy, QLinearConv, CaskGemmConvolution, MatMul, QGemm, ...)
_MAC_KINDS = ("Conv", "FullyConnected", "MatMul", "Gemm")


def _covers(times: LayerTimes, facts: GraphFacts | None) -> list[list[str]]:
    """Each layer's ONNX nodes. A MAC layer whose runtime lost its weighted node's name
    (OpenVINO names a FullyConnected after a Multiply it absorbed) takes the weighted node that
    feeds its nodes and no layer covers."""
    if facts is None:
        return [[] for _ in times.layers]
    covers = [facts.cover(layer.nodes or (layer.name,)) for layer in times.layers]
    taken = {n for c in covers for n in c}
    for layer, nodes in zip(times.layers, covers, strict=True):
        mac_kind = any(k in layer.kind for k in _MAC_KINDS)
        if not mac_kind or any(n in facts.weighted for n in nodes):
            continue
        feeding = [facts.producer.get(t) for n in nodes for t in facts.inputs[n]]
        found = [w for w in dict.fromkeys(feeding) if w in facts.weighted and w not in taken]
        if found:
            nodes.insert(0, found[0])
            taken.add(found[0])
    return covers


def _layer(
    layer: Any, nodes: list[str], time_ms: float, total: float, facts: GraphFacts | None,
    macs: dict[str, int], batch: int,
) -> ProfiledLayer:  # fmt: skip
    mine = [n for n in nodes if n in macs]
    layer_macs = sum(macs[n] for n in mine) * batch if mine else None
    if layer_macs is None and layer.shape_macs:
        layer_macs = layer.shape_macs * batch
    per = bytes_per(layer.precision)
    if facts is not None and nodes:
        w = facts.weight_elems(nodes)
        a_in, a_out = facts.activation_elems(nodes)
        b = {"weights": int(w * per), "inputs": int(a_in * batch * per),
             "outputs": int(a_out * batch * per)}  # fmt: skip
    else:  # a layer the runtime added: the tensors it says it moved, where it says
        io = layer.extra.get("io_bytes") or (0, 0)
        b = {"weights": 0, "inputs": int(io[0]), "outputs": int(io[1])}
    b["total"] = sum(b.values())
    secs = time_ms / 1e3
    ops = facts.ops(nodes) if facts is not None else []
    return ProfiledLayer(
        name=layer.name,
        nodes=nodes,
        type=layer.kind,
        precision=layer.precision,
        kernel=layer.kernel,
        time_ms=round(time_ms, 6),
        share=round(time_ms / total, 6) if total else 0.0,
        macs=layer_macs,
        bytes=b,
        gmacs_per_s=round(layer_macs / secs / 1e9, 3) if layer_macs and secs > 0 else None,
        intensity=round(layer_macs / b["total"], 3) if layer_macs and b["total"] else None,
        conversion=is_conversion(layer.kind, ops, added=not nodes),
    )


def gap(total: float, p50_ms: float | None) -> dict[str, Any]:
    """The layer sum against the cell's p50: the ratio, and a flag beyond ``GAP_FLAG``."""
    if not p50_ms:
        return {"ratio": None, "pct": None, "flag": None}
    ratio = total / p50_ms
    return {"ratio": round(ratio, 4), "pct": round(100 * (ratio - 1), 1),
            "flag": abs(ratio - 1) > GAP_FLAG}  # fmt: skip


def summarize(layers: list[ProfiledLayer]) -> dict[str, Any]:
    """Time shares by executed precision (computing layers), conversion's share, and the time
    by layer type and precision (what the report's stacked bars draw)."""
    total = sum(layer.time_ms for layer in layers) or 1.0
    by_prec: dict[str, float] = {}
    by_kind: dict[str, float] = {}
    conv = 0.0
    for layer in layers:
        if layer.conversion:
            conv += layer.time_ms
            key = f"conversion/{layer.type or 'other'}"
        else:
            p = layer.precision or "unknown"
            by_prec[p] = by_prec.get(p, 0.0) + layer.time_ms
            key = f"{layer.type or 'other'}/{p}"
        by_kind[key] = by_kind.get(key, 0.0) + layer.time_ms
    out: dict[str, Any] = {
        f"time_{p}_share": round(by_prec.get(p, 0.0) / total, 4) for p in SHARE_PRECISIONS
    }
    out["conversion_time_share"] = round(conv / total, 4)
    out["conversion_layers"] = sum(1 for layer in layers if layer.conversion)
    out["time_by_kind_ms"] = {k: round(v, 4) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])}  # fmt: skip
    weighted = [layer for layer in layers if layer.macs and not layer.conversion]
    out["mac_layers_by_precision"] = _count(layer.precision or "unknown" for layer in weighted)
    return out


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


#: the row's columns from a profile
ROW_FIELDS = (
    "profile_source", "profile_layer_time_ms", "profile_gap_pct",
    *(f"time_{p}_share" for p in SHARE_PRECISIONS), "conversion_time_share", "profile_by_kind",
)  # fmt: skip


def row_fields(prof: Profile) -> dict[str, Any]:
    """What a cell's row records of its profile (the file holds the layers)."""
    s = prof.summary
    return {
        "profile_source": prof.source,
        "profile_layer_time_ms": prof.layer_time_ms_total,
        "profile_gap_pct": prof.gap.get("pct"),
        **{f"time_{p}_share": s.get(f"time_{p}_share") for p in SHARE_PRECISIONS},
        "conversion_time_share": s.get("conversion_time_share"),
        "profile_by_kind": json.dumps(s.get("time_by_kind_ms") or {}, sort_keys=True),
    }


def profile_file_name(row: dict[str, Any]) -> str:
    """A file name for a cell's profile: readable, and unique by the cell's key."""
    key = str(row.get("cell") or "")
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    parts = [row.get("model"), row.get("engine"), row.get("precision"), f"b{row.get('batch')}",
             f"r{row.get('repeat') or 0}"]  # fmt: skip
    safe = "_".join("".join(c if c.isalnum() or c in "-." else "-" for c in str(p)) for p in parts)
    return f"{safe}_{digest}.json"


def store_profile(results: Path | None, row: dict[str, Any]) -> None:
    """Move ``row``'s profile (``PROFILE_KEY``) into ``RESULTS.profiles/`` (written whole, then
    renamed: never a torn file) and point the row to it (``profile_file``, relative to the
    results file). Without a results file the profile is dropped; its summary stays in the row."""
    doc = row.pop(PROFILE_KEY, None)
    if doc is None or results is None:
        return
    folder = results.with_name(results.name + PROFILES_SUFFIX)
    folder.mkdir(parents=True, exist_ok=True)
    name = profile_file_name(row)
    tmp = folder / f".{name}.tmp"
    tmp.write_text(json.dumps(doc, indent=1) + "\n", "utf-8")
    tmp.replace(folder / name)
    row["profile_file"] = f"{folder.name}/{name}"
