"""The flags the commands share, each with its click type: the same names, short forms and
parsing wherever a flag appears (``-m`` models, ``-e`` engines, ``-p`` precisions, ``-b``
batches, ``-s`` scenario, ``-o`` output; ``--device``, ``--threads``, ``--weights``,
``--artifacts``, ``--seed``, ``--engine-opt``, the INT8 recipe, the stop rule, the server
scenario, a user's model). Each type parses its value once; what depends on several flags is
checked by :class:`cnnbench.cli.run_options.RunOptions`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from cnnbench import engines, limits
from cnnbench.bench.measure.cuda_timing import parse_timing
from cnnbench.bench.measure.scenarios import canonical_scenario
from cnnbench.bench.run.accuracy import DATASETS
from cnnbench.cli.common import PrecisionType
from cnnbench.errors import CnnbenchError
from cnnbench.limits import Bound
from cnnbench.naming import lookup
from cnnbench.precision import CALIB_METHODS, FP16_CONVERTERS, QDQ_TARGETS, QUANTIZERS, Precision

Decorator = Callable[[Any], Any]


def options(*opts: Decorator) -> Decorator:
    """Several click options as one decorator, in the order given."""

    def wrap(f: Any) -> Any:
        for opt in reversed(opts):
            f = opt(f)
        return f

    return wrap


# ---- the flags' types: each parses its value once ------------------------------------------
class BoundType(click.ParamType):
    """A number within its :class:`cnnbench.limits.Bound`: an integer, or a finite number
    (never nan or inf). Every numeric flag has one (tests/cnnbench/test_limits.py holds each command
    to it), so a value out of range is one line, never an overflow inside."""

    def __init__(self, bound: Bound) -> None:
        self.bound = bound
        self.name = "integer" if bound.integer else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self.bound.check(value)
        except CnnbenchError as exc:
            self.fail(str(exc), param, ctx)


def bounded(bound: Bound) -> BoundType:
    """The click type of a number within ``bound``."""
    return BoundType(bound)


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
    """``--batch``: integers within :data:`cnnbench.limits.BATCH`."""

    name, what = "batch", "positive integer"

    def item(self, text: str) -> int:
        return int(limits.BATCH.check(text))


class DeviceType(_ListType):
    """``--device``: cpu, cuda or cuda:N."""

    name, what = "device", "device"

    def item(self, text: str) -> str:
        return engines.parse_device(text)


class DatasetType(_ListType):
    """``--dataset``: a built-in labelled dataset (digits)."""

    name, what = "dataset", "dataset"

    def item(self, text: str) -> str:
        return str(lookup("dataset", text.strip().lower(), {d: d for d in DATASETS}))


class TimingType(_ListType):
    """``--timing``: a GPU timing mode (end_to_end, gpu_compute)."""

    name, what = "timing", "timing mode"

    def item(self, text: str) -> str:
        return parse_timing(text)


class ScenarioType(_ListType):
    """``--scenario``: a LoadGen scenario, canonical after parsing."""

    name, what = "scenario", "scenario"

    def item(self, text: str) -> str:
        return canonical_scenario(text)


# ---- the shared flags ----------------------------------------------------------------------
def engine_option(
    default: str | None, *, many: bool = True, help: str | None = None, dest: str = "engines"
) -> Decorator:
    return click.option(
        "--engine", "-e", dest, type=EngineType(many=many), default=default,
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
    dest: str = "precisions",
) -> Decorator:
    ptype = (
        PrecisionType(many=many, what=what)
        if choices is None
        else PrecisionType(choices, many=many, what=what)
    )
    return click.option(
        "--precision", "-p", dest, type=ptype, default=default,
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


timing_option = click.option(
    "--timing", type=TimingType(), default="end_to_end", show_default=True,
    help="On a GPU, what a query's time covers: end_to_end (host to device to host) or "
    "gpu_compute (the input already on the device, no copies, CUDA graphs where the engine "
    "has them: trtexec 11's default). Every GPU row names its mode.",
)  # fmt: skip
device_option = click.option(
    "--device", type=DeviceType(), default=None,
    help="cpu, cuda or cuda:N. Default: cpu, or cuda for GPU-only engines (tensorrt).",
)  # fmt: skip
threads_option = click.option(
    "--threads", type=bounded(limits.THREADS), default=None,
    help="Intra-op threads for CPU engines.",
)  # fmt: skip
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
    "--seed", type=bounded(limits.SEED), default=0, show_default=True,
    help="Seed for weight init and inputs.",
)  # fmt: skip
engine_opt_option = click.option(
    "--engine-opt", "engine_opts", multiple=True, metavar="KEY=VALUE",
    help="An engine option (repeatable; ENGINE.KEY=VALUE for one engine of several); "
    "see `cnnbench engines --options`. Part of the cell's identity in compare.",
)  # fmt: skip
quantizer_option = click.option(
    "--quantizer", type=click.Choice(QUANTIZERS), default=None,
    help="INT8 quantizer: ort (ONNX Runtime, default) or modelopt (NVIDIA ModelOpt; "
    "pip install 'cnnbench[modelopt]'). Both place Q/DQ the way TensorRT fuses it. FP8 is "
    "always ModelOpt's.",
)  # fmt: skip
fp16_converter_option = click.option(
    "--fp16-converter", type=click.Choice(FP16_CONVERTERS), default=None,
    help="FP16 converter: onnxconverter (onnxconverter-common, default) or autocast (NVIDIA "
    "ModelOpt's AutoCast, recommended for TensorRT 11; pip install 'cnnbench[modelopt]'). "
    "Both keep FP32 inputs and outputs.",
)  # fmt: skip
qdq_target_option = click.option(
    "--qdq-target", type=click.Choice(QDQ_TARGETS), default=None,
    help="INT8: the runtime Q/DQ is placed for (fused the way it fuses): tensorrt, "
    "onnxruntime or openvino. Default: each cell's engine's own (tensorrt for an export).",
)  # fmt: skip
int8_options = options(
    quantizer_option,
    qdq_target_option,
    fp16_converter_option,
    click.option(
        "--calib-data",
        default=None,
        help="INT8/FP8 calibration: an image folder, a .npy array of preprocessed inputs "
        "(N,C,H,W), 'digits' or 'random'. A file made from the same data is reused.",
    ),  # fmt: skip
    click.option(
        "--calib-method",
        type=click.Choice(CALIB_METHODS),
        default=None,
        help="INT8/FP8 calibration method (default entropy; modelopt: entropy or max).",
    ),  # fmt: skip
    click.option(
        "--calib-samples",
        type=bounded(limits.CALIB_SAMPLES),
        default=None,
        help="INT8/FP8 calibration inputs used (default 256).",
    ),  # fmt: skip
)
#: the INT8 recipe's fields (cnnbench.precision.Int8Recipe), for INT8 and FP8 files
INT8_FIELDS = ("quantizer", "calib_data", "calib_method", "calib_samples", "qdq_target")

#: the stop rule's and the server config's fields
STOP_FIELDS = (
    "warmup_count", "warmup_time", "min_count", "min_time", "max_time", "ci_target", "early",
)  # fmt: skip
SERVER_FIELDS = ("target_qps", "max_queue_delay_ms", "latency_bound_ms", "find_peak", "peak_time")

stop_options = options(
    click.option(
        "--warmup-count",
        type=bounded(limits.WARMUP_COUNT),
        default=None,
        help="Warm-up calls (default 5).",
    ),  # fmt: skip
    click.option(
        "--warmup-time",
        type=bounded(limits.SECONDS),
        default=None,
        help="Warm-up seconds (default 0.2); both are met.",
    ),  # fmt: skip
    click.option(
        "--min-count",
        type=bounded(limits.MIN_COUNT),
        default=None,
        help="Minimum timed queries (default 100: what p99 needs).",
    ),  # fmt: skip
    click.option(
        "--min-time",
        type=bounded(limits.SECONDS),
        default=None,
        help="Minimum measured seconds (default 2).",
    ),
    click.option(
        "--max-time",
        type=bounded(limits.SECONDS),
        default=None,
        help="Maximum measured seconds (default 60).",
    ),
    click.option(
        "--ci-target",
        type=bounded(limits.CI_TARGET),
        default=None,
        help="Run until the median's 95% CI half-width is <= this percent (default 2); the "
        "row is invalid if max time comes first.",
    ),  # fmt: skip
    click.option(
        "--early-stop/--no-early-stop",
        "early",
        default=None,
        help="After --min-time, stop a cell whose answer is known (default on): its window can "
        "no longer be valid (foreign CPU load), or its median's CI stopped narrowing.",
    ),  # fmt: skip
)
server_options = options(
    click.option(
        "--target-qps",
        type=bounded(limits.QPS),
        default=None,
        help="Server: Poisson arrival rate (queries/s).",
    ),
    click.option(
        "--max-queue-delay-ms",
        type=bounded(limits.MILLISECONDS),
        default=2.0,
        show_default=True,
        help="Server: dynamic batcher's max wait.",
    ),  # fmt: skip
    click.option(
        "--latency-bound-ms",
        type=bounded(limits.MILLISECONDS),
        default=None,
        help="Server: p99 bound (required with --find-peak).",
    ),  # fmt: skip
    click.option(
        "--find-peak",
        is_flag=True,
        help="Server: search the highest QPS whose p99 meets the bound.",
    ),
    click.option(
        "--peak-time",
        type=bounded(limits.SECONDS),
        default=60.0,
        show_default=True,
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
