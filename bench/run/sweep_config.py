"""The sweep config: a YAML grid of benchmark cells, validated to one-line errors.

Config keys (``models`` and ``engines`` are required; the rest default as ``cnnbench run``'s
flags do: fp32, offline, each scenario's own batch)::

    models: imagenet            # or "all", or a list of zoo names, your ONNX files (x.onnx,
                                # relative to this file) and module factories (pkg.mod:fn), or
                                # {model: x.onnx, name: mine, input_shape: 3,64,64}
    engines: [torch, onnxruntime]
    precisions: [fp32]          # optional from here on; default [fp32]
    batches: [1, 8]             # default: each scenario's own; single-stream takes batch 1 only
    scenarios: [single-stream, offline]   # default [offline]
    device: cpu                 # default: cpu; cuda for tensorrt
    threads: null
    seed: 0
    artifacts: artifacts
    weights: {resnet18: r18.pt} # optional per model: a file, torchvision, timm or a URL
    timeout_s: 600              # per cell; a cell past it becomes an error row
    repeats: 1                  # measure each cell N times, each in its own process
    stop: {warmup_count: 1, warmup_time: 0, min_count: 3, min_time: 0.5, max_time: 5}
    server: {target_qps: 100, max_queue_delay_ms: 2, latency_bound_ms: 50, find_peak: false}
    quantizer: ort              # INT8 recipe: ort | modelopt, calib_data, calib_method, ...
    qdq_target: onnxruntime     # INT8 Q/DQ placed for tensorrt | onnxruntime | openvino
                                #   (default: each cell's engine's own)
    timing: end_to_end          # on a GPU: end_to_end | gpu_compute (no copies; CUDA graphs)
    profile: false              # true: each cell profiled per layer after it is measured
    fp16_converter: onnxconverter   # or autocast (NVIDIA ModelOpt's AutoCast)
    engine_options:             # per engine: one set of options, or a list of sets to compare
      openvino: [{}, {inference_precision: f32}]
      onnxruntime: {graph_optimization_level: extended}

``models`` names zoo models; the grid runs model-major so each model's export happens once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench import engines
from cnnbench.bench.measure.cuda_timing import END_TO_END, check_timing, parse_timing
from cnnbench.bench.measure.loadgen import ServerConfig
from cnnbench.bench.measure.scenarios import SCENARIOS, canonical_scenario
from cnnbench.bench.measure.timing import StopRule
from cnnbench.bench.run.cell_spec import CellSpec, timing_options
from cnnbench.bench.run.config_values import (
    bounded,
    fail,
    list_of,
    mapping,
    name_or_path,
    named,
    numbers,
)
from cnnbench.bench.run.sweep_keys import engine_options, model_name
from cnnbench.config_yaml import read_yaml
from cnnbench.engines import default_device
from cnnbench.errors import InvalidInputError
from cnnbench.footprint import check_models
from cnnbench.limits import BATCH, CALIB_SAMPLES, GRID_CELLS, REPEATS, SEED, THREADS, TIMEOUT_S
from cnnbench.models import (
    get_spec,
    list_models,
    resolve_weights,
    user_model,
    weights_provenance,
)
from cnnbench.precision import Int8Recipe, Precision, check_fp16_converter, parse_precision
from cnnbench.weights_hub import Weights

REQUIRED = ("models", "engines")
#: what a grid measures when it does not say (as ``cnnbench run``): FP32, offline, and each
#: scenario's own batch (1; multi-stream and server 8)
DEFAULTS: dict[str, list[str]] = {"precisions": ["fp32"], "scenarios": ["offline"]}
OPTIONAL = (
    "precisions", "batches", "scenarios", "device", "threads", "seed", "artifacts", "weights", "timeout_s", "stop", "server", "repeats",
    "quantizer", "calib_data", "calib_method", "calib_samples", "qdq_target", "engine_options",
    "timing", "fp16_converter", "profile",
)  # fmt: skip


#: a sweep file's keys of the INT8 recipe (cnnbench.precision.Int8Recipe)
INT8_KEYS = ("quantizer", "calib_data", "calib_method", "calib_samples", "qdq_target")


@dataclass(frozen=True)
class SweepConfig:
    """A grid of cells, typed: from a YAML file or a service request (:func:`load_config`,
    :func:`config_from_mapping`) or from ``cnnbench run``'s options
    (:mod:`cnnbench.cli.run_options`). Both give the same cells to the same runner.

    Its producers check every value (names canonical, engine options typed by each engine's
    schema for its device); the constructor trusts them.
    """

    models: tuple[str, ...]
    engines: tuple[str, ...]
    precisions: tuple[Precision, ...]
    batches: tuple[int, ...]
    scenarios: tuple[str, ...]
    device: str | None = None
    threads: int | None = None
    seed: int = 0
    artifacts: str = "artifacts"
    #: per model, its weights, resolved (fetched and hash-checked) where the grid was read
    weights: dict[str, Weights] = field(default_factory=dict)
    timeout_s: float = 600.0
    stop: StopRule = field(default_factory=StopRule)
    server: ServerConfig | None = None
    #: measurements of each cell, each in its own process (compare then sees run-to-run noise)
    repeats: int = 1
    #: how INT8 files are made (quantizer, calibration data, method, samples)
    int8: Int8Recipe = field(default_factory=Int8Recipe)
    #: per engine, the option sets to measure (each a cell of its own); none given: ({},)
    engine_options: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)
    #: on a GPU, how queries are timed (bench.measure.cuda_timing)
    timing: str = END_TO_END
    #: how FP16 files are made (onnxconverter, autocast)
    fp16_converter: str = "onnxconverter"
    #: profile each cell per layer after measuring it (bench.measure.profile)
    profile: bool = False

    def __post_init__(self) -> None:
        n = self.cell_count()
        if n > GRID_CELLS:
            raise InvalidInputError(
                f"the grid has {n:,} cells; a grid has at most {GRID_CELLS:,} (cells x repeats): "
                "split it into several sweeps"
            )

    def cell_count(self) -> int:
        """How many cells :meth:`cells` gives, counted without making them."""
        options = sum(len(self.engine_options.get(e, ({},))) for e in self.engines)
        per_scenario = sum(
            sum(1 for b in self.batches if b == 1) if sc == "single-stream" else len(self.batches)
            for sc in self.scenarios
        )
        return len(self.models) * len(self.precisions) * options * per_scenario * self.repeats

    def device_of(self, engine: str) -> str:
        """The device engine ``engine`` runs on in this grid."""
        return self.device or default_device(engine)

    def cells(self) -> tuple[list[CellSpec], list[str]]:
        """The cells in run order (model-major, so each model's export happens once) and the
        combinations skipped as not applicable. With ``repeats``, the whole grid runs again
        after the first pass (interleaved, so a drift of the machine spreads over all cells)."""
        specs: list[CellSpec] = []
        skipped: list[str] = []
        for m in self.models:
            mspec, um, w = get_spec(m), user_model(m), self.weights.get(m)
            wid = weights_provenance(m, w, self.seed)
            for e, p, sc, b in itertools.product(
                self.engines, self.precisions, self.scenarios, self.batches
            ):
                if sc == "single-stream" and b != 1:
                    skipped.append(f"{m}/{e}/{p}/{sc}/batch {b}")
                    continue
                for given in self.engine_options.get(e, ({},)):
                    opts = timing_options(e, self.device_of(e), self.timing, given)
                    specs.append(
                        CellSpec(
                            model=m,
                            model_spec=mspec,
                            user_model=um,
                            engine=e,
                            precision=p,
                            batch=b,
                            scenario=sc,
                            device=self.device_of(e),
                            threads=self.threads,
                            stop=self.stop,
                            server=self.server if sc == "server" else None,
                            weights=str(w.path) if w else None,
                            weights_id=wid,
                            artifacts=self.artifacts,
                            seed=self.seed,
                            int8=self.int8.for_engine(e, opts),
                            engine_options=opts,
                            timing=self.timing,
                            fp16_converter=self.fp16_converter,
                            profile=self.profile,
                        )  # fmt: skip
                    )
        if self.repeats > 1:
            specs = [s.with_repeat(r) for r in range(self.repeats) for s in specs]
        return specs, skipped


def server_config(given: dict[str, Any], batches: tuple[int, ...], seed: int) -> ServerConfig:
    """The server scenario's settings; the dynamic batcher's maximum is the largest batch."""
    return ServerConfig(
        max_batch=max(batches), seed=seed, **{k: v for k, v in given.items() if v is not None}
    )


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep YAML file (at most 1 MiB, no aliases: it cannot expand);
    every problem is one line naming the file and the key."""
    p = Path(path)
    return config_from_mapping(read_yaml(p), src=str(p), base=p.parent)


def config_from_mapping(raw: Any, *, src: str, base: Path) -> SweepConfig:
    """A sweep config from its keys (a YAML file's, or a service request's): the edge where a
    grid's values are parsed and checked, once. ``src`` names it in errors, ``base`` is where
    relative model paths are found."""
    if not isinstance(raw, dict):
        raise fail(src, "must be a mapping of keys (models, engines, ...)")
    for k in REQUIRED:
        if k not in raw or raw[k] is None:
            raise fail(src, f"missing key '{k}'")
    unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise fail(src, f"unknown key '{unknown[0]}' (known: {', '.join(REQUIRED + OPTIONAL)})")
    scens = [
        named(src, "scenarios", lambda s=s: canonical_scenario(str(s)))
        for s in list_of(src, "scenarios", _given(raw, "scenarios"))
    ]
    given_batches = raw.get("batches")
    if given_batches is None:  # each scenario's own batch, as `cnnbench run` takes
        given_batches = sorted({SCENARIOS[s].default_batch for s in scens})
    _check_size(
        src, {**raw, "precisions": _given(raw, "precisions"), "batches": given_batches}, scens
    )  # fmt: skip  (before any model is read)
    models = _models(src, base, raw["models"])
    engs = [
        named(src, "engines", lambda e=e: engines.canonical("null" if e is None else str(e)))
        for e in list_of(src, "engines", raw["engines"])
    ]  # YAML reads an unquoted `null` as None: in this list that is the null engine
    precs = [
        named(src, "precisions", lambda x=x: parse_precision(str(x)))
        for x in list_of(src, "precisions", _given(raw, "precisions"))
    ]
    batches = [bounded(src, "batches", BATCH, b) for b in list_of(src, "batches", given_batches)]
    kw = _measuring(src, raw, tuple(batches), scens)
    kw.update(_settings(src, raw))
    kw.update(_how(src, raw, precs, engs, scens, kw))
    if raw.get("engine_options") is not None:
        kw["engine_options"] = engine_options(src, raw["engine_options"], engs, kw.get("device"))
    else:  # no options, but each engine's defaults must still suit the device
        for e in engs:
            named(
                src,
                "device",
                lambda e=e: engines.check_options(e, kw.get("device") or default_device(e), {}),
            )
    cfg = named(src, "grid", lambda: SweepConfig(
        tuple(models), tuple(engs), tuple(precs), tuple(batches), tuple(scens), **kw
    ))  # fmt: skip
    gate = any(engines.get_engine_class(e).loads_onnx for e in engs)
    calib = cfg.int8.calib_samples if any(p.calibrated for p in precs) else None
    named(
        src, "models", lambda: check_models(models, batches=batches, gate=gate, calib_samples=calib)
    )
    return cfg


def _how(
    src: str, raw: dict[str, Any], precs: list[Precision], engs: list[str], scens: list[str],
    kw: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """How the cells are made and measured beyond the grid: the FP16 converter, FP8's
    calibration, the per-layer profile and the GPU timing mode."""
    out: dict[str, Any] = {}
    if raw.get("fp16_converter") is not None:
        conv = name_or_path(src, "fp16_converter", raw["fp16_converter"])
        out["fp16_converter"] = named(src, "fp16_converter", lambda: check_fp16_converter(conv))
    if Precision.FP8 in precs and "int8" in kw:  # FP8 is ModelOpt's: its calibration methods
        method = kw["int8"].calib_method
        named(src, "calib_method", lambda: Int8Recipe(quantizer="modelopt", calib_method=method))
    if raw.get("profile") is not None:
        if not isinstance(raw["profile"], bool):
            raise fail(src, f"key 'profile' must be true or false, got {raw['profile']!r}")
        out["profile"] = raw["profile"]
    if raw.get("timing") is not None:
        out["timing"] = named(
            src, "timing", lambda: parse_timing(name_or_path(src, "timing", raw["timing"]))
        )
        for e in engs:
            dev = kw.get("device") or default_device(e)
            named(src, "timing", lambda d=dev: check_timing(out["timing"], d, tuple(scens)))
    return out


def _check_size(src: str, raw: dict[str, Any], scens: list[str]) -> None:
    """Refuse a grid of more than GRID_CELLS cells from its lists' lengths alone (each
    engine's option sets counted once: the exact count is checked again on the config)."""
    lengths = {}
    for k in ("models", "engines", "precisions", "batches"):
        v = raw[k]
        if k == "models" and v in ("imagenet", "all"):
            v = list_models(imagenet_only=v == "imagenet")
        lengths[k] = len(list_of(src, k, v, mappings=k == "models"))
    repeats = bounded(src, "repeats", REPEATS, raw["repeats"]) if raw.get("repeats") else 1
    singles = scens.count("single-stream")
    per_scenario = (len(scens) - singles) * lengths["batches"] + singles
    n = lengths["models"] * lengths["engines"] * lengths["precisions"] * per_scenario * repeats
    if n > GRID_CELLS:
        raise fail(
            src, f"the grid has at least {n:,} cells; a grid has at most {GRID_CELLS:,} "
            "(cells x repeats): split it into several sweeps"
        )  # fmt: skip


def _given(raw: dict[str, Any], key: str) -> Any:
    """A key's value, or its default (DEFAULTS) when the grid leaves it out."""
    return raw[key] if raw.get(key) is not None else DEFAULTS[key]


def _models(src: str, base: Path, given: Any) -> list[str]:
    """``models:``: ``imagenet``, ``all``, or a list of zoo names and user models (each
    registered here, read once)."""
    if given in ("imagenet", "all"):
        given = list_models(imagenet_only=given == "imagenet")
    models = [model_name(src, base, m) for m in list_of(src, "models", given, mappings=True)]
    for m in models:
        named(src, "models", lambda m=m: get_spec(m))
    return models


def _measuring(src: str, raw: dict[str, Any], batches: tuple[int, ...], scens: list[str]) -> dict[str, Any]:  # fmt: skip
    """The stop rule and the server scenario's settings."""
    kw: dict[str, Any] = {}
    try:
        if "stop" in raw:
            kw["stop"] = StopRule(**numbers(src, "stop", mapping(src, "stop", raw["stop"])))
        if "server" in raw:
            given = numbers(src, "server", mapping(src, "server", raw["server"]))
            kw["server"] = server_config(given, batches, 0)
    except TypeError as exc:
        raise fail(src, f"unknown option in 'stop' or 'server': {exc}") from None
    except ValueError as exc:
        raise fail(src, str(exc)) from None
    if "server" in scens and "server" not in kw:
        raise fail(src, "missing key 'server' (target_qps or find_peak) for the server scenario")
    return kw


def _settings(src: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The device, threads, seed, repeats, timeout, artifacts, weights and INT8 recipe."""
    kw: dict[str, Any] = {}
    if raw.get("device") is not None:
        kw["device"] = named(src, "device", lambda: engines.parse_device(str(raw["device"])))
    if raw.get("artifacts") is not None:
        kw["artifacts"] = name_or_path(src, "artifacts", raw["artifacts"])
    for k, bound in (("threads", THREADS), ("repeats", REPEATS), ("seed", SEED)):
        if raw.get(k) is not None:
            kw[k] = bounded(src, k, bound, raw[k])
    if raw.get("timeout_s") is not None:
        kw["timeout_s"] = float(bounded(src, "timeout_s", TIMEOUT_S, raw["timeout_s"]))
    recipe = {k: raw[k] for k in INT8_KEYS if raw.get(k) is not None}
    if recipe:
        for k in ("quantizer", "calib_data", "calib_method", "qdq_target"):
            if k in recipe:
                recipe[k] = name_or_path(src, k, recipe[k])
        if "calib_samples" in recipe:
            recipe["calib_samples"] = bounded(
                src, "calib_samples", CALIB_SAMPLES, recipe["calib_samples"]
            )
        kw["int8"] = named(src, "int8", lambda: Int8Recipe(**recipe))
    if raw.get("weights") is not None:
        kw["weights"] = {
            name_or_path(src, "weights", k): named(
                src,
                f"weights.{k}",
                lambda k=k, v=v: resolve_weights(str(k), name_or_path(src, f"weights.{k}", v)),
            )  # fmt: skip
            for k, v in mapping(src, "weights", raw["weights"]).items()
        }
    return kw
