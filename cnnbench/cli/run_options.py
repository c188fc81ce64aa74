"""The options of ``run``, as one typed object, and the flags every command that takes some of
them shares, with the same names and short forms everywhere.

Each flag's value is parsed by its click type, once (:class:`EngineType`, :class:`BatchType`,
:class:`DeviceType`, :class:`~cnnbench.cli.common.PrecisionType`, ...); what depends on
several flags (engine options per engine and device, the INT8 recipe only with int8, a user's
model and its shape) is checked by :meth:`RunOptions.from_params`. Inside, the commands and
the library receive typed values:

    run      -m -e -p -b -s  --device --threads --weights --artifacts --seed --engine-opt INT8 STOP SERVER
    layers   MODEL -e -p     --device --threads --weights --artifacts --seed --engine-opt INT8
    eval     MODEL -e -p -b  --device --threads --weights --artifacts --seed              INT8
    export   MODEL    -p                        --weights             --seed              INT8
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from cnnbench import engines
from cnnbench.bench.measure.scenarios import SCENARIOS, canonical_scenario, check_batch
from cnnbench.bench.measure.timing import StopRule
from cnnbench.bench.run.sweep_config import SweepConfig, server_config
from cnnbench.cli.common import USER_MODEL_FIELDS, PrecisionType, resolve_models
from cnnbench.export.calibration import calibration_set
from cnnbench.models import check_weights, get_spec
from cnnbench.engines.options import parse_assignments
from cnnbench.errors import CnnbenchError, InvalidInputError
from cnnbench.models import list_models
from cnnbench.precision import CALIB_METHODS, QUANTIZERS, Int8Recipe, Precision

Decorator = Callable[[Any], Any]


def options(*opts: Decorator) -> Decorator:
    """Several click options as one decorator, in the order given."""

    def wrap(f: Any) -> Any:
        for opt in reversed(opts):
            f = opt(f)
        return f

    return wrap


# ---- the flags' types: each parses its value once ------------------------------------------
class _ListType(click.ParamType):
    """A comma-separated list (``many``) or one value, each item parsed by ``item``."""

    what = "value"

    def __init__(self, *, many: bool = False) -> None:
        self.many = many

    def item(self, text: str) -> Any:
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value  # a default already typed
        items = [t.strip() for t in value.split(",")] if self.many else [value.strip()]
        if not all(items):
            self.fail(f"needs a {self.what} or a comma-separated list, got {value!r}", param, ctx)
        try:
            out = tuple(self.item(t) for t in items)
        except CnnbenchError as exc:
            self.fail(str(exc), param, ctx)
        return tuple(dict.fromkeys(out)) if self.many else out[0]


class EngineType(_ListType):
    """``--engine``: names or aliases (ort, ov, trt), canonical after parsing."""

    name, what = "engine", "name"

    def item(self, text: str) -> str:
        return engines.canonical(text)


class BatchType(_ListType):
    """``--batch``: positive integers."""

    name, what = "batch", "positive integer"

    def item(self, text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise InvalidInputError(f"batch must be a positive integer, got {text!r}") from None
        if n < 1:
            raise InvalidInputError(f"batch must be >= 1, got {n}")
        return n


class DeviceType(_ListType):
    """``--device``: cpu, cuda or cuda:N."""

    name, what = "device", "device"

    def item(self, text: str) -> str:
        return engines.parse_device(text)


class ScenarioType(_ListType):
    """``--scenario``: a LoadGen scenario, canonical after parsing."""

    name, what = "scenario", "scenario"

    def item(self, text: str) -> str:
        return canonical_scenario(text)


# ---- the shared flags ----------------------------------------------------------------------
def engine_option(default: str | None, *, many: bool = True, help: str | None = None) -> Decorator:
    return click.option(
        "--engine", "-e", "engines", type=EngineType(many=many), default=default,
        show_default=default is not None,
        help=help or "Engine(s): torch, onnxruntime (ort), openvino (ov), tensorrt (trt), null.",
    )  # fmt: skip


def precision_option(
    default: str | None = "fp32",
    *,
    many: bool = True,
    choices: tuple[Precision, ...] | None = None,
    what: str | None = None,
    help: str | None = None,
) -> Decorator:
    ptype = PrecisionType(many=many, what=what) if choices is None else PrecisionType(
        choices, many=many, what=what
    )
    return click.option(
        "--precision", "-p", "precisions", type=ptype, default=default,
        show_default=default is not None,
        help=help or "Precision(s), comma-separated (see `cnnbench engines`).",
    )  # fmt: skip


def batch_option(default: str | None = None, *, many: bool = True, help: str = "") -> Decorator:
    return click.option(
        "--batch", "-b", "batches", type=BatchType(many=many), default=default,
        show_default=default is not None,
        help=help or "Batch size(s) N[,N...]. Default: the scenario's (1; multi-stream and "
        "server 8).",
    )  # fmt: skip


device_option = click.option(
    "--device", type=DeviceType(), default=None,
    help="cpu, cuda or cuda:N. Default: cpu, or cuda for GPU-only engines (tensorrt).",
)  # fmt: skip
threads_option = click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads for CPU engines."
)
weights_option = click.option(
    "--weights", type=click.Path(dir_okay=False), default=None,
    help="State dict (.pt/.pth/.safetensors) loaded strictly with weights_only=True. "
    "Default: seeded init.",
)  # fmt: skip
artifacts_option = click.option(
    "--artifacts", type=click.Path(file_okay=False), default="artifacts", show_default=True,
    help="Where exported ONNX files are cached.",
)  # fmt: skip
seed_option = click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for weight init and inputs."
)
engine_opt_option = click.option(
    "--engine-opt", "engine_opts", multiple=True, metavar="KEY=VALUE",
    help="An engine option (repeatable; ENGINE.KEY=VALUE for one engine of several); "
    "see `cnnbench engines --options`. Part of the cell's identity in compare.",
)  # fmt: skip
quantizer_option = click.option(
    "--quantizer", type=click.Choice(QUANTIZERS), default=None,
    help="INT8 quantizer: ort (ONNX Runtime, default) or modelopt (NVIDIA ModelOpt; "
    "pip install 'cnnbench[modelopt]'). Both place Q/DQ the way TensorRT fuses it.",
)  # fmt: skip
int8_options = options(
    quantizer_option,
    click.option(
        "--calib-data", default=None,
        help="INT8 calibration: an image folder, a .npy array of preprocessed inputs "
        "(N,C,H,W), 'digits' or 'random'. An INT8 file made from the same data is reused.",
    ),  # fmt: skip
    click.option(
        "--calib-method", type=click.Choice(CALIB_METHODS), default=None,
        help="INT8 calibration method (default entropy).",
    ),  # fmt: skip
    click.option(
        "--calib-samples", type=click.IntRange(min=1), default=None,
        help="INT8 calibration inputs used (default 256).",
    ),  # fmt: skip
)
#: the INT8 recipe's fields (cnnbench.precision.Int8Recipe)
INT8_FIELDS = ("quantizer", "calib_data", "calib_method", "calib_samples")

#: the stop rule's and the server config's fields
STOP_FIELDS = ("warmup_count", "warmup_time", "min_count", "min_time", "max_time", "ci_target")
SERVER_FIELDS = ("target_qps", "max_queue_delay_ms", "latency_bound_ms", "find_peak", "peak_time")

stop_options = options(
    click.option("--warmup-count", type=int, default=None, help="Warm-up calls (default 5)."),
    click.option(
        "--warmup-time", type=float, default=None,
        help="Warm-up seconds (default 0.2); both are met.",
    ),  # fmt: skip
    click.option(
        "--min-count", type=int, default=None,
        help="Minimum timed queries (default 100: what p99 needs).",
    ),  # fmt: skip
    click.option(
        "--min-time", type=float, default=None, help="Minimum measured seconds (default 2)."
    ),
    click.option(
        "--max-time", type=float, default=None, help="Maximum measured seconds (default 60)."
    ),
    click.option(
        "--ci-target", type=float, default=None,
        help="Run until the median's 95% CI half-width is <= this percent (default 2); the "
        "row is invalid if max time comes first.",
    ),  # fmt: skip
)
server_options = options(
    click.option(
        "--target-qps", type=float, default=None, help="Server: Poisson arrival rate (queries/s)."
    ),
    click.option(
        "--max-queue-delay-ms", type=float, default=2.0, show_default=True,
        help="Server: dynamic batcher's max wait.",
    ),  # fmt: skip
    click.option(
        "--latency-bound-ms", type=float, default=None,
        help="Server: p99 bound (required with --find-peak).",
    ),  # fmt: skip
    click.option(
        "--find-peak", is_flag=True, help="Server: search the highest QPS whose p99 meets the bound."
    ),
    click.option(
        "--peak-time", type=float, default=60.0, show_default=True,
        help="Server: time budget of --find-peak (s).",
    ),  # fmt: skip
)

#: how to read a user's model (``x.onnx`` / ``module:callable``): USER_MODEL_FIELDS
user_model_options = options(
    click.option("--input-shape", default=None, metavar="C,H,W",
                 help="Input shape of your model (C,H,W or N,C,H,W): needed for a module "
                 "factory, overrides what an ONNX file says."),
    click.option("--name", default=None,
                 help="Name of your model in rows and caches (default: the file's stem or "
                 "the callable's name)."),
    click.option("--mean", default=None, metavar="M[,M,M]",
                 help="Per-channel mean of your model's preprocessing (default ImageNet's)."),
    click.option("--std", default=None, metavar="S[,S,S]",
                 help="Per-channel std of your model's preprocessing (default ImageNet's)."),
)  # fmt: skip


# ---- the typed object ----------------------------------------------------------------------
@dataclass(frozen=True)
class RunOptions:
    """``run``'s options, typed and checked together; other commands fill the fields they
    have (a command without ``--engine`` gets ``engines=()``)."""

    models: tuple[str, ...] = ()
    engines: tuple[str, ...] = ()
    precisions: tuple[Precision, ...] = (Precision.FP32,)
    batches: tuple[int, ...] | None = None
    scenario: str = "offline"
    device: str | None = None
    threads: int | None = None
    weights: str | None = None
    artifacts: str = "artifacts"
    seed: int = 0
    repeats: int = 1
    int8: Int8Recipe = field(default_factory=Int8Recipe)
    #: per engine of ``engines``, its typed options (checked for its device)
    engine_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    stop: StopRule = field(default_factory=StopRule)
    #: the server scenario's flags as given (a ServerConfig needs the batches: :meth:`grid`)
    server: dict[str, Any] = field(default_factory=dict)

    @property
    def precision(self) -> Precision:
        """The one precision of a command that takes one."""
        return self.precisions[0]

    @property
    def engine(self) -> str:
        """The one engine of a command that takes one."""
        return self.engines[0]

    def device_of(self, engine: str) -> str:
        return self.device or engines.default_device(engine)

    @classmethod
    def from_params(cls, p: Mapping[str, Any]) -> RunOptions:
        """The options from a command's click parameters (each already parsed by its type):
        what depends on several flags is checked here, once."""
        models = _models(p)
        engs = _as_tuple(p.get("engines"))
        precisions = _as_tuple(p.get("precisions")) or (Precision.FP32,)
        device = p.get("device")
        kw: dict[str, Any] = {}
        for k in ("threads", "seed", "repeats"):
            if p.get(k) is not None:
                kw[k] = p[k]
        for k in ("weights", "artifacts"):
            if p.get(k) is not None:
                kw[k] = str(p[k])
        if p.get("weights") and len(models) > 1:
            raise InvalidInputError("--weights applies to one model; give a single --model")
        return cls(
            models=models, engines=engs, precisions=precisions, device=device,
            batches=_as_tuple(p.get("batches")) or None,
            scenario=p.get("scenario") or "offline",
            int8=_int8_recipe(p, precisions),
            engine_options=_engine_options(p.get("engine_opts") or (), engs, device),
            stop=_stop_rule(p), server={k: p[k] for k in SERVER_FIELDS if k in p}, **kw,
        )  # fmt: skip

    def grid(self) -> SweepConfig:
        """The grid ``run`` measures. Unlike a sweep file, a batch the scenario cannot take
        (single-stream at batch 8) is an error, not a skipped cell."""
        batches = self.batches or (SCENARIOS[self.scenario].default_batch,)
        for b in batches:
            check_batch(self.scenario, b)
        sv = None
        if self.scenario == "server":
            try:
                sv = server_config(self.server, batches, self.seed)
            except ValueError as exc:
                raise _as_flags(exc) from None
        return SweepConfig(
            models=self.models, engines=self.engines, precisions=self.precisions,
            batches=batches, scenarios=(self.scenario,), device=self.device,
            threads=self.threads, seed=self.seed, artifacts=self.artifacts,
            weights={self.models[0]: self.weights} if self.weights else {},
            timeout_s=max(600.0, self.stop.max_time * 4), stop=self.stop, server=sv,
            repeats=self.repeats, int8=self.int8,
            engine_options={e: (o,) for e, o in self.engine_options.items()},
        )  # fmt: skip


def _as_tuple(v: Any) -> tuple[Any, ...]:
    if v is None:
        return ()
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def _models(p: Mapping[str, Any]) -> tuple[str, ...]:
    """The models named (``--model``/MODEL), each user model registered here, read once;
    with ``--model`` absent on a command that has it, the zoo's ImageNet models."""
    given = p.get("models", p.get("model"))
    if given is None:
        if "models" in p:  # run without --model: the zoo's ImageNet models
            return resolve_models(tuple(list_models(imagenet_only=True)), p)
        return ()
    names = tuple(t.strip() for t in str(given).split(",")) if "models" in p else (str(given),)
    if not all(names):
        raise InvalidInputError(f"--model needs a name or a comma-separated list, got {given!r}")
    return resolve_models(names, p)


