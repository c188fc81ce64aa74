"""One benchmark cell: prepare the artifact, load the engine, measure a scenario, build the row.

The cell is a :class:`bench.run.cell_spec.CellSpec`, typed and checked before it gets here."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cnnbench import engines
from cnnbench.batch import BatchRange
from cnnbench.bench.measure.energy import EnergyMeter
from cnnbench.bench.measure.environment import env_fields
from cnnbench.bench.measure.layer_report import row_fields as layer_fields
from cnnbench.bench.measure.loadgen import find_peak, run_server, warm_sizes
from cnnbench.bench.measure.memory import (
    NvmlSampler,
    device_memory_fields,
    host_peak_rss_mb,
    host_rss_mb,
    reset_host_peak,
    torch_cuda_max_allocated_mb,
    torch_cuda_reset_peak,
)
from cnnbench.bench.measure.peak import get_peak
from cnnbench.bench.measure.profile import PROFILE_KEY, profile_engine
from cnnbench.bench.measure.profile import row_fields as profile_fields
from cnnbench.bench.measure.profile_text import int8_warning
from cnnbench.bench.measure.scenarios import (
    method_fields,
    run_fixed,
)
from cnnbench.bench.measure.timing import warmup
from cnnbench.bench.measure.validity import CpuWindow, verdict
from cnnbench.bench.run.cell_spec import CellSpec
from cnnbench.bench.run.prepare import made_from, model_facts, prepare
from cnnbench.data.images import random_batches
from cnnbench.engines.base import Engine, EngineOptions, unsupported
from cnnbench.engines.cuda import cuda_ids, device_index, use_device
from cnnbench.errors import CnnbenchError, RuntimeUnavailableError, first_line
from cnnbench.precision import Precision


def check_runtime(engine: str, device: str, precision: Precision) -> None:
    """Raise a one-line error when ``engine`` cannot run ``precision`` on ``device`` here."""
    av = engines.probe(engine)
    if not av.available:
        reason = str(av.reason or "not installed")
        extra = f"; install with: {av.install}" if av.install and av.install not in reason else ""
        raise RuntimeUnavailableError(
            f"engine {av.name} is unavailable here: {reason}{extra}; {available_here()}"
        )
    kind = device.split(":")[0]
    if kind not in av.devices:
        raise RuntimeUnavailableError(
            f"engine {av.name} cannot use {device} on this machine (available: "
            f"{', '.join(av.devices)})"
        )
    runs = av.precisions_by_device.get(kind, ())
    if precision not in runs:
        raise unsupported(av.name, precision, device, runs)


def available_here() -> str:
    """The engines that can run here, with their devices, as one clause of an error line."""
    have = [f"{a.name} ({', '.join(a.devices)})" for a in engines.probe_all() if a.available]
    return f"engines available here: {', '.join(have) or 'none'}"


def base_row(spec: CellSpec) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": spec.model,
        "engine": spec.engine,
        "precision": spec.precision,
        "device": spec.device,
        "batch": spec.batch,
        "scenario": spec.scenario,
        "error": None,
        # until a measurement says otherwise (bench.measure.validity.verdict)
        "valid": False,
        "invalid_reason": "no measurement",
        "seed": spec.seed,
        "weights": spec.weights_id,
        "weights_file": spec.weights,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cell": spec.key(),
        "repeat": spec.repeat,
        "variant": spec.variant() or None,
        "engine_options": spec.options_text() or None,
    }
    if spec.server is not None and spec.scenario == "server":
        row["target_qps"] = None if spec.server.find_peak else spec.server.target_qps
    row.update(spec.stop.to_dict())
    row.update(method_fields())
    return row


def run_cell(spec: CellSpec) -> dict[str, Any]:
    """Measure one cell and return its row (raises on failure; see :func:`run_cell_safe`)."""
    row = base_row(spec)
    row["host_peak_rss_scope"] = reset_host_peak()
    check_runtime(spec.engine, spec.device, spec.precision)
    mspec = spec.model_spec
    prep = prepare(spec)
    row.update(
        prepare_s=round(prep.seconds, 3),
        artifact=str(prep.artifact.onnx_path) if prep.artifact.onnx_path else prep.source,
        artifact_sha256=prep.artifact.sha256,
    )
    row.update(made_from(prep.artifact.onnx_path))
    row.update(spec.facts if spec.facts is not None else model_facts(spec.model))
    x = random_batches(mspec, count=1, batch=spec.batch, seed=spec.seed)[0]
    cuda = spec.device.startswith("cuda")
    dev_index = device_index(spec.device) if cuda else 0
    batches = BatchRange(1, spec.batch, spec.batch) if spec.scenario == "server" else None
    eng = make_engine(spec)
    # cuda:N: streams, events, graph captures and TensorRT contexts all land on device N
    with use_device(spec.device), eng:
        # the device's used memory before anything of the cell is on it
        ids = cuda_ids(dev_index) if cuda else None
        sampler = NvmlSampler(dev_index, ids=ids).baseline() if cuda else None
        t0 = time.perf_counter()
        eng.load(prep.artifact, batches or BatchRange.fixed(spec.batch))
        row["load_s"] = round(time.perf_counter() - t0, 3)
        row["host_rss_after_load_mb"] = host_rss_mb()
        if cuda:
            torch_cuda_reset_peak(dev_index)
        with sampler or contextlib.nullcontext(), CpuWindow() as window:
            if spec.scenario == "server":
                row.update(_measure_server(eng, x, spec, cuda))
                row["energy_note"] = "energy is measured in the fixed-load scenarios only"
                if cuda:  # a query's time runs from its arrival to its result on the host
                    row["timing_mode"] = spec.timing
            else:
                energy = EnergyMeter(spec.device, cuda_index=dev_index, ids=ids)
                row.update(
                    run_fixed(eng, x, spec.scenario, spec.stop, energy, spec.timing, window.guard)
                )
        row.update(window.fields())
        if cuda:
            row.update(
                device_memory_fields(
                    sampler,
                    torch_cuda_max_allocated_mb(dev_index),
                    eng.memory(),
                    torch_allocates=eng.allocates_with_torch,
                )
            )
        else:
            row.update({f"engine_mem_{k}": v for k, v in eng.memory().items()})
            row["device_mem_peak_mb"] = None
        row.update(_describe(eng))
        # the peak is the measurement's; the per-layer report (a profiled session for ONNX
        # Runtime) comes after it, so it never counts in the cell's memory
        row["host_peak_rss_mb"] = host_peak_rss_mb()
        row.update(_what_ran(eng, x, spec, row))
    # The null engine computes nothing: no efficiency to speak of.
    if spec.engine == "null":
        peak = None
    else:  # measured here only when no launcher cached it (in-process runs)
        peak = get_peak(spec.device, spec.precision, measure=spec.facts is None)
    row.update(_efficiency(row if spec.engine != "null" else {}, peak))
    row.update(env_fields())
    if hasattr(os, "getloadavg"):
        row["env_loadavg_1m"] = round(os.getloadavg()[0], 2)
    row.update(verdict(row))
    return row


def _what_ran(eng: Engine, x: Any, spec: CellSpec, row: dict[str, Any]) -> dict[str, Any]:
    """After the measurement: the layers that ran in which precision (every cell whose engine
    says), the warning of an INT8 cell that did not run INT8, and (``spec.profile``) the
    per-layer profile, its summary in the row and its layers under ``PROFILE_KEY``."""
    out = layer_fields(eng)
    out["int8_warning"] = (
        int8_warning(
            spec.precision,
            out.get("macs_int8_share"),
            engine=spec.engine,
            qdq_target=spec.int8.target,
        )  # fmt: skip
        or None
    )
    if not spec.profile:
        return out
    fp32 = Path(spec.artifacts) / spec.model / "fp32" / "model.onnx"
    onnx = None if eng.loads_onnx or not fp32.is_file() else fp32  # torch: align by its file
    try:
        prof = profile_engine(eng, x, p50_ms=row.get("latency_ms_p50"), model=spec.model, onnx=onnx)
    except CnnbenchError as exc:  # a profile never costs the measurement
        out["profile_error"] = str(exc)
        return out
    out.update(profile_fields(prof))
    out[PROFILE_KEY] = prof.to_dict()
    return out


def make_engine(spec: CellSpec) -> Engine:
    """The cell's engine, unloaded, with its options (typed and checked in the spec)."""
    cls = engines.get_engine_class(spec.engine)
    return cls(EngineOptions(spec.device, spec.threads, dict(spec.engine_options)))


