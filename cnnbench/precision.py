"""The one precision table: every precision's name, ONNX file, torch dtype, parity gate, marker.

A precision is parsed once, where it enters (a CLI flag, a sweep YAML, a row read back from a
child process), by :func:`parse_precision`; everything inside receives a :class:`Precision`.
It is a ``str`` whose value is its name, so rows, JSON, CSV and f-strings carry ``"fp16"``.

Three precisions describe one result and are kept apart wherever they appear:

* **requested**: what the user asked for (a row's ``precision`` column);
* **artifact**: the precision of the file an engine loaded (``artifact_precision``);
* **effective**: what actually computed (``effective_precision``; OpenVINO may run an FP32
  file in bf16).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

from cnnbench.errors import CnnbenchError, InvalidInputError
from cnnbench.naming import lookup

__all__ = [
    "ONNX_PRECISIONS",
    "PRECISIONS",
    "Precision",
    "Tolerances",
    "parse_precision",
    "parse_precisions",
    "precision_field",
]


@dataclass(frozen=True)
class Tolerances:
    """Parity bounds a candidate must meet; ``None`` disables a criterion (still reported).

    Attributes:
        max_rel_err: upper bound on ``max_abs_err / max |reference|``.
        min_cosine: lower bound on the smallest per-sample cosine similarity.
        min_top1_agreement: lower bound on the fraction of samples with the same argmax (0..1).
        min_top5_agreement: lower bound on the mean top-5 set overlap (0..1).
    """

    max_rel_err: float | None = None
    min_cosine: float | None = None
    min_top1_agreement: float | None = None
    min_top5_agreement: float | None = None

    def __post_init__(self) -> None:
        if self.max_rel_err is not None and not (
            math.isfinite(self.max_rel_err) and self.max_rel_err >= 0
        ):
            raise ValueError(f"max_rel_err must be a finite number >= 0, got {self.max_rel_err}")
        if self.min_cosine is not None and not -1.0 <= self.min_cosine <= 1.0:
            raise ValueError(f"min_cosine must be in [-1, 1], got {self.min_cosine}")
        for name in ("min_top1_agreement", "min_top5_agreement"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")

    def replace(self, **changes: float | None) -> Tolerances:
        """A copy with some bounds changed (unknown names raise TypeError)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, float | None]:
        return {
            "max_rel_err": self.max_rel_err,
            "min_cosine": self.min_cosine,
            "min_top1_agreement": self.min_top1_agreement,
            "min_top5_agreement": self.min_top5_agreement,
        }


@dataclass(frozen=True)
class _Entry:
    onnx: bool  # the export path produces an ONNX file for it (artifacts/<model>/<name>/)
    from_fp32: bool  # that file is converted from the verified FP32 export
    calibrated: bool  # that file holds Q/DQ whose scales come from calibration data
    torch_dtype: str  # attribute of the torch module (the torch engine's and the peak's dtype)
    gate: Tolerances  # the parity gate against PyTorch FP32 (FP32) or the FP32 file
    marker: str  # matplotlib marker in the report's plots


class Precision(str, Enum):
    """A numeric precision. Compares and hashes equal to its name (``Precision.FP16 == "fp16"``)."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"
    FP8 = "fp8"  # E4M3 (FLOAT8E4M3FN), in explicit Q/DQ

    __str__ = str.__str__
    __format__ = str.__format__  # type: ignore[assignment]
    __hash__ = str.__hash__

    @property
    def _entry(self) -> _Entry:
        return _TABLE[self]

    @property
    def has_onnx(self) -> bool:
        """Whether ``cnnbench export`` can produce this precision's ONNX file."""
        return self._entry.onnx

    @property
    def from_fp32(self) -> bool:
        """Whether its ONNX file is converted from the FP32 export (FP16, INT8)."""
        return self._entry.from_fp32

    @property
    def calibrated(self) -> bool:
        """Whether its ONNX file holds Q/DQ with calibrated scales (INT8, FP8): made by a
        quantizer from a calibration recipe (:class:`Int8Recipe`)."""
        return self._entry.calibrated

    @property
    def onnx_dir(self) -> str:
        """The artifact folder of its ONNX file: ``<artifacts>/<model>/<onnx_dir>/model.onnx``."""
        if not self.has_onnx:
            raise ValueError(f"{self.value} has no ONNX file")
        return self.value

    @property
    def torch_dtype_name(self) -> str:
        """``float32``, ``float16``, ``bfloat16`` or ``int8``: ``getattr(torch, name)``."""
        return self._entry.torch_dtype

    @property
    def gate(self) -> Tolerances:
        """The parity-gate preset (``report only`` for INT8)."""
        return self._entry.gate

    @property
    def marker(self) -> str:
        """Its marker in the report's plots."""
        return self._entry.marker


#: FP8's parity gate against the FP32 file (see the table)
FP8_MIN_COSINE = 0.99
FP8_MIN_TOP1 = 0.9

