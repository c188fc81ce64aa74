"""What an engine really ran, per layer, and the share of MACs per executed precision: the
report behind ``cnnbench layers`` and the ``macs_*_share`` columns of every cell's row.

The engine says what ran (:meth:`Engine.executed_layers`: OpenVINO's runtime model, ONNX
Runtime's profiler, TensorRT's engine inspector); the ONNX file says how many MACs each of its
nodes does (:func:`cnnbench.export.onnx_macs.node_macs`), so the shares are of the same count
for every engine and precision of a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from cnnbench.engines.base import Artifact, Engine
from cnnbench.engines.executed import SHARE_PRECISIONS, ExecutedLayer, attribute, summarize
from cnnbench.errors import CnnbenchError, InvalidInputError
from cnnbench.export import graph
from cnnbench.export.onnx_macs import fused_outputs, node_macs
from cnnbench.precision import Precision
from cnnbench.progress import warn

#: where each engine's report comes from (the row's ``layers_source``)
SOURCES = {
    "openvino": "openvino runtime model (runtimePrecision per node)",
    "onnxruntime": "onnxruntime profiler (kernel per node)",
    "tensorrt": "tensorrt engine inspector (layer information, JSON)",
}
#: the row's columns, None where the engine does not report its layers
ROW_FIELDS = (
    "layers_source", *(f"macs_{p}_share" for p in SHARE_PRECISIONS), "macs_coverage",
)  # fmt: skip


@dataclass(frozen=True)
class LayerReport:
    engine: str
    engine_version: str
    onnx_path: str
    artifact_precision: str
    effective_precision: str | None
    source: str
    layers: list[ExecutedLayer]
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "engine_version": self.engine_version,
            "onnx": self.onnx_path,
            "artifact_precision": self.artifact_precision,
            "effective_precision": self.effective_precision,
            "source": self.source,
            "summary": self.summary,
            "layers": [layer.to_dict() for layer in self.layers],
        }


@lru_cache(maxsize=8)
def _graph_macs(path: str, size: int, mtime_ns: int) -> tuple[dict[str, int], dict[str, str]]:
    proto = graph.load(path)
    return node_macs(proto), fused_outputs(proto)


def graph_macs(path: Path) -> tuple[dict[str, int], dict[str, str]]:
    """Per-image MACs per weighted node of the file, and the tensors its fused chains produce
    (cached while the file is unchanged)."""
    st = path.stat()
    return _graph_macs(str(path), st.st_size, st.st_mtime_ns)


def report(eng: Engine) -> LayerReport | None:
    """The loaded engine's layers with their MACs, and the summary; None when it does not say."""
    art = eng.artifact
    if art is None or art.onnx_path is None:
        return None
    layers = eng.executed_layers()
    if layers is None:
        return None
    macs, fused = graph_macs(Path(art.onnx_path))
    layers = attribute(layers, macs, fused)
    eff = eng.effective_precision()
    return LayerReport(
        engine=eng.name,
        engine_version=eng.version,
        onnx_path=str(art.onnx_path),
        artifact_precision=str(art.precision),
        effective_precision=str(eff) if eff else None,
        source=SOURCES.get(eng.name, eng.name),
        layers=layers,
        summary=summarize(layers, sum(macs.values()) or None),
    )


def row_fields(eng: Engine) -> dict[str, Any]:
    """The row's record of what ran in which precision (None where the engine cannot say).
    A report that fails warns and leaves the fields empty: it never costs the measurement."""
    out: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
    try:
        rep = report(eng)
    except CnnbenchError as exc:
        warn(f"no per-layer report for {eng.name}: {exc}")
        return out
    if rep is None:
        return out
    out["layers_source"] = rep.source
    out.update({k: rep.summary.get(k) for k in ROW_FIELDS if k != "layers_source"})
    return out


def graph_precision(proto: Any) -> Precision:
    """A graph's precision: Q/DQ of FP8 (E4M3) initialisers or zero points make it FP8; other
    Q/DQ or integer ops INT8; an FP16 input or FP16 weights FP16; else FP32 (for files that
    record none)."""
    import onnx

    ops = {n.op_type for n in proto.graph.node}
    fp8 = onnx.TensorProto.FLOAT8E4M3FN
    if ops & {"QuantizeLinear", "DequantizeLinear"} and any(
        i.data_type == fp8 for i in proto.graph.initializer
    ):
        return Precision.FP8
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}:
        return Precision.INT8
    fp16 = onnx.TensorProto.FLOAT16
    inputs = graph.real_inputs(proto)
    if inputs and inputs[0].type.tensor_type.elem_type == fp16:
        return Precision.FP16
    if any(i.data_type == fp16 for i in proto.graph.initializer):
        return Precision.FP16
    return Precision.FP32


def file_artifact(path: Path, precision: Precision | None = None) -> Artifact:
    """An artifact for a user's ONNX file: image input ``N x C x H x W`` and ``N x classes``
    logits, read from the graph; the precision given, else the one the graph holds."""
    if not path.is_file():
        raise InvalidInputError(f"ONNX file not found: {path}")
    proto = graph.load(path, load_external_data=False)
    inputs = graph.real_inputs(proto)

    def dims(vi: Any) -> list[int | None]:
        return [d.dim_value or None for d in vi.type.tensor_type.shape.dim]

    if len(inputs) != 1 or len(proto.graph.output) < 1:
        raise InvalidInputError(
            f"{path}: expected one image input and a logits output, got "
            f"{len(inputs)} input(s) and {len(proto.graph.output)} output(s)"
        )
    x, y = dims(inputs[0]), dims(proto.graph.output[0])
    if len(x) != 4 or None in x[1:] or len(y) != 2 or y[1] is None:
        raise InvalidInputError(
            f"{path}: input must be N x C x H x W and output N x classes with fixed sizes "
            f"(got {x} and {y}); export with a fixed image size"
        )
    shape = (int(x[1] or 0), int(x[2] or 0), int(x[3] or 0))
    return Artifact(
        model=path.parent.parent.name if path.name == "model.onnx" else path.stem,
        precision=precision or graph_precision(proto),
        input_shape=shape,
        num_classes=int(y[1]),
        onnx_path=path,
        input_name=inputs[0].name,
    )


def summary_text(rep: LayerReport) -> str:
    """Two lines: the MAC shares per executed precision, and how much of the graph they cover."""
    s = rep.summary
    by = s.get("macs_by_precision") or {}
    total = s.get("macs_accounted") or 0
    shares = ", ".join(f"{p} {100 * m / total:.1f}%" for p, m in by.items()) if total else "none"
    cov = s.get("macs_coverage")
    cover = f"{100 * cov:.1f}% of the graph's MACs" if cov is not None else "the graph's MACs"
    amount = f"{total / 1e9:.3f} GMACs" if total >= 1e8 else f"{total / 1e6:.3f} MMACs"
    return (
        f"MACs by executed precision: {shares}\n"
        f"accounted: {amount} per image, {cover}; source: {rep.source}"
    )
