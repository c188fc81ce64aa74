"""What a benchmark cell needs before it can load an engine: the artifact and the model's size.

onnxruntime, OpenVINO and TensorRT load the verified ONNX file of the precision, produced (or
reused from the cache) by ``export.pipeline.ensure_fp32`` / ``export.convert.ensure_precision``.
The torch engine builds the zoo model itself; the null engine needs nothing.

``python -m cnnbench.bench.run.prepare --model M --precision P [--weights W] [--artifacts DIR]`` does the
same in a separate process and prints one JSON object: sweeps run it once per (model, precision)
so that each cell's process can skip importing torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cnnbench
from cnnbench.artifacts import DEFAULT_ARTIFACTS, atomic_write_json, cache_dir, sha256_bytes
from cnnbench.engines import get_engine_class
from cnnbench.engines.base import Artifact
from cnnbench.errors import CnnbenchError
from cnnbench.export.convert import ensure_precision
from cnnbench.export.onnx_macs import node_macs
from cnnbench.models import get_model, get_spec, user_model
from cnnbench.models.spec import ModelSpec
from cnnbench.precision import ONNX_PRECISIONS, Int8Recipe, Precision, parse_precision


@dataclass(frozen=True)
class Prepared:
    artifact: Artifact
    seconds: float
    source: str  # "onnx export/cache", "given onnx", "zoo model", "none"


def needs_onnx(engine: str) -> bool:
    """Whether engine ``engine`` loads an ONNX file (the others build the zoo model or nothing)."""
    return get_engine_class(engine).loads_onnx


def ensure_onnx(
    model: str,
    precision: Precision,
    *,
    weights: str | Path | None,
    artifacts: Path,
    seed: int = 0,
    int8: Int8Recipe | None = None,
) -> tuple[Path, str | None]:
    """The verified ONNX file of ``model`` at ``precision`` and its sha256 (exported if needed;
    an INT8 file made by ``int8``, reused when one made by the same recipe exists)."""
    precision = parse_precision(precision, ONNX_PRECISIONS, what="the ONNX export")
    recipe = (int8 or Int8Recipe()).kwargs() if precision == Precision.INT8 else {}
    res = ensure_precision(
        model, precision, weights=weights, out_dir=artifacts, seed=seed, **recipe
    )
    manifest = getattr(res, "manifest", None) or {}
    sha = manifest.get("sha256") or (manifest.get("onnx") or {}).get("sha256")
    return Path(res.onnx_path), sha


def prepare(
    model: str | ModelSpec,
    engine: str,
    precision: Precision,
    *,
    weights: str | Path | None = None,
    artifacts: Path | None = None,
    seed: int = 0,
    onnx_path: Path | None = None,
    onnx_sha256: str | None = None,
    int8: Int8Recipe | None = None,
) -> Prepared:
    """Resolve the artifact ``engine`` loads for ``model`` (a zoo name or its spec).

    ``onnx_path`` skips the export step (a sweep prepared the file in another process).
    """
    spec = get_spec(model) if isinstance(model, str) else model
    precision = parse_precision(precision)
    model = spec.name
    t0 = time.perf_counter()
    source = "none" if engine == "null" else "zoo model"
    sha = None
    path: Path | None = None
    if needs_onnx(engine):
        if onnx_path is not None:
            path, sha, source = Path(onnx_path), onnx_sha256, "given onnx"
        else:
            path, sha = ensure_onnx(
                model,
                precision,
                weights=weights,
                artifacts=artifacts or DEFAULT_ARTIFACTS,
                seed=seed,
                int8=int8,
            )
            source = "onnx export/cache"
    art = Artifact.for_spec(spec, precision, onnx_path=path, weights=weights, sha256=sha, seed=seed)
    return Prepared(art, time.perf_counter() - t0, source)


def made_from(onnx_path: Path | None) -> dict[str, Any]:
    """What the row says about how its file was made, from the manifest beside it: the INT8
    quantizer and calibration (``calibration: random`` says the ranges came from noise)."""
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
    cal = (extra or {}).get("calibration")
    if not isinstance(cal, dict):
        return out
    conv = (extra or {}).get("converter") or {}
    return {
        **out,
        "quantizer": conv.get("quantizer"),
        "quantizer_version": conv.get("quantizer_version"),
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Prepare a model's ONNX file and size facts (JSON).")
    p.add_argument("--model", required=True)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--weights", default=None)
    p.add_argument("--artifacts", default=str(DEFAULT_ARTIFACTS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--int8", default=None, help="the INT8 recipe as JSON (Int8Recipe fields)")
    p.add_argument("--no-onnx", action="store_true", help="only the size facts")
    a = p.parse_args(argv)
    out: dict[str, Any] = {"model": a.model, "precision": a.precision}
    try:
        out.update(model_facts(a.model))
        if not a.no_onnx:
            recipe = Int8Recipe(**json.loads(a.int8)) if a.int8 else None
            path, sha = ensure_onnx(
                a.model, a.precision, weights=a.weights, artifacts=Path(a.artifacts),
                seed=a.seed, int8=recipe,
            )  # fmt: skip
            out.update(onnx_path=str(path), sha256=sha)
    except CnnbenchError as exc:
        out["error"] = " ".join(str(exc).split())
    print(json.dumps(out))
    return 0 if "error" not in out else 1


if __name__ == "__main__":
    sys.exit(main())
