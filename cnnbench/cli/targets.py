"""What a per-layer command runs on: a zoo model (its artifact prepared as a cell's would be)
or the user's ONNX file, and the engine that loads it (shared by layers and profile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cnnbench.bench.measure.layer_report import file_artifact
from cnnbench.bench.run.cell import check_runtime, make_engine
from cnnbench.bench.run.cell_spec import CellSpec
from cnnbench.bench.run.prepare import prepare
from cnnbench.cli.flags import INT8_FIELDS
from cnnbench.cli.run_options import RunOptions, check_inputs
from cnnbench.engines import get_engine_class
from cnnbench.engines.base import Artifact, Engine, EngineOptions
from cnnbench.footprint import check_fits


def engine_and_artifact(o: dict[str, Any], engine: str) -> tuple[Engine, Artifact, CellSpec | None]:
    """The unloaded engine, the artifact it loads and, for a MODEL, the cell it is (the file
    exported, converted and verified as a run would). A FILE takes no recipe flags."""
    target = Path(o["target"])
    if target.suffix.lower() == ".onnx":
        given = {k: o[k] for k in (*INT8_FIELDS, "fp16_converter") if o.get(k) is not None}
        if given or o.get("weights"):
            raise click.UsageError(
                "--weights, the INT8/FP8 recipe and --fp16-converter are for a MODEL, not a file"
            )
        art = file_artifact(target, o["precisions"])
        check_fits(str(target), art.input_shape, {"measurement": int(o.get("batches") or 1)})
        opts = RunOptions.from_params({**o, "model": None})
        device = opts.device_of(engine)
        extra = opts.engine_options.get(engine, {})
        check_runtime(engine, device, art.precision)
        return get_engine_class(engine)(EngineOptions(device, opts.threads, extra)), art, None
    opts = RunOptions.from_params({**o, "model": o["target"]})
    cfg = opts.grid()
    check_inputs(cfg)
    spec = cfg.cells()[0][0]
    check_runtime(spec.engine, spec.device, spec.precision)  # before any export
    return make_engine(spec), prepare(spec).artifact, spec
