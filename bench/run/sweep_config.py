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

import yaml

from cnnbench import engines
from cnnbench.bench.measure.cuda_timing import END_TO_END, check_timing, parse_timing
from cnnbench.bench.measure.loadgen import ServerConfig
from cnnbench.bench.measure.scenarios import SCENARIOS, canonical_scenario
from cnnbench.bench.measure.timing import StopRule
from cnnbench.bench.run.cell_spec import CellSpec, timing_options
from cnnbench.bench.run.sweep_keys import engine_options, fail, mapping, model_name, named
from cnnbench.engines import default_device
from cnnbench.errors import InvalidInputError
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


def _fail(src: str, msg: str) -> InvalidInputError:
    return fail(src, msg)


def _list(src: str, key: str, v: Any) -> list[Any]:
    items = v if isinstance(v, list) else [v] if isinstance(v, (str, int)) else None
    if not items:
        raise _fail(src, f"key '{key}' must be a non-empty list")
    return items


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep YAML file; every problem is one line naming the key."""
    p = Path(path)
    src = str(p)
    if not p.is_file():
        raise InvalidInputError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise _fail(src, f"not valid YAML{where}") from None
    return config_from_mapping(raw, src=src, base=p.parent)


def config_from_mapping(raw: Any, *, src: str, base: Path) -> SweepConfig:
    """A sweep config from its keys (a YAML file's, or a service request's): the edge where a
    grid's values are parsed and checked, once. ``src`` names it in errors, ``base`` is where
    relative model paths are found."""
    if not isinstance(raw, dict):
        raise _fail(src, "must be a mapping of keys (models, engines, ...)")
    for k in REQUIRED:
        if k not in raw or raw[k] is None:
            raise _fail(src, f"missing key '{k}'")
    unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise _fail(src, f"unknown key '{unknown[0]}' (known: {', '.join(REQUIRED + OPTIONAL)})")
    models = _models(src, base, raw["models"])
    engs = [
        _named(src, "engines", lambda e=e: engines.canonical("null" if e is None else str(e)))
        for e in _list(src, "engines", raw["engines"])
    ]  # YAML reads an unquoted `null` as None: in this list that is the null engine
    precs = [
        _named(src, "precisions", lambda x=x: parse_precision(str(x)))
        for x in _list(src, "precisions", _given(raw, "precisions"))
    ]
    scens = [
        _named(src, "scenarios", lambda s=s: canonical_scenario(str(s)))
        for s in _list(src, "scenarios", _given(raw, "scenarios"))
    ]
    given_batches = raw.get("batches")
    if given_batches is None:  # each scenario's own batch, as `cnnbench run` takes
        given_batches = sorted({SCENARIOS[s].default_batch for s in scens})
    batches = [_positive_int(src, "batches", b) for b in _list(src, "batches", given_batches)]
    kw = _measuring(src, raw, tuple(batches), scens)
    kw.update(_settings(src, raw))
    if raw.get("fp16_converter") is not None:
        conv = raw["fp16_converter"]
        kw["fp16_converter"] = _named(src, "fp16_converter", lambda: check_fp16_converter(conv))
    if Precision.FP8 in precs and "int8" in kw:  # FP8 is ModelOpt's: its calibration methods
        method = kw["int8"].calib_method
        _named(src, "calib_method", lambda: Int8Recipe(quantizer="modelopt", calib_method=method))
    if raw.get("profile") is not None:
        if not isinstance(raw["profile"], bool):
            raise _fail(src, f"key 'profile' must be true or false, got {raw['profile']!r}")
        kw["profile"] = raw["profile"]
    if raw.get("timing") is not None:
        kw["timing"] = _named(src, "timing", lambda: parse_timing(str(raw["timing"])))
        for e in engs:
            dev = kw.get("device") or default_device(e)
            _named(src, "timing", lambda d=dev: check_timing(kw["timing"], d, tuple(scens)))
    if raw.get("engine_options") is not None:
        kw["engine_options"] = engine_options(src, raw["engine_options"], engs, kw.get("device"))
    else:  # no options, but each engine's defaults must still suit the device
        for e in engs:
            _named(
                src,
                "device",
                lambda e=e: engines.check_options(e, kw.get("device") or default_device(e), {}),
            )
    return SweepConfig(tuple(models), tuple(engs), tuple(precs), tuple(batches), tuple(scens), **kw)


def _given(raw: dict[str, Any], key: str) -> Any:
    """A key's value, or its default (DEFAULTS) when the grid leaves it out."""
    return raw[key] if raw.get(key) is not None else DEFAULTS[key]