def _measure_server(eng: Any, x: Any, spec: CellSpec, cuda: bool) -> dict[str, Any]:
    assert spec.server is not None
    cfg = replace(spec.server, max_batch=spec.batch, seed=spec.seed)

    def infer(a: Any) -> None:
        eng.infer(a)
        if cuda:
            eng.synchronize()

    for k in warm_sizes(spec.batch):
        infer(x[:k])
    warm_n, warm_ns = warmup(infer, x, spec.stop)
    if cfg.find_peak:
        out = find_peak(infer, x, cfg, spec.stop)
        out["peak_search"] = json.dumps(out.get("peak_search"))
    else:
        assert cfg.target_qps is not None
        out = run_server(infer, x, cfg, cfg.target_qps, spec.stop)
    out.update(
        samples=out["queries"],
        warmup_count=warm_n,
        warmup_s=round(warm_ns / 1e9, 6),
        headline_metric="latency_ms_p99",
        headline_value=out["latency_ms_p99"],
    )
    if cfg.latency_bound_ms is not None:
        out["meets_latency_bound"] = out["latency_ms_p99"] <= cfg.latency_bound_ms
    return out


def _describe(eng: Engine) -> dict[str, Any]:
    """The row's record of what ran; ``precision`` (requested) is already in the row."""
    art = eng.artifact
    return {
        "artifact_precision": art.precision if art else None,
        "effective_precision": eng.effective_precision(),
        "engine_version": eng.version,
        "threads": eng.threads,
        "engine_info": json.dumps(eng.describe(), sort_keys=True, default=str),
    }


