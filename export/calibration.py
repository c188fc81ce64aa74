"""INT8 calibration: where the data comes from, how ONNX Runtime reads it, and the range cache.

Sources (``calib_data``):

- a folder of images: each goes through the model's preprocessing
  (:func:`cnnbench.data.images.load_image_batches`); images whose shorter side is under half
  the model's input size are refused (upscaled thumbnails would calibrate the wrong ranges);
- a ``.npy`` file holding preprocessed float32 inputs of shape (N, C, H, W);
- ``"digits"``: the digits TRAIN split (the default for 1×32×32 models such as lenet5), so the
  held-out test split stays unseen;
- ``"random"`` (the default for every other model): seeded random images, with a loud warning,
  since ranges from noise make accuracy figures meaningless.

The computed ranges (ORT's ``TensorsData``) are cached as JSON under
``cache_dir()/calib/<key>.json``; the key hashes the FP32 file's sha256, the data's sha256, the
method, the sample count and the onnxruntime version. A corrupt entry is rebuilt with a warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnbench.artifacts import atomic_path, cache_dir
from cnnbench.data import digits, images
from cnnbench.errors import InvalidInputError
from cnnbench.naming import suggest
from cnnbench.precision import CALIB_METHODS
from cnnbench.progress import note, track, warn

if TYPE_CHECKING:
    from cnnbench.models.spec import ModelSpec

METHODS = CALIB_METHODS
#: cnnbench name -> onnxruntime CalibrationMethod member
_ORT_METHOD = {"entropy": "Entropy", "max": "MinMax", "percentile": "Percentile"}
#: samples per ``collect_data`` call: bounds the memory held by intermediate outputs
CHUNK_SAMPLES = 32
CALIB_BATCH = 8
PERCENTILE = 99.999
#: bump when the calibrator's settings change, so older cache entries are not reused
CACHE_SCHEME = 1
RANDOM_WARNING = (
    "{model} INT8/FP8 is calibrated on seeded RANDOM input (made now or reused): its ranges come "
    "from noise, so any accuracy figure from this file is MEANINGLESS; pass --calib-data DIR "
    "with real images"
)


@dataclass(frozen=True)
class CalibrationSet:
    """Preprocessed calibration inputs and where they came from."""

    kind: str  # "digits" | "images" | "npy" | "random"
    source: str
    batches: list[np.ndarray] = field(repr=False)
    sha256: str

    @property
    def samples(self) -> int:
        return int(sum(b.shape[0] for b in self.batches))

    @property
    def meaningful(self) -> bool:
        """False for random input: accuracy measured after such calibration means nothing."""
        return self.kind != "random"

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "samples": self.samples,
            "sha256": self.sha256,
            "meaningful": self.meaningful,
        }


def data_sha256(batches: list[np.ndarray]) -> str:
    """Content hash of a list of float32 batches (shapes included)."""
    h = hashlib.sha256()
    for b in batches:
        arr = np.ascontiguousarray(b, dtype=np.float32)
        h.update(repr(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def default_source(spec: ModelSpec) -> str:
    """``digits`` for 1×32×32 digit models (lenet5), else ``random``."""
    return "digits" if tuple(spec.input_shape) == (1, 32, 32) else "random"


def calibration_set(
    spec: ModelSpec,
    calib_data: str | Path | None = None,
    *,
    samples: int = 256,
    seed: int = 0,
    batch: int = CALIB_BATCH,
) -> CalibrationSet:
    """Load ``samples`` calibration inputs for ``spec`` from ``calib_data`` (see module doc).

    Raises:
        InvalidInputError: missing/empty folder, unreadable or wrongly sized images or arrays,
            a sample count below 1.
    """
    if not isinstance(samples, int) or samples < 1:
        raise InvalidInputError(f"calibration samples must be >= 1, got {samples!r}")
    source = str(calib_data) if calib_data is not None else default_source(spec)
    if source == "digits":
        split = digits.load_split("train", spec)
        if samples > len(split):
            note(f"digits train split has {len(split)} images; calibrating on all of them")
        x = split.images[:samples]
        batches = [x[i : i + batch] for i in range(0, len(x), batch)]
        kind, where = "digits", f"digits:train[:{len(x)}]"
    elif source == "random":
        warn(RANDOM_WARNING.format(model=spec.name))
        count = -(-samples // batch)
        batches = images.random_batches(spec, count=count, batch=batch, seed=seed)
        batches[-1] = batches[-1][: samples - batch * (count - 1)]
        kind, where = "random", f"random-seeded:{seed}"
    else:
        path = Path(source)
        if path.is_dir():
            batches = _image_batches(path, spec, samples, batch)
            kind, where = "images", str(path)
        elif path.is_file() and path.suffix == ".npy":
            batches = _npy_batches(path, spec, samples, batch)
            kind, where = "npy", str(path)
        elif path.exists():
            raise InvalidInputError(
                f"calibration data {path} is neither an image folder nor a .npy file"
            )
        else:
            raise InvalidInputError(
                f"calibration data not found: {path} (give an image folder, a .npy file, "
                "'digits' or 'random')"
            )
    _check_shapes(batches, spec, where)
    return CalibrationSet(kind, where, batches, data_sha256(batches))


def _image_batches(path: Path, spec: ModelSpec, samples: int, batch: int) -> list[np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    files = images.list_images(path)
    if not files:
        raise InvalidInputError(f"calibration folder {path} holds no images (.jpg, .png, ...)")
    need = spec.preprocessing.crop / 2
    bad: list[Path] = []
    for f in files[:samples]:
        try:
            with Image.open(f) as img:
                w, h = img.size
        except (OSError, UnidentifiedImageError):
            bad.append(f)  # skipped by load_image_batches too; said below, never silently
            continue
        if min(w, h) < need:
            raise InvalidInputError(
                f"calibration image {f} is {w}x{h}; {spec.name} needs images of at least "
                f"{int(need)} px on the shorter side (its input is {spec.preprocessing.crop})"
            )
    if bad:
        warn(
            f"calibration: skipping {len(bad)} unreadable image(s) of {len(files[:samples])} in "
            f"{path} (first: {bad[0].name})"
        )
    return images.load_image_batches(path, spec, batch=batch, limit=samples)


def _npy_batches(path: Path, spec: ModelSpec, samples: int, batch: int) -> list[np.ndarray]:
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read calibration array {path}: {exc}") from None
    if arr.ndim != 4 or tuple(arr.shape[1:]) != tuple(spec.input_shape):
        want = "x".join(map(str, spec.input_shape))
        raise InvalidInputError(
            f"calibration array {path} has shape {tuple(arr.shape)}; {spec.name} needs (N, {want})"
        )
    if arr.shape[0] == 0:
        raise InvalidInputError(f"calibration array {path} is empty")
    x = np.asarray(arr[:samples], dtype=np.float32)
    return [x[i : i + batch] for i in range(0, len(x), batch)]


def _check_shapes(batches: list[np.ndarray], spec: ModelSpec, where: str) -> None:
    if not batches or sum(b.shape[0] for b in batches) == 0:
        raise InvalidInputError(f"no calibration samples in {where}")
    for b in batches:
        if tuple(b.shape[1:]) != tuple(spec.input_shape):
            raise InvalidInputError(
                f"calibration input from {where} has size {tuple(b.shape[1:])}; "
                f"{spec.name} needs {tuple(spec.input_shape)}"
            )
        if not np.isfinite(b).all():
            raise InvalidInputError(f"calibration input from {where} holds NaN or Inf")


class BatchReader:
    """An ORT ``CalibrationDataReader`` over in-memory batches (one input)."""

    def __init__(self, input_name: str, batches: list[np.ndarray]) -> None:
        self.input_name = input_name
        self._batches = batches
        self._i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self._batches):
            return None
        x = self._batches[self._i]
        self._i += 1
        return {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}

    def __len__(self) -> int:
        return len(self._batches)


def cache_key(fp32_sha256: str, calib: CalibrationSet, method: str) -> str:
    """The cache key: FP32 file, data, method, sample count and onnxruntime version."""
    import onnxruntime

    blob = json.dumps(
        {
            "fp32": fp32_sha256,
            "data": calib.sha256,
            "method": method,
            "samples": calib.samples,
            "onnxruntime": onnxruntime.__version__,
            "chunk": CHUNK_SAMPLES,
            "percentile": PERCENTILE,
            "scheme": CACHE_SCHEME,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_path(key: str) -> Path:
    return cache_dir() / "calib" / f"{key}.json"


def ort_method(method: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    if method not in METHODS:
        raise InvalidInputError(
            f"unknown calibration method '{method}': {suggest(method, METHODS)}"
        )
    return getattr(CalibrationMethod, _ORT_METHOD[method])


def calibrate(
    model_path: Path,
    input_name: str,
    calib: CalibrationSet,
    method: str,
    *,
    key: str,
    op_types: list[str] | None = None,
) -> tuple[Path, bool]:
    """Tensor ranges of ``model_path`` on ``calib`` by ``method``, from the cache or computed.

    Returns:
        (the cache file holding ORT's TensorsData JSON, whether it was a cache hit).
    """
    ort_m = ort_method(method)
    path = cache_path(key)
    if path.is_file():
        problem = _cache_problem(path, ort_m)
        if problem is None:
            note(
                f"reusing calibration ranges {path.name[:16]}… ({method}, {calib.samples} samples)"
            )
            return path, True
        warn(f"calibration cache entry {path} is corrupt ({problem}); rebuilding it")
        path.unlink(missing_ok=True)

    from onnxruntime.quantization import create_calibrator, save_tensors_data

    extra: dict[str, Any] = {"symmetric": True}
    if method == "percentile":
        extra["percentile"] = PERCENTILE
    with tempfile.TemporaryDirectory(prefix="cnnbench-calib-") as tmp, _quiet_stdout():
        calibrator = create_calibrator(
            model_path,
            op_types,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=ort_m,
            providers=["CPUExecutionProvider"],
            extra_options=extra,
        )
        per_chunk = max(1, CHUNK_SAMPLES // max(1, calib.batches[0].shape[0]))
        chunks = [calib.batches[i : i + per_chunk] for i in range(0, len(calib.batches), per_chunk)]
        for chunk in track(chunks, len(chunks), f"calibrate ({method})"):
            calibrator.collect_data(BatchReader(input_name, chunk))
        ranges = calibrator.compute_data()
        del calibrator
    with atomic_path(path, suffix=".json") as tmp_file:
        save_tensors_data(ranges, tmp_file)
    return path, False


def _cache_problem(path: Path, method: Any) -> str | None:
    from onnxruntime.quantization import load_tensors_data

    try:
        data = load_tensors_data(path)
    except Exception as exc:  # JSONDecodeError, KeyError, ValueError, TypeError...
        return f"{type(exc).__name__}: {str(exc)[:80]}"
    if data.calibration_method != method:
        return f"method {data.calibration_method} != {method}"
    if not len(data.data):
        return "no tensor ranges"
    for name, rng in data.data.items():
        try:
            values = np.asarray(rng.range_value, dtype=np.float64)
        except (AttributeError, TypeError, ValueError):
            return f"no range for {name}"
        if not np.isfinite(values).all():
            return f"non-finite range for {name}"
    return None


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    # ORT's calibrators print chatter on stdout, which carries our results only; our own
    # progress bar (on stderr) says the same
    with contextlib.redirect_stdout(io.StringIO()):
        yield