_TABLE: dict[Precision, _Entry] = {
    Precision.FP32: _Entry(
        onnx=True, from_fp32=False, calibrated=False, torch_dtype="float32", marker="o",
        gate=Tolerances(max_rel_err=1e-5, min_cosine=0.99999, min_top1_agreement=1.0),
    ),
    Precision.FP16: _Entry(
        onnx=True, from_fp32=True, calibrated=False, torch_dtype="float16", marker="s",
        gate=Tolerances(min_cosine=0.999, min_top1_agreement=0.99),
    ),
    # No path writes a bf16 ONNX file: only the torch engine (on CUDA) computes in bf16.
    Precision.BF16: _Entry(
        onnx=False, from_fp32=False, calibrated=False, torch_dtype="bfloat16", marker="D",
        gate=Tolerances(min_cosine=0.999, min_top1_agreement=0.99),
    ),
    Precision.INT8: _Entry(
        onnx=True, from_fp32=True, calibrated=True, torch_dtype="int8", marker="^",
        gate=Tolerances(),
    ),
    # E4M3 keeps 3 mantissa bits (a relative step of 1/16 near each power of two, vs FP16's
    # 1/1024), with a per-tensor scale from calibration: the logits' direction holds (cosine)
    # and the top class mostly does; a gate, not a report, so that a broken scale fails here.
    Precision.FP8: _Entry(
        onnx=True, from_fp32=True, calibrated=True, torch_dtype="float8_e4m3fn", marker="v",
        gate=Tolerances(min_cosine=FP8_MIN_COSINE, min_top1_agreement=FP8_MIN_TOP1),
    ),
}  # fmt: skip

#: every precision, in the table's order
PRECISIONS: tuple[Precision, ...] = tuple(Precision)
#: the precisions the export path writes an ONNX file for
ONNX_PRECISIONS: tuple[Precision, ...] = tuple(p for p in Precision if p.has_onnx)


def parse_precision(
    text: str, choices: tuple[Precision, ...] = PRECISIONS, *, what: str | None = None
) -> Precision:
    """``text`` as a Precision among ``choices``, or a one-line error.

    An unknown name raises UnknownNameError with suggestions; a known precision outside
    ``choices`` raises InvalidInputError saying that ``what`` (e.g. "export") cannot use it.
    """
    p = lookup("precision", str(text).strip().lower(), {q.value: q for q in PRECISIONS})
    if p not in choices:
        raise InvalidInputError(
            f"{what or 'this command'} cannot use precision {p}; choose from {', '.join(choices)}"
        )
    return p


def precision_field(
    value: str, choices: tuple[Precision, ...] = PRECISIONS, *, what: str | None = None
) -> Precision:
    """:func:`parse_precision` for a config dataclass's ``__post_init__``: ValueError naming the
    field, as every other field of such a config raises."""
    try:
        return parse_precision(value, choices, what=what)
    except CnnbenchError as exc:
        raise ValueError(f"precision: {exc}") from None


def parse_precisions(
    text: str, choices: tuple[Precision, ...] = PRECISIONS, *, what: str | None = None
) -> tuple[Precision, ...]:
    """A comma-separated list of precisions (``fp32,int8``), each parsed as above."""
    items = [t.strip() for t in str(text).split(",")]
    if not all(items):
        raise InvalidInputError(
            f"precisions must be a name or a comma-separated list, got {text!r}"
        )
    return tuple(parse_precision(t, choices, what=what) for t in items)


#: INT8 calibration methods (ONNX Runtime's Entropy, MinMax and Percentile calibrators)
CALIB_METHODS = ("entropy", "max", "percentile")
#: calibration inputs used when none is said
DEFAULT_CALIB_SAMPLES = 256

#: INT8 quantizers: ``ort`` (ONNX Runtime's static quantizer, configured to the placement rules
#: of export.qdq_placement; the light default) and ``modelopt`` (NVIDIA ModelOpt's ONNX PTQ, the
#: ``modelopt`` extra)
QUANTIZERS = ("ort", "modelopt")
#: the calibration methods each quantizer has (ModelOpt has no percentile calibrator for INT8)
QUANTIZER_METHODS = {"ort": CALIB_METHODS, "modelopt": ("entropy", "max")}
#: the runtimes Q/DQ can be placed for (export.qdq_placement): each fuses Q/DQ into its own
#: INT8 kernels under its own rules, so the file that runs INT8 on one may run float on another
QDQ_TARGETS = ("tensorrt", "onnxruntime", "openvino")


def default_qdq_target(engine: str, options: Mapping[str, Any] | None = None) -> str:
    """The Q/DQ placement an INT8 cell of ``engine`` gets when none is said: the runtime's
    own (ONNX Runtime's with its TensorRT provider is TensorRT's), else TensorRT's (the null
    engine, the torch engine, an export with no engine named)."""
    providers = (options or {}).get("providers") or ()
    names = providers.split(",") if isinstance(providers, str) else providers
    if engine == "onnxruntime" and any("tensorrt" in str(p).lower() for p in names):
        return "tensorrt"
    return engine if engine in QDQ_TARGETS else "tensorrt"