def _efficiency(row: dict[str, Any], peak: Any) -> dict[str, Any]:
    macs, ips = row.get("macs"), row.get("throughput_ips")
    out: dict[str, Any] = {"gmacs_per_s": None, "peak_gmacs_per_s": None, "efficiency": None}
    if macs and ips and math.isfinite(ips):
        out["gmacs_per_s"] = macs * ips / 1e9
    if peak is not None:
        out["peak_gmacs_per_s"] = peak.gmacs_per_s
        out["peak_source"] = peak.source + (" (cached)" if peak.cached else "")
        if out["gmacs_per_s"] is not None:
            out["efficiency"] = out["gmacs_per_s"] / peak.gmacs_per_s
    return out


def error_text(exc: BaseException) -> str:
    """One line describing a failure, for the ``error`` column."""
    if isinstance(exc, CnnbenchError):
        text = str(exc)
    elif isinstance(exc, MemoryError):
        text = "out of memory (MemoryError)"
    else:
        text = type(exc).__name__
        if str(exc).strip():
            text += f": {first_line(exc, 500)}"
        if any(s in text for s in _ALLOC_FAILED):  # a runtime's own words for it
            text = f"out of memory (the engine could not allocate a buffer): {text}"
    return " ".join(text.split())[:500]


#: how runtimes report a failed allocation (ONNX Runtime's arena, C++ new)
_ALLOC_FAILED = ("Failed to allocate memory", "bad_alloc", "out of memory")


def error_row(spec: CellSpec, message: str) -> dict[str, Any]:
    """The row of a cell that could not be measured: its key, ``error`` and the environment."""
    row = base_row(spec)
    row["error"] = message
    row.update(env_fields())
    return row


def run_cell_safe(spec: CellSpec) -> dict[str, Any]:
    """``run_cell``, with any failure (but Ctrl-C) turned into an error row."""
    try:
        return run_cell(spec)
    except Exception as exc:  # one failed cell must become one error row
        row = base_row(spec)
        row["error"] = error_text(exc)
        return row
