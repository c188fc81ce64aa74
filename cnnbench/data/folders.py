"""Labelled image folders for accuracy: ImageFolder and the ImageNet validation layout.

Two layouts are understood:

* **ImageFolder**: ``DIR/<class>/<image>``. Class folders map to model class indices through a
  class-index JSON (``{"n01440764": 0, ...}`` or torchvision's ``{"0": ["n01440764", "tench"]}``),
  else by their names when every name is an integer (``DIR/417/x.png`` is class 417), else by
  sorted name (0, 1, ...) when there is one folder per model class.
* **ImageNet validation**: a flat folder plus a labels file, either ``filename label`` lines or one
  label per line for the folder's images in sorted order. Labels are 0-based model class indices.

Images are decoded and preprocessed (the model spec's resize → centre crop → normalise, via
:func:`cnnbench.data.images.preprocess`) by a pool of threads, a few batches ahead of the model.
Unreadable images are counted and skipped up to a limit, beyond which the run fails.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnbench.data.images import IMAGE_SUFFIXES, list_images, preprocess
from cnnbench.errors import InvalidInputError
from cnnbench.progress import track

if TYPE_CHECKING:
    from cnnbench.models.spec import ModelSpec

LAYOUTS = ("imagefolder", "imagenet-val")
_PREFETCH_BATCHES = 2


@dataclass
class ImageDataset:
    """A labelled list of image files prepared for one model's preprocessing.

    It satisfies ``bench.run.accuracy.LabelledDataset`` (``name``, ``calib_data``, ``len()``,
    ``batches(batch)``), so any engine and precision can evaluate it.

    Attributes:
        root: the folder given by the user.
        layout: ``imagefolder`` or ``imagenet-val``.
        samples: (image path, model class index) in a fixed order.
        spec: the model spec whose preprocessing is applied.
        classes: class folder names for ImageFolder (None for the flat layout).
        workers: decoding threads used by :meth:`batches`.
        max_bad: unreadable images tolerated: a count (int) or a fraction (float < 1).
        progress: show a progress bar (cnnbench.progress.track) while iterating.
        calib_data: INT8 calibration source for files evaluated on this data (None: the
            converter's default; never this folder itself, the evaluated split).
        bad: (path, reason) of images that could not be read, filled while iterating.
    """

    root: Path
    layout: str
    samples: list[tuple[Path, int]]
    spec: ModelSpec
    classes: list[str] | None = None
    workers: int = 4
    max_bad: int | float = 0.01
    progress: bool = True
    calib_data: str | None = None
    bad: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """A short dataset name for provenance: the folder's name."""
        return self.root.resolve().name or str(self.root)

    def __len__(self) -> int:
        return len(self.samples)

    def batches(self, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (inputs N×C×H×W float32, labels N int64) of the readable images, in order.

        Decoding runs on ``workers`` threads, ``_PREFETCH_BATCHES`` batches ahead of the
        consumer. More unreadable images than ``max_bad`` allows raise InvalidInputError.
        """
        if batch < 1:
            raise InvalidInputError(f"batch must be >= 1, got {batch}")
        if self.workers < 1:
            raise InvalidInputError(f"workers must be >= 1, got {self.workers}")
        chunks = [self.samples[i : i + batch] for i in range(0, len(self.samples), batch)]
        it = self._decoded(chunks, bad_limit(self.max_bad, len(self.samples)))
        if self.progress:
            it = track(it, total=len(chunks), description=f"eval {self.name}")
        yield from it

    def _decoded(
        self, chunks: list[list[tuple[Path, int]]], limit: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        self.bad = []
        with ThreadPoolExecutor(self.workers, thread_name_prefix="cnnbench-load") as pool:
            pending: deque[list[Future[np.ndarray | str]]] = deque()
            nxt = yielded = 0
            try:
                for chunk in chunks:
                    while nxt < len(chunks) and len(pending) <= _PREFETCH_BATCHES:
                        pending.append([pool.submit(_load, p, self.spec) for p, _ in chunks[nxt]])
                        nxt += 1
                    arrays, labels = [], []
                    for (path, label), fut in zip(chunk, pending.popleft(), strict=True):
                        out = fut.result()
                        if isinstance(out, str):
                            self.bad.append((path, out))
                            continue
                        arrays.append(out)
                        labels.append(label)
                    if len(self.bad) > limit:
                        path, why = self.bad[0]
                        raise InvalidInputError(
                            f"{len(self.bad)} unreadable images in {self.root} (first: {path}: "
                            f"{why}); more than the allowed {limit}: fix or remove them, or "
                            "raise --max-bad"
                        )
                    if arrays:
                        yielded += len(arrays)
                        yield np.stack(arrays), np.asarray(labels, dtype=np.int64)
                if not yielded:
                    raise InvalidInputError(f"no readable image in {self.root}")
            finally:
                for futures in pending:
                    for fut in futures:
                        fut.cancel()


def _load(path: Path, spec: ModelSpec) -> np.ndarray | str:
    """The preprocessed image, or the reason it could not be read (never raises for bad files)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return preprocess(img, spec)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        return " ".join(str(exc).split()) or type(exc).__name__


def bad_limit(max_bad: int | float, total: int) -> int:
    """How many unreadable images are tolerated: a count, or a fraction (< 1) of ``total``."""
    if isinstance(max_bad, float) and 0 <= max_bad < 1:
        return math.ceil(max_bad * total)
    if max_bad < 0 or int(max_bad) != max_bad:
        raise InvalidInputError(f"max-bad must be a count >= 0 or a fraction < 1, got {max_bad}")
    return int(max_bad)


def parse_max_bad(text: str) -> int | float:
    """``"1%"`` → 0.01, ``"0.5"`` → 0.5, ``"10"`` → 10 (a count)."""
    t = text.strip()
    try:
        if t.endswith("%"):
            value: int | float = float(t[:-1]) / 100
        elif "." in t:
            value = float(t)
        else:
            value = int(t)
    except ValueError:
        raise InvalidInputError(
            f"--max-bad must be a count, a fraction or N%, got {text!r}"
        ) from None
    if isinstance(value, float) and not 0 <= value < 1:
        raise InvalidInputError(f"--max-bad as a fraction must be in [0, 1), got {text!r}")
    if value < 0:
        raise InvalidInputError(f"--max-bad must be >= 0, got {text!r}")
    return value


def open_dataset(
    path: str | Path, spec: ModelSpec, *, labels_file: str | Path | None = None
) -> ImageDataset:
    """Open a labelled image folder for ``spec``'s model.

    Args:
        path: an ImageFolder root (class subfolders) or a flat folder of images.
        spec: the model spec; its preprocessing is used and labels are checked against
            ``spec.num_classes``.
        labels_file: for a flat folder, the labels (``filename label`` lines or one label per
            sorted image); for an ImageFolder, an optional ``.json`` class index mapping folder
            names to model class indices.

    Raises:
        InvalidInputError: a missing or empty folder, a labels file that does not match the
            images, or a label outside ``[0, num_classes)``; each with a one-line message.
    """
    root = Path(path)
    if not root.is_dir():
        raise InvalidInputError(f"dataset folder not found: {root}")
    labels = Path(labels_file) if labels_file is not None else None
    if labels is not None and not labels.is_file():
        raise InvalidInputError(f"labels file not found: {labels}")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if class_dirs and (labels is None or labels.suffix.lower() == ".json"):
        ds = _image_folder(root, class_dirs, spec, labels)
    else:
        if labels is None:
            raise InvalidInputError(
                f"{root} has no class subfolders; for a flat ImageNet-val folder pass --labels "
                "FILE ('filename label' lines or one label per sorted image)"
            )
        ds = _flat_folder(root, spec, labels)
    if not ds.samples:
        raise InvalidInputError(
            f"no images ({', '.join(IMAGE_SUFFIXES[:4])}, ...) in {root}; check the path"
        )
    _check_labels(ds, spec)
    return ds


def _images_in(folder: Path) -> list[Path]:
    return [p for p in list_images(folder) if not any(s.startswith(".") for s in p.parts)]


def _image_folder(
    root: Path, class_dirs: list[Path], spec: ModelSpec, class_index: Path | None
) -> ImageDataset:
    names = [d.name for d in class_dirs]
    if class_index is not None:
        mapping = _read_class_index(class_index)
        missing = [n for n in names if n not in mapping]
        if missing:
            raise InvalidInputError(
                f"class index {class_index} has no entry for {len(missing)} class folder(s) "
                f"of {root} (e.g. {missing[0]!r}); add them or remove those folders"
            )
    elif all(n.isdigit() for n in names):
        mapping = {n: int(n) for n in names}
    elif len(names) == spec.num_classes:
        mapping = {n: i for i, n in enumerate(names)}
    else:
        raise InvalidInputError(
            f"{root} has {len(names)} class folders but {spec.name} has {spec.num_classes} "
            "classes; name folders by class index (e.g. 417/) or pass --labels "
            "class_index.json mapping folder name -> class index"
        )
    samples = [(p, mapping[d.name]) for d in class_dirs for p in _images_in(d)]
    return ImageDataset(root, "imagefolder", samples, spec, classes=names)


def _read_class_index(path: Path) -> dict[str, int]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"cannot read class index {path}: {exc}") from None
    out: dict[str, int] = {}
    if isinstance(raw, dict):
        for key, value in raw.items():
            # torchvision / Keras style: {"0": ["n01440764", "tench"]}
            if isinstance(value, list) and value and str(key).isdigit():
                out[str(value[0])] = int(key)
            elif isinstance(value, int) and not isinstance(value, bool):
                out[str(key)] = value
            else:
                out = {}
                break
    if not out:
        raise InvalidInputError(
            f"class index {path} must map folder name -> class index, e.g. "
            '{"n01440764": 0} or {"0": ["n01440764", "tench"]}'
        )
    return out


def _flat_folder(root: Path, spec: ModelSpec, labels: Path) -> ImageDataset:
    images = _images_in(root)
    try:
        lines = [ln.split() for ln in labels.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read labels file {labels}: {exc}") from None
    lines = [ln for ln in lines if ln and not ln[0].startswith("#")]
    widths = {len(ln) for ln in lines}
    if not images:
        return ImageDataset(root, "imagenet-val", [], spec)
    if widths == {1}:
        if len(lines) != len(images):
            raise InvalidInputError(
                f"labels file {labels} has {len(lines)} labels but {root} has {len(images)} "
                "images; one label per image (sorted by file name) is required"
            )
        pairs = zip(images, lines, strict=True)
        samples = [(p, _label(ln[0], labels, i)) for i, (p, ln) in enumerate(pairs, 1)]
    elif widths == {2}:
        by_name = {p.relative_to(root).as_posix(): p for p in images}
        samples = []
        for i, (name, lab) in enumerate(lines, 1):
            p = by_name.pop(name, None)
            if p is None:
                raise InvalidInputError(
                    f"labels file {labels} line {i} names {name!r}, which is not an image in "
                    f"{root}; the labels file does not match the folder"
                )
            samples.append((p, _label(lab, labels, i)))
        if by_name:
            extra = sorted(by_name)
            raise InvalidInputError(
                f"{len(extra)} image(s) in {root} have no label in {labels} (e.g. {extra[0]!r}); "
                "the labels file does not match the folder"
            )
    else:
        raise InvalidInputError(
            f"labels file {labels} must have 'filename label' lines or one label per line"
        )
    return ImageDataset(root, "imagenet-val", samples, spec)


def _label(text: str, labels: Path, line: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidInputError(
            f"labels file {labels} line {line}: label {text!r} is not an integer class index"
        ) from None


def _check_labels(ds: ImageDataset, spec: ModelSpec) -> None:
    for path, label in ds.samples:
        if not 0 <= label < spec.num_classes:
            raise InvalidInputError(
                f"label {label} of {path} is outside {spec.name}'s {spec.num_classes} classes "
                f"(0..{spec.num_classes - 1}); labels must be 0-based model class indices"
            )
