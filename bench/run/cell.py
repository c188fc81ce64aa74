"""One benchmark cell: prepare the artifact, load the engine, measure a scenario, build the row."""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cnnbench import engines
from cnnbench.batch import BatchRange
from cnnbench.bench.measure.energy import EnergyMeter
from cnnbench.bench.measure.environment import env_fields
from cnnbench.bench.measure.layer_report import row_fields as layer_fields
from cnnbench.bench.measure.loadgen import ServerConfig, find_peak, run_server, warm_sizes
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
from cnnbench.bench.measure.scenarios import (
    canonical_scenario,
    check_batch,
    method_fields,
    run_fixed,
)
from cnnbench.bench.measure.timing import StopRule, warmup
from cnnbench.bench.measure.validity import CpuWindow, verdict
from cnnbench.bench.results.files import cell_key
from cnnbench.bench.run.prepare import made_from, model_facts, prepare
from cnnbench.data.images import random_batches
from cnnbench.engines.base import Engine, EngineOptions, unsupported
from cnnbench.engines.cuda import cuda_ids, device_index, use_device
from cnnbench.errors import CnnbenchError, InvalidInputError, RuntimeUnavailableError, first_line
from cnnbench.models import get_spec
from cnnbench.models.spec import ModelSpec, Preprocessing
from cnnbench.precision import Int8Recipe, Precision, parse_precision


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines one cell. Names are canonicalised; bad values raise."""

    model: str
    engine: str
    #: the requested precision (the row's ``precision``)
    precision: Precision = Precision.FP32
    batch: int = 1
    scenario: str = "offline"
    device: str = "cpu"
    threads: int | None = None
    stop: StopRule = field(default_factory=StopRule)
    server: ServerConfig | None = None
    weights: str | None = None
    artifacts: str = "artifacts"
    seed: int = 0
    onnx_path: str | None = None
    onnx_sha256: str | None = None
    #: the model's ModelSpec as a dict (a sweep passes it so a cell need not import the zoo)
    model_spec: dict[str, Any] | None = None
    #: params and MACs, and the matmul peak cached, by the process that launched the cell: the
    #: measured process then runs no analysis and no peak microbenchmark of its own
    facts: dict[str, Any] | None = None
    #: which measurement of the cell this is (0, 1, ... with ``repeats``), each in its process
    repeat: int = 0
    #: how an INT8 file is made (quantizer, calibration); used only at precision int8
    int8: Int8Recipe = field(default_factory=Int8Recipe)
    #: this cell's engine options (``--engine-opt``, ``engine_options:``), typed by the engine
    engine_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model_spec is None:
            get_spec(self.model)  # UnknownNameError with suggestions
        object.__setattr__(self, "engine", engines.canonical(self.engine))
        object.__setattr__(self, "scenario", canonical_scenario(self.scenario))
        # A spec also arrives as JSON in a cell's process: the one parser names a bad value.
        object.__setattr__(self, "precision", parse_precision(self.precision))
        if not isinstance(self.batch, int) or isinstance(self.batch, bool) or self.batch < 1:
            raise InvalidInputError(f"batch must be a positive integer, got {self.batch!r}")
        check_batch(self.scenario, self.batch)
        dev = self.device
        if dev not in ("cpu", "cuda") and not (dev.startswith("cuda:") and dev[5:].isdigit()):
            raise InvalidInputError(f"device must be cpu, cuda or cuda:N, got {dev!r}")
        if self.threads is not None and self.threads < 1:
            raise InvalidInputError(f"threads must be >= 1, got {self.threads}")
        if self.scenario == "server" and self.server is None:
            raise InvalidInputError("the server scenario needs --target-qps or --find-peak")
        if isinstance(self.int8, dict):  # from JSON
            object.__setattr__(self, "int8", Int8Recipe(**self.int8))
        # The engine checks its options (and their combination with the device) when it is
        # made; making one imports no runtime.
        eng = self.make_engine()
        object.__setattr__(self, "engine_options", dict(eng.options.extra))

    def make_engine(self) -> Engine:
        """The cell's engine, unloaded, with its options."""
        cls = engines.get_engine_class(self.engine)
        return cls(EngineOptions(self.device, self.threads, dict(self.engine_options)))

    def options_text(self, *, identity_only: bool = False) -> str:
        """The engine options as ``k=v,...``: all of them, or those that change the result."""
        cls = engines.get_engine_class(self.engine)
        return cls.option_text(self.engine_options, identity_only=identity_only)

    def variant(self) -> str:
        """The cell's choices beyond the grid's axes that change what is measured (blank for
        the defaults): part of its key, so compare never matches two different setups."""
        parts = []
        if self.precision == Precision.INT8 and self.int8.quantizer != "ort":
            parts.append(f"quantizer={self.int8.quantizer}")
        opts = self.options_text(identity_only=True)
        if opts:
            parts.append(opts)
        return ",".join(parts)

    def spec(self) -> ModelSpec:
        """The model's ModelSpec, from ``model_spec`` when given (no zoo import), else the zoo."""
        if self.model_spec is None:
            return get_spec(self.model)
        d = dict(self.model_spec)
        pre = dict(d.pop("preprocessing"))
        pre["mean"], pre["std"] = tuple(pre["mean"]), tuple(pre["std"])
        d["input_shape"] = tuple(d["input_shape"])
        return ModelSpec(**d, preprocessing=Preprocessing(**pre))

    def key(self) -> str:
        row = {k: getattr(self, k) for k in ("model", "engine", "precision", "device", "batch")}
        row["scenario"] = self.scenario
        if self.server is not None and self.scenario == "server":
            row["target_qps"] = None if self.server.find_peak else self.server.target_qps
        row["repeat"] = self.repeat
        row["variant"] = self.variant()
        return cell_key(row)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        d = json.loads(text)
        d["stop"] = StopRule(**d["stop"])
        d["server"] = ServerConfig(**d["server"]) if d.get("server") else None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def check_runtime(engine: str, device: str, precision: Precision) -> None:
    """Raise a one-line error when ``engine`` cannot run ``precision`` on ``device`` here."""
    av = engines.probe(engine)
    if not av.available:
        reason = str(av.reason or "not installed")
        extra = f"; install with: {av.install}" if av.install and av.install not in reason else ""
        raise RuntimeUnavailableError(f"engine {av.name} is unavailable here: {reason}{extra}")
    kind = device.split(":")[0]
    if kind not in av.devices:
        raise RuntimeUnavailableError(
            f"engine {av.name} cannot use {device} on this machine (available: "
            f"{', '.join(av.devices)})"
        )
    runs = av.precisions_by_device.get(kind, ())
    if precision not in runs:
        raise unsupported(av.name, precision, device, runs)


