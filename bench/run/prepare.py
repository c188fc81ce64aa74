"""What a benchmark cell needs before it can load an engine: the artifact and the model's size.

onnxruntime, OpenVINO and TensorRT load the verified ONNX file of the precision, produced (or
reused from the cache) by ``export.pipeline.ensure_fp32`` / ``export.convert.ensure_precision``.
The torch engine builds the zoo model itself; the null engine needs nothing.

The launcher runs it once per artifact in a process of its own (:mod:`bench.run.child`, on the
cell's spec), so that each cell's process can skip importing torch.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cnnbench
from cnnbench.artifacts import atomic_write_json, cache_dir, sha256_bytes
from cnnbench.bench.run.cell_spec import CellSpec
from cnnbench.engines import get_engine_class
from cnnbench.engines.base import Artifact
from cnnbench.errors import CnnbenchError
from cnnbench.export.convert import ensure_precision
from cnnbench.export.onnx_macs import node_macs
from cnnbench.models import get_model, get_spec, user_model
from cnnbench.precision import Precision


@dataclass(frozen=True)
class Prepared:
    artifact: Artifact
    seconds: float
    source: str  # "onnx export/cache", "given onnx", "zoo model", "none"


def needs_onnx(engine: str) -> bool:
    """Whether engine ``engine`` loads an ONNX file (the others build the zoo model or nothing)."""
    return get_engine_class(engine).loads_onnx


def ensure_onnx(spec: CellSpec) -> tuple[Path, str | None]:
    """The verified ONNX file of the cell's model at its precision and its sha256 (exported if
    needed; an INT8 file made by the cell's recipe, reused when one made by the same recipe
    exists)."""
    recipe = spec.int8.kwargs() if spec.precision.calibrated else {}
    if spec.precision == Precision.FP16:
        recipe["fp16_converter"] = spec.fp16_converter
    res = ensure_precision(
        spec.model, spec.precision, weights=spec.weights, out_dir=Path(spec.artifacts),
        seed=spec.seed, weights_source=spec.weights_id, **recipe,
    )  # fmt: skip
    manifest = getattr(res, "manifest", None) or {}
    sha = manifest.get("sha256") or (manifest.get("onnx") or {}).get("sha256")
    return Path(res.onnx_path), sha


def prepare(spec: CellSpec) -> Prepared:
    """Resolve the artifact the cell's engine loads: the ONNX file the launcher prepared
    (``spec.onnx_path``), else exported here; the zoo model for torch; nothing for null."""
    t0 = time.perf_counter()
    source = "none" if spec.engine == "null" else "zoo model"
    sha = None
    path: Path | None = None
    if needs_onnx(spec.engine):
        if spec.onnx_path is not None:
            path, sha, source = Path(spec.onnx_path), spec.onnx_sha256, "given onnx"
        else:
            path, sha = ensure_onnx(spec)
            source = "onnx export/cache"
    art = Artifact.for_spec(
        spec.model_spec, spec.precision, onnx_path=path, weights=spec.weights, sha256=sha,
        seed=spec.seed,
    )  # fmt: skip
    return Prepared(art, time.perf_counter() - t0, source)


def made_from(onnx_path: Path | None) -> dict[str, Any]:
    """What the row says about how its file was made, from the manifest beside it: the INT8
    quantizer, the runtime its Q/DQ was placed for, and calibration (``calibration: random``
    says the ranges came from noise)."""
    if onnx_path is None:
        return {}
    try:
        manifest = json.loads((Path(onnx_path).parent / "manifest.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(manifest, dict):
        return {}
    out: dict[str, Any] = {}
    parity = manifest.get("parity")
    if manifest.get("precision") != "fp32" and isinstance(parity, dict):
        # how often the converted file's top-1 agreed with the FP32 file's (its parity check):
        # what the report shows where no accuracy was measured
        agree = (parity.get("metrics") or {}).get("top1_agreement")
        out["fp32_top1_agreement"] = float(agree) if isinstance(agree, (int, float)) else None
    extra = manifest.get("extra")
    conv = (extra or {}).get("converter") or {}
    if isinstance(conv, dict) and conv.get("converter"):  # FP16: which converter, in which mode
        out.update(
            converter=conv.get("converter"),
            converter_version=conv.get("converter_version"),
            converter_mode=conv.get("mode"),
        )
    cal = (extra or {}).get("calibration")
    if not isinstance(cal, dict):
        return out
    return {
        **out,
        "quantizer": conv.get("quantizer"),
        "quantizer_version": conv.get("quantizer_version"),
        # the runtime its Q/DQ was placed for (files made before targets: TensorRT's)
        "qdq_target": (extra or {}).get("qdq_target") or "tensorrt",
        "quantizer_mode": conv.get("mode"),
        "calibration": cal.get("kind"),
        "calibration_source": cal.get("source"),
        "calibration_method": cal.get("method"),
        "calibration_samples": cal.get("samples"),
    }


def _models_source_hash() -> str:
    root = Path(cnnbench.__file__).parent
    files = sorted((root / "models").glob("*.py")) + [root / "analysis.py"]
    blob = b"".join(p.name.encode() + p.read_bytes() for p in files if p.is_file())
    return sha256_bytes(blob)[:16]


def model_facts(model: str) -> dict[str, int | None]:
    """``params`` and ``macs`` (multiply-accumulates per sample, conv + linear) of a zoo model.

    From ``cnnbench.analysis.analyze`` (meta device), cached per model and zoo source version so
    cells need not import torch. Values are None when the analysis cannot run.
    """
    um = user_model(model)
    if um is not None and um.kind == "onnx":
        return onnx_facts(Path(um.source))
    if um is not None:  # a user's module: its code is not ours to hash, so no cache
        return _facts_fallback(model)
    path = cache_dir() / "facts" / f"{model}-{_models_source_hash()}.json"
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(obj.get("params"), int) and isinstance(obj.get("macs"), int):
            return {"params": obj["params"], "macs": obj["macs"]}
    except (OSError, ValueError, AttributeError):
        pass
    try:
        from cnnbench.analysis import analyze  # torch-bound: imported where used, as torch is

        totals = analyze(model).totals
        facts: dict[str, int | None] = {
            "params": int(totals["params"]),
            "macs": int(totals["macs"]),
        }
    except ImportError:
        facts = _facts_fallback(model)
    except CnnbenchError:
        return {"params": None, "macs": None}
    if facts["params"] is not None:
        atomic_write_json(path, facts)
    return facts


def onnx_facts(path: Path) -> dict[str, int | None]:
    """``params`` and ``macs`` of an ONNX graph: floating-point initializer elements, and
    Conv/Gemm/MatMul multiply-accumulates per sample (the zoo's convention), from the graph."""
    import onnx

    proto = onnx.load(str(path))
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
              onnx.TensorProto.DOUBLE}  # fmt: skip
    params = 0
    for t in proto.graph.initializer:
        if t.data_type in floats:
            n = 1
            for d in t.dims:
                n *= int(d)
            params += n
    macs = node_macs(proto)
    return {"params": params, "macs": int(sum(macs.values())) if macs else None}


def _facts_fallback(model: str) -> dict[str, int | None]:
    """Parameters and conv/linear MACs by forward hooks on a meta-device model."""
    import torch

    with torch.device("meta"):
        net = get_model(model)
    macs = 0

    def hook(m: Any, args: Any, out: Any) -> None:
        nonlocal macs
        if isinstance(m, torch.nn.Conv2d):
            macs += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, torch.nn.Linear):
            macs += out.numel() * m.in_features

    hs = [m.register_forward_hook(hook) for m in net.modules()]
    with torch.no_grad():
        net(torch.empty((1, *get_spec(model).input_shape), device="meta"))
    for h in hs:
        h.remove()
    return {"params": sum(p.numel() for p in net.parameters()), "macs": int(macs)}
