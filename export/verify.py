"""Re-check an existing ONNX file: load, onnx.checker, sha256 against its manifest, parity gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnbench.errors import ArtifactError, InvalidInputError, UnknownNameError
from cnnbench.export import graph
from cnnbench.export.gate import (
    DEFAULT_BATCH,
    DEFAULT_SAMPLES,
    GateInputs,
    OrtReference,
    fixed_batch,
    ort_session,
    run_parity,
)
from cnnbench.export.manifest import MANIFEST_NAME, verify_artifact, weights_id
from cnnbench.export.parity import ParityReport, Tolerances
from cnnbench.models import get_model, get_spec, user_model
from cnnbench.precision import ONNX_PRECISIONS, Precision
from cnnbench.progress import Steps, note, warn


def verify_onnx(
    onnx_path: str | Path,
    model: str | None = None,
    *,
    weights: str | Path | None = None,
    seed: int | None = None,
    data_dir: str | Path | None = None,
    samples: int = DEFAULT_SAMPLES,
    batch: int | None = None,
    tolerances: Tolerances | None = None,
) -> ParityReport:
    """Re-check an existing ONNX file against PyTorch eager FP32; returns the report.

    ``model``, ``seed`` and ``tolerances`` default to what cnnbench recorded in the file's
    metadata (the gate preset of its precision; FP32 if none is recorded). A corrupt,
    truncated or invalid file raises a one-line ArtifactError; a file exported from a weights
    file, verified without ``weights``, raises InvalidInputError (the reference would differ).
    A manifest beside the file whose sha256 disagrees is a warning: the file changed since.
    """
    path = Path(onnx_path)
    steps = Steps(f"verify {path.name}", 2)
    proto = graph.load(path)  # a corrupt or truncated file fails here, in one line
    meta = {p.key: p.value for p in proto.metadata_props}
    meta.update(_from_manifest(path))
    model = model or meta.get("cnnbench.model")
    if not model:
        raise InvalidInputError(f"{path} does not say which model it holds; pass --model NAME")
    try:
        spec = get_spec(model)
    except UnknownNameError:
        if str(meta.get("cnnbench.weights") or "").startswith(("onnx-sha256:", "module:")):
            raise InvalidInputError(
                f"{path} holds your own model {model!r}: pass --model with the ONNX file or "
                "module:callable it came from"
            ) from None
        raise
    _check_holds(path, proto, model, meta.get("cnnbench.model"), spec.input_shape)
    um = user_model(model)
    onnx_source = um is not None and um.kind == "onnx"
    if not onnx_source:
        seed = _resolve_weights(path, meta.get("cnnbench.weights"), weights, seed)
    seed = seed or 0
    with steps.step("check"):
        external = any(t.data_location == 1 for t in proto.graph.initializer)  # EXTERNAL
        graph.check(path if external or graph.needs_external_data(proto) else proto, what=str(path))
        del proto
    recorded = _known_precision(meta.get("cnnbench.precision"))
    # FP8: basic graph optimisations, as the gate (ORT's extended Q/DQ transforms miscompute it)
    session = ort_session(path, basic=recorded == Precision.FP8)
    # a user's ONNX file has no PyTorch source: the reference is that file on ONNX Runtime CPU
    module: Any = (
        OrtReference(Path(um.source))
        if um is not None and onnx_source
        else get_model(model, weights=weights, seed=seed)
    )
    inputs = GateInputs(
        samples=samples,
        batch=fixed_batch(session) or batch or DEFAULT_BATCH,
        seed=seed,
        data_dir=Path(data_dir) if data_dir is not None else None,
    )
    if tolerances is None:
        tolerances = recorded.gate
        note(f"gate: {recorded} preset")
    with steps.step("parity"):
        return run_parity(module, path, inputs.batches(spec), tolerances, session=session)


def _known_precision(name: str | None) -> Precision:
    """A recorded precision name as a Precision; FP32 when none (or an unknown one) is recorded."""
    return Precision(name) if name in ONNX_PRECISIONS else Precision.FP32


def _check_holds(
    path: Path, proto: Any, model: str, recorded: str | None, shape: tuple[int, ...]
) -> None:
    """A file checked against another model's reference fails here, in one line that says
    what the file holds (a mismatched input would otherwise fail deep in ONNX Runtime)."""
    first = graph.real_inputs(proto)[0]
    dims = tuple(
        d.dim_value if d.HasField("dim_value") else "?" for d in first.type.tensor_type.shape.dim
    )[1:]
    fixed = all(isinstance(d, int) for d in dims)
    if recorded and recorded != model or (fixed and dims != tuple(shape)):
        held = f"{recorded or 'a model'} (input {'x'.join(map(str, dims))})"
        raise InvalidInputError(
            f"{path} holds {held}, not {model} (input {'x'.join(map(str, shape))}); "
            f"pass --model {recorded or 'NAME'}"
        )


def recorded_precision(onnx_path: str | Path) -> Precision:
    """The precision recorded for a file: its manifest's (when it matches), else its metadata."""
    path = Path(onnx_path)
    meta = {p.key: p.value for p in graph.load(path, load_external_data=False).metadata_props}
    meta.update(_from_manifest(path, quiet=True))
    return _known_precision(meta.get("cnnbench.precision"))


def _from_manifest(path: Path, *, quiet: bool = False) -> dict[str, str]:
    """Provenance from a manifest beside ``path`` if it describes these bytes; a mismatch warns."""
    if not path.with_name(MANIFEST_NAME).is_file():
        return {}
    try:
        _, m = verify_artifact(path)
    except ArtifactError as exc:
        if not quiet:
            warn(str(exc))
        return {}
    out = {"cnnbench.model": m.get("model"), "cnnbench.precision": m.get("precision")}
    out["cnnbench.weights"] = m.get("weights")
    return {k: str(v) for k, v in out.items() if v}


def _resolve_weights(
    path: Path, recorded: str | None, weights: str | Path | None, seed: int | None
) -> int:
    """The seed to build the reference with; refuse a reference that cannot match the file."""
    if recorded and recorded.startswith("sha256:"):
        if weights is None:
            raise InvalidInputError(
                f"{path} was exported from a weights file (sha256 {recorded[7:19]}…); "
                "pass the same --weights"
            )
        if weights_id(weights) != recorded:
            warn(f"--weights {weights} differ from the weights {path.name} was exported from")
    if seed is None:
        if recorded and recorded.startswith("seeded-init:") and weights is None:
            return int(recorded.split(":", 1)[1])
        return 0
    return seed