def base_row(spec: RunSpec) -> dict[str, Any]:
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
        "weights": spec.weights,
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


def run_cell(spec: RunSpec) -> dict[str, Any]:
    """Measure one cell and return its row (raises on failure; see :func:`run_cell_safe`)."""
    row = base_row(spec)
    row["host_peak_rss_scope"] = reset_host_peak()
    check_runtime(spec.engine, spec.device, spec.precision)
    mspec = spec.spec()
    prep = prepare(
        mspec, spec.engine, spec.precision,
        weights=spec.weights, artifacts=Path(spec.artifacts), seed=spec.seed,
        onnx_path=Path(spec.onnx_path) if spec.onnx_path else None, onnx_sha256=spec.onnx_sha256,
        int8=spec.int8,
    )  # fmt: skip
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
    eng = spec.make_engine()
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
            else:
                energy = EnergyMeter(spec.device, cuda_index=dev_index, ids=ids)
                row.update(run_fixed(eng, x, spec.scenario, spec.stop, energy))
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
        row.update(layer_fields(eng))
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


def _measure_server(eng: Any, x: Any, spec: RunSpec, cuda: bool) -> dict[str, Any]:
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


def run_cell_safe(spec: RunSpec) -> dict[str, Any]:
    """``run_cell``, with any failure (but Ctrl-C) turned into an error row."""
    try:
        return run_cell(spec)
    except Exception as exc:  # one failed cell must become one error row
        row = base_row(spec)
        row["error"] = error_text(exc)
        return row
