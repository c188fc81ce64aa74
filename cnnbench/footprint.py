"""Size before work: the memory a model's steps will need, checked before anything is allocated.

A model declares its input (C×H×W, float32 at the engines' inputs); a step holds some number of
images of it at once: the parity gate its comparison batch (2, or an ONNX file's fixed batch),
INT8 calibration its whole calibration set, a measured cell its batch. Each image is counted
:data:`COPIES` times (the input, the engine's copy of it, and a first activation at least as
large), and a user's ONNX file's weights (its bytes and its external data) twice (the parsed
model and the engine's). The sum is a lower bound: a step that needs more than this machine has
free (:func:`cnnbench.limits.available_memory`) can only end in the out-of-memory killer,
which may take other processes with it, so it is refused first, in one line.

This is the one check: :class:`cnnbench.cli.run_options.RunOptions` (run, layers, eval, export)
and the sweep/request loader (:func:`bench.run.sweep_config.config_from_mapping`) call
:func:`check_models`; a command that reads a file's shape itself (``layers FILE``, ``verify``,
``inspect --input-size``) calls :func:`check_fits`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from cnnbench.errors import InvalidInputError
from cnnbench.limits import available_memory, gib
from cnnbench.models import get_spec, user_model

#: copies of each image a step holds at once (input, engine copy, first activation)
COPIES = 3
#: bytes of one input element (float32: FP16 and INT8 files keep FP32 inputs)
ELEMENT_BYTES = 4
#: the parity gate's batch for a file with a dynamic batch axis
GATE_BATCH = 2


def image_bytes(chw: Iterable[int]) -> int:
    """Bytes of one float32 input image of shape ``chw``."""
    return math.prod(int(d) for d in chw) * ELEMENT_BYTES


def check_fits(
    what: str, chw: tuple[int, ...], steps: Mapping[str, int], *, weights_bytes: int = 0
) -> None:
    """Refuse, in one line, the largest of ``steps`` (name -> images held at once) when it
    needs more memory than is free here. ``what`` names the model or file."""
    if not steps:
        return
    step, images = max(steps.items(), key=lambda kv: kv[1])
    need = images * image_bytes(chw) * COPIES + 2 * weights_bytes
    free, bound = available_memory()
    if need > free:
        shape = "x".join(str(int(d)) for d in chw)
        raise InvalidInputError(
            f"{what}: input {shape} float32, {images} image(s) at once in the {step}, needs at "
            f"least {gib(need)}; {gib(free)} is free here ({bound}). Use a smaller input or batch"
        )


def model_steps(
    model: str, *, batches: Iterable[int], gate: bool, calib_samples: int | None
) -> dict[str, int]:
    """The images each step of ``model`` holds at once: the gate (``gate``), calibration
    (``calib_samples``, INT8 only) and the measured batches."""
    um = user_model(model)
    fixed = um.fixed_batch if um is not None else None
    steps: dict[str, int] = {}
    if gate:
        steps["parity gate"] = fixed or GATE_BATCH
    if calib_samples:
        steps["INT8 calibration"] = calib_samples
    sizes = [fixed] if fixed else list(batches)
    if sizes:
        steps["measurement"] = max(sizes)
    return steps


def weights_bytes(model: str) -> int:
    """A user's ONNX file's bytes with its external data files (0 for other models)."""
    um = user_model(model)
    if um is None or um.kind != "onnx":
        return 0
    src = Path(um.source)
    total = 0
    for p in [src, *(src.parent / name for name in um.external_files)]:
        try:
            total += p.stat().st_size
        except OSError:
            continue
    return total


def check_models(
    models: Iterable[str], *, batches: Iterable[int], gate: bool, calib_samples: int | None
) -> None:
    """:func:`check_fits` for each model's steps (see :func:`model_steps`)."""
    sizes = tuple(batches)
    for m in models:
        spec = get_spec(m)
        steps = model_steps(m, batches=sizes, gate=gate, calib_samples=calib_samples)
        check_fits(m, spec.input_shape, steps, weights_bytes=weights_bytes(m))


def check_file(path: str | Path, *, batch: int | None, step: str) -> None:
    """:func:`check_fits` for an ONNX file as it declares its input: ``batch`` images (its
    own fixed batch when it has one, else ``batch`` or :data:`GATE_BATCH`). A file this
    cannot read is left to the command, which says what is wrong with it."""
    import onnx

    p = Path(path)
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception:  # not ONNX: the command's own load says so, in one line
        return
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if not inputs:
        return
    dims = [
        d.dim_value if d.HasField("dim_value") else 0 for d in inputs[0].type.tensor_type.shape.dim
    ]
    if len(dims) != 4 or not all(dims[1:]):
        return
    images = dims[0] or batch or GATE_BATCH
    check_fits(str(p), tuple(dims[1:]), {step: images}, weights_bytes=p.stat().st_size)