def _int8_recipe(p: Mapping[str, Any], precisions: tuple[Precision, ...]) -> Int8Recipe:
    given = {k: p[k] for k in INT8_FIELDS if p.get(k) is not None}
    if given and Precision.INT8 not in precisions:
        flags = "/".join("--" + k.replace("_", "-") for k in given)
        raise click.UsageError(f"{flags}: for INT8 only; add --precision int8")
    if given.get("calib_data") not in (None, "digits", "random"):
        given["calib_data"] = str(Path(given["calib_data"]).absolute())  # cells run elsewhere
    return Int8Recipe(**given)


def _engine_options(
    texts: tuple[str, ...], engs: tuple[str, ...], device: str | None
) -> dict[str, dict[str, Any]]:
    """``--engine-opt`` texts typed per engine by its schema and checked for its device."""
    if texts and not engs:
        raise click.UsageError("--engine-opt needs --engine")
    schemas = {e: engines.get_engine_class(e).option_schema for e in engs}
    given = parse_assignments(texts, schemas, engines.canonical)
    out: dict[str, dict[str, Any]] = {}
    for e in engs:  # every engine: its defaults must suit the device too (cuda_graphs on cpu)
        typed = engines.check_options(e, device or engines.default_device(e), given.get(e, {}))
        if typed:
            out[e] = typed
    return out


def _stop_rule(p: Mapping[str, Any]) -> StopRule:
    try:
        return StopRule(**{k: p[k] for k in STOP_FIELDS if p.get(k) is not None})
    except ValueError as exc:
        raise _as_flags(exc) from None


# StopRule / ServerConfig field names as the flags spell them
_FLAG_FIELDS = STOP_FIELDS + SERVER_FIELDS


def _as_flags(exc: ValueError) -> InvalidInputError:
    """A config ValueError with its field names spelled as the flags."""
    msg = str(exc)
    for f in _FLAG_FIELDS:
        msg = msg.replace(f, "--" + f.replace("_", "-"))
    return InvalidInputError(msg)


def check_inputs(cfg: SweepConfig) -> None:
    """Inputs that would fail every cell fail here, once, before the first: the weights, and
    INT8 calibration data given as a path (its images or array are read and checked)."""
    for model, path in cfg.weights.items():
        check_weights(model, path)
    data = cfg.int8.calib_data
    if Precision.INT8 in cfg.precisions and data not in (None, "digits", "random"):
        for model in cfg.models:
            calibration_set(get_spec(model), data, samples=cfg.int8.calib_samples)
