"""A submitted grid, validated into the same :class:`SweepConfig` the CLI's sweeps use.

A request may set the grid and how it is measured, never where anything is read or written:
the keys below only. ``artifacts``, ``weights`` and a ``calib_data`` path are the service's to
choose (names from requests never become paths), and so are the engine options that name a
file or folder (TensorRT's ``cache_dir`` and ``timing_cache``, OpenVINO's ``CACHE_DIR``); a
model is a zoo name, or the ONNX file uploaded with the request (its stored path is put in by
the service, not by the request). Its numbers, lists and cells are bounded by the loader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnbench.bench.run.sweep_config import SweepConfig, config_from_mapping
from cnnbench.engines import get_engine_class
from cnnbench.engines.options import paths_named
from cnnbench.errors import InvalidInputError
from cnnbench.limits import GRID_LIST_ITEMS

#: the keys a request may give
ALLOWED = (
    "models", "engines", "precisions", "batches", "scenarios", "stop", "server", "repeats",
    "engine_options", "seed", "device", "threads", "timeout_s", "quantizer", "calib_method",
    "calib_samples", "calib_data", "qdq_target", "profile", "timing", "fp16_converter",
)  # fmt: skip
#: calibration data a request may name (a path is the service's, never the request's)
CALIB_NAMES = ("digits", "random")
#: the word that stands for the uploaded file in ``models``
UPLOAD = "upload"


def validate(grid: Any, *, upload: Path | None, artifacts: Path) -> tuple[dict[str, Any], SweepConfig]:  # fmt: skip
    """The grid as the sweep file the job runs, and its config; one-line errors naming the key."""
    if not isinstance(grid, dict):
        raise InvalidInputError("grid: must be a JSON object (models, engines, precisions, ...)")
    unknown = sorted(set(grid) - set(ALLOWED))
    if unknown:
        raise InvalidInputError(
            f"grid: key '{unknown[0]}' is not accepted by the service (accepted: {', '.join(ALLOWED)})"
        )
    calib = grid.get("calib_data")
    if calib is not None and calib not in CALIB_NAMES:
        raise InvalidInputError(f"grid: calib_data must be one of {', '.join(CALIB_NAMES)}")
    models = grid.get("models")
    models = [models] if isinstance(models, str) else models
    if not isinstance(models, list) or not models or len(models) > GRID_LIST_ITEMS:
        raise InvalidInputError("grid: models must be a zoo name or a list of them")
    resolved: list[Any] = []
    # the uploaded file by its content: upload-<sha256 prefix> in rows and caches
    mine = {"model": str(upload), "name": f"upload-{upload.stem[:12]}"} if upload else None
    for m in models:
        if m == UPLOAD:
            if mine is None:
                raise InvalidInputError(f"grid: models names '{UPLOAD}' but no file was uploaded")
            resolved.append(mine)
        elif (
            isinstance(m, str)
            and "/" not in m
            and "\\" not in m
            and not m.endswith(".onnx")
            and ":" not in m
        ):
            resolved.append(m)
        else:
            raise InvalidInputError(
                f"grid: model {m!r} is not a zoo name; upload an ONNX file and name it '{UPLOAD}'"
            )
    if mine is not None and mine not in resolved:
        resolved.append(mine)  # an upload is always measured
    sweep = {**grid, "models": resolved, "artifacts": str(artifacts)}
    cfg = config_from_mapping(sweep, src="grid", base=artifacts)
    for engine, sets in cfg.engine_options.items():
        for opts in sets:
            named = paths_named(get_engine_class(engine).option_schema, opts)
            if named:
                raise InvalidInputError(
                    f"grid: engine_options.{engine}.{named[0]} names a path on the server; "
                    "the service chooses its own folders"
                )
    return sweep, cfg