#: the quantizers each calibrated precision can be made by (FP8 E4M3: ModelOpt's alone)
PRECISION_QUANTIZERS = {Precision.INT8: QUANTIZERS, Precision.FP8: ("modelopt",)}

#: FP16 converters: ``onnxconverter`` (onnxconverter-common's float16, FP32 I/O; the light
#: default) and ``autocast`` (NVIDIA ModelOpt's AutoCast, FP32 I/O; the ``modelopt`` extra,
#: NVIDIA's recommended way for TensorRT 11)
FP16_CONVERTERS = ("onnxconverter", "autocast")


def quantizer_for(precision: Precision, recipe_quantizer: str) -> str:
    """The quantizer that makes ``precision``'s file: the recipe's for INT8, ModelOpt for FP8."""
    allowed = PRECISION_QUANTIZERS.get(precision, QUANTIZERS)
    return recipe_quantizer if recipe_quantizer in allowed else allowed[0]


def check_fp16_converter(name: str) -> str:
    """``name`` as an FP16 converter, or a one-line error."""
    text = str(name).strip().lower()
    if text not in FP16_CONVERTERS:
        raise InvalidInputError(
            f"unknown FP16 converter {name!r}: choose from {', '.join(FP16_CONVERTERS)}"
        )
    return text


#: calibration data named by a word, not a path
CALIB_WORDS = ("digits", "random")


def check_calib_source(data: str | None) -> None:
    """A calibration source that cannot be read fails here, in one line, before anything heavy
    is imported (the images or array themselves are checked where they are read)."""
    if data is None or str(data) in CALIB_WORDS:
        return
    path = Path(str(data))
    if path.is_dir() or (path.is_file() and path.suffix == ".npy"):
        return
    if path.exists():
        raise InvalidInputError(
            f"calibration data {path} is neither an image folder nor a .npy file"
        )
    raise InvalidInputError(
        f"calibration data not found: {path} (give an image folder, a .npy file, 'digits' or "
        "'random')"
    )


@dataclass(frozen=True)
class Int8Recipe:
    """How an INT8 file is made: quantizer, calibration data, method and sample count.

    ``calib_data`` is an image folder, a ``.npy`` array of preprocessed inputs, ``digits`` or
    ``random``; None means the converter's default (digits for lenet5, else seeded random, with
    a loud warning). ``qdq_target`` is the runtime the Q/DQ is placed for (``QDQ_TARGETS``);
    None until a cell's engine decides it (:meth:`for_engine`), and TensorRT's for an export
    with no engine. Part of an INT8 artifact's request key: two recipes never share a file.
    """

    quantizer: str = "ort"
    calib_data: str | None = None
    calib_method: str = "entropy"
    calib_samples: int = DEFAULT_CALIB_SAMPLES
    qdq_target: str | None = None

    def __post_init__(self) -> None:
        if self.quantizer not in QUANTIZERS:
            raise InvalidInputError(
                f"unknown quantizer {self.quantizer!r}: choose from {', '.join(QUANTIZERS)}"
            )
        if self.calib_method not in CALIB_METHODS:
            raise InvalidInputError(
                f"unknown calibration method {self.calib_method!r}: choose from "
                f"{', '.join(CALIB_METHODS)}"
            )
        if self.calib_method not in QUANTIZER_METHODS[self.quantizer]:
            raise InvalidInputError(
                f"--quantizer {self.quantizer} calibrates with "
                f"{' or '.join(QUANTIZER_METHODS[self.quantizer])}, not {self.calib_method}; "
                "choose another --calib-method, or --quantizer ort"
            )
        if self.qdq_target is not None and self.qdq_target not in QDQ_TARGETS:
            raise InvalidInputError(
                f"unknown Q/DQ target {self.qdq_target!r}: choose from {', '.join(QDQ_TARGETS)}"
            )
        if self.quantizer == "modelopt" and self.qdq_target not in (None, "tensorrt"):
            raise InvalidInputError(
                f"--quantizer modelopt places Q/DQ for tensorrt only, not {self.qdq_target}; "
                "use --quantizer ort for --qdq-target onnxruntime or openvino"
            )
        n = self.calib_samples
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InvalidInputError(f"calib_samples must be a positive integer, got {n!r}")
        if self.calib_data is not None:
            object.__setattr__(self, "calib_data", str(self.calib_data))

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``export.convert.ensure_precision`` (its field names)."""
        d = asdict(self)
        d["qdq_target"] = self.target
        return d

    @property
    def target(self) -> str:
        """The placement this recipe makes: the one said, else TensorRT's."""
        return self.qdq_target or "tensorrt"

    def for_engine(self, engine: str, options: Mapping[str, Any] | None = None) -> Int8Recipe:
        """This recipe for a cell of ``engine``: the Q/DQ target said, else the engine's own
        (ModelOpt places for TensorRT only)."""
        if self.qdq_target is not None:
            return self
        target = "tensorrt" if self.quantizer == "modelopt" else default_qdq_target(engine, options)
        return replace(self, qdq_target=target)