def _models(src: str, base: Path, given: Any) -> list[str]:
    """``models:``: ``imagenet``, ``all``, or a list of zoo names and user models (each
    registered here, read once)."""
    if given in ("imagenet", "all"):
        given = list_models(imagenet_only=given == "imagenet")
    models = [model_name(src, base, m) for m in _list(src, "models", given)]
    for m in models:
        _named(src, "models", lambda m=m: get_spec(m))
    return models


def _positive_int(src: str, key: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        what = "batch" if key == "batches" else key
        raise _fail(src, f"key '{key}': {what} must be a positive integer, got {v!r}")
    return v


def _measuring(src: str, raw: dict[str, Any], batches: tuple[int, ...], scens: list[str]) -> dict[str, Any]:  # fmt: skip
    """The stop rule and the server scenario's settings."""
    kw: dict[str, Any] = {}
    try:
        if "stop" in raw:
            kw["stop"] = StopRule(**_mapping(src, "stop", raw["stop"]))
        if "server" in raw:
            kw["server"] = server_config(_mapping(src, "server", raw["server"]), batches, 0)
    except TypeError as exc:
        raise _fail(src, f"unknown option in 'stop' or 'server': {exc}") from None
    except ValueError as exc:
        raise _fail(src, str(exc)) from None
    if "server" in scens and "server" not in kw:
        raise _fail(src, "missing key 'server' (target_qps or find_peak) for the server scenario")
    return kw


def _settings(src: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The device, threads, seed, repeats, timeout, artifacts, weights and INT8 recipe."""
    kw: dict[str, Any] = {}
    if raw.get("device") is not None:
        kw["device"] = _named(src, "device", lambda: engines.parse_device(str(raw["device"])))
    if raw.get("artifacts") is not None:
        kw["artifacts"] = str(raw["artifacts"])
    for k in ("threads", "repeats"):
        if raw.get(k) is not None:
            kw[k] = _positive_int(src, k, raw[k])
    if raw.get("seed") is not None:
        if isinstance(raw["seed"], bool) or not isinstance(raw["seed"], int):
            raise _fail(src, f"key 'seed' must be an integer, got {raw['seed']!r}")
        kw["seed"] = raw["seed"]
    if raw.get("timeout_s") is not None:
        t = raw["timeout_s"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0:
            raise _fail(src, f"key 'timeout_s' must be a positive number, got {t!r}")
        kw["timeout_s"] = float(t)
    recipe = {k: raw[k] for k in INT8_KEYS if raw.get(k) is not None}
    if recipe:
        if "calib_data" in recipe:
            recipe["calib_data"] = str(recipe["calib_data"])
        kw["int8"] = _named(src, "int8", lambda: Int8Recipe(**recipe))
    if raw.get("weights") is not None:
        kw["weights"] = {
            str(k): _named(src, f"weights.{k}", lambda k=k, v=v: resolve_weights(str(k), str(v)))
            for k, v in _mapping(src, "weights", raw["weights"]).items()
        }
    return kw


def _named(src: str, key: str, fn: Any) -> Any:
    return named(src, key, fn)


def _mapping(src: str, key: str, v: Any) -> dict[str, Any]:
    return mapping(src, key, v)
