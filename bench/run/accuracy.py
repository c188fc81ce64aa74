"""Measured top-1 / top-5 accuracy of a model at a precision on an engine, on labelled data.

A dataset is anything with ``name``, ``__len__`` and ``batches(batch)`` yielding
``(images (N, C, H, W) float32, labels (N,) int64)`` (:class:`LabelledDataset`);
:func:`open_dataset` maps a name to one. The digits test split is built in; image folders
(ImageFolder / ImageNet-val layouts) plug in the same way.

For ONNX engines the file comes from ``export.convert.ensure_precision`` (verified, cached);
INT8 is calibrated on ``calib_data`` (default: the dataset's own calibration source, e.g. the
digits TRAIN split, never the evaluation split).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from cnnbench.artifacts import cache_dir
from cnnbench.batch import BatchRange
from cnnbench.data import digits
from cnnbench.engines import get_engine_class
from cnnbench.engines.base import Artifact, EngineOptions, unsupported
from cnnbench.errors import InvalidInputError
from cnnbench.export.convert import ensure_precision
from cnnbench.models import get_spec, weights_provenance
from cnnbench.naming import lookup
from cnnbench.precision import Int8Recipe, Precision, quantizer_for
from cnnbench.weights_hub import Weights

if TYPE_CHECKING:
    from cnnbench.models.spec import ModelSpec

DATASETS = ("digits",)


class LabelledDataset(Protocol):
    """Labelled evaluation data, batched."""

    @property
    def name(self) -> str: ...

    @property
    def calib_data(self) -> str | None:
        """What INT8 files evaluated on this data are calibrated on (``ensure_precision``'s
        ``calib_data``), or None for the converter's default."""

    def __len__(self) -> int: ...

    def batches(self, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...


@dataclass(frozen=True)
class ArrayDataset:
    """A dataset held in memory (the digits split, or any preloaded arrays)."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    calib_data: str | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or len(self.images) != len(self.labels):
            raise ValueError(
                f"images must be (N, C, H, W) with one label each, got {self.images.shape} "
                f"and {self.labels.shape}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batches(self, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(0, len(self), batch):
            yield self.images[i : i + batch], self.labels[i : i + batch]


def open_dataset(name: str, spec: ModelSpec) -> LabelledDataset:
    """The labelled evaluation data called ``name`` for ``spec``'s model.

    Raises:
        UnknownNameError: an unknown dataset name.
        InvalidInputError: a model the dataset cannot feed.
    """
    lookup("dataset", name, {d: d for d in DATASETS})

    test = digits.load_split("test", spec)
    return ArrayDataset("digits:test", test.images, test.labels, calib_data="digits")


def _padded(x: np.ndarray, batch: int) -> np.ndarray:
    # engines may be built for one batch size (TensorRT profiles): pad the last batch
    if len(x) == batch:
        return np.ascontiguousarray(x, dtype=np.float32)
    pad = np.repeat(x[:1], batch - len(x), axis=0)
    return np.ascontiguousarray(np.concatenate([x, pad]), dtype=np.float32)


def evaluate(
    model: str,
    *,
    dataset: LabelledDataset | str = "digits",
    weights: Weights | None = None,
    precision: Precision = Precision.FP32,
    engine: str = "torch",
    batch: int = 64,
    artifacts: str | Path | None = None,
    int8: Int8Recipe | None = None,
    seed: int = 0,
    threads: int | None = None,
    device: str = "cpu",
    fp16_converter: str = "onnxconverter",
) -> dict[str, Any]:
    """Run the whole dataset through ``engine`` (a canonical name) and count top-1 / top-5 hits.

    Values are typed and checked by the caller (the CLI's options). ``weights`` are resolved
    (:func:`cnnbench.models.resolve_weights`; None: the seeded initialisation). ``int8`` is
    the INT8 recipe (INT8 and FP8); its calibration data defaults to the dataset's own
    (digits: the TRAIN split). ``fp16_converter`` makes the FP16 file.

    Returns:
        A result dict: model, engine, precision, dataset, samples, top1, top5 (fractions in
        [0, 1]), correct_top1, correct_top5, ``source: "measured"``, weights, onnx (path and
        sha256 of the file that ran, or None), calibration (INT8), seconds, engine details.
    """
    spec = get_spec(model)
    data = open_dataset(dataset, spec) if isinstance(dataset, str) else dataset
    if len(data) == 0:
        raise InvalidInputError(f"dataset {data.name} is empty")
    cls = get_engine_class(engine)
    if precision not in cls.precisions_on(device):
        raise unsupported(engine, precision, device, cls.precisions_on(device))
    recipe = (int8 or Int8Recipe()).for_engine(engine)
    if recipe.calib_data is None:
        recipe = replace(recipe, calib_data=data.calib_data)
    provenance = weights_provenance(model, weights, seed)
    onnx_path, onnx_sha, calibration = None, None, None
    if cls.loads_onnx:
        onnx_path, onnx_sha, calibration = _onnx_file(
            model, precision, weights, artifacts, seed, provenance,
            fp16_converter=fp16_converter, **recipe.kwargs(),
        )  # fmt: skip
    artifact = Artifact.for_spec(
        spec, precision, onnx_path=onnx_path, weights=weights.path if weights else None,
        sha256=onnx_sha, seed=seed,
    )  # fmt: skip
    t0 = time.perf_counter()
    with cls(EngineOptions(device=device, threads=threads)) as eng:
        eng.load(artifact, BatchRange.fixed(batch))
        hits = _count_hits(eng, data, batch, min(5, spec.num_classes))
        details = eng.describe()
    seen, correct1, correct5 = hits
    return {
        "model": model,
        "engine": engine,
        "precision": precision,
        "dataset": data.name,
        "samples": seen,
        "top1": correct1 / seen,
        "top5": correct5 / seen,
        "correct_top1": correct1,
        "correct_top5": correct5,
        "source": "measured",
        "weights": provenance,
        "weights_file": str(weights.path) if weights is not None else None,
        "weights_sha256": weights.sha256 if weights is not None else None,
        "onnx": str(onnx_path) if onnx_path is not None else None,
        "onnx_sha256": onnx_sha,
        "calibration": calibration,
        "quantizer": quantizer_for(precision, recipe.quantizer) if precision.calibrated else None,
        "batch": batch,
        "device": device,
        "seconds": round(time.perf_counter() - t0, 3),
        "engine_details": details,
    }


def _onnx_file(
    model: str,
    precision: Precision,
    weights: Weights | None,
    artifacts: str | Path | None,
    seed: int,
    provenance: str,
    **recipe: Any,
) -> tuple[Path, str, Any]:
    """The verified ONNX file evaluated (made or reused as a run would): its path, sha256 and
    its calibration record (INT8, FP8)."""
    root = Path(artifacts) if artifacts is not None else cache_dir() / "eval"
    res = ensure_precision(
        model, precision, weights=weights.path if weights else None, out_dir=root, seed=seed,
        weights_source=provenance, **recipe,
    )  # fmt: skip
    return res.onnx_path, res.sha256, (res.manifest.get("extra") or {}).get("calibration")


def _count_hits(eng: Any, data: LabelledDataset, batch: int, k: int) -> tuple[int, int, int]:
    """(images seen, top-1 hits, top-k hits) over the whole dataset, the last batch padded."""
    correct1 = correct5 = seen = 0
    for images, labels in data.batches(batch):
        n = len(labels)
        logits = np.asarray(eng.infer(_padded(images, batch)))[:n]
        top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        correct1 += int((top[:, 0] == labels).sum())
        correct5 += int((top == labels[:, None]).any(axis=1).sum())
        seen += n
    return seen, correct1, correct5
