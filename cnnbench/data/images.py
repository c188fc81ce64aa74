"""Images to input tensors through a model's preprocessing, and seeded random inputs.

The order is fixed and matches torchvision's ImageNet evaluation: convert colour mode, resize the
shorter side to ``resize``, centre-crop ``crop`` × ``crop``, scale to [0, 1], normalise.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cnnbench.errors import InvalidInputError

if TYPE_CHECKING:
    from PIL import Image

    from cnnbench.models.spec import ModelSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def _normalise(pixels: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """HWC (or HW) uint8 -> CHW float32 normalised with the spec's mean/std."""
    pre = spec.preprocessing
    x = pixels.astype(np.float32) / 255.0
    if x.ndim == 2:
        x = x[:, :, None]
    x = x.transpose(2, 0, 1)
    mean = np.asarray(pre.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(pre.std, dtype=np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray((x - mean) / std, dtype=np.float32)


def preprocess(img: Image.Image, spec: ModelSpec) -> np.ndarray:
    """One PIL image -> (C, H, W) float32 input for ``spec``'s model."""
    from PIL import Image

    pre = spec.preprocessing
    img = img.convert("L" if pre.grayscale else "RGB")
    w, h = img.size
    # Same integer arithmetic as torchvision's Resize(int) and CenterCrop, so published
    # accuracies reproduce pixel for pixel: the long side is truncated, the offset rounded.
    if w <= h:
        size = (pre.resize, int(pre.resize * h / w))
    else:
        size = (int(pre.resize * w / h), pre.resize)
    resample = {
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "nearest": Image.Resampling.NEAREST,
    }[pre.interpolation]
    img = img.resize(size, resample)
    left = int(round((size[0] - pre.crop) / 2.0))
    top = int(round((size[1] - pre.crop) / 2.0))
    img = img.crop((left, top, left + pre.crop, top + pre.crop))
    return _normalise(np.asarray(img), spec)


def list_images(directory: str | Path) -> list[Path]:
    """Image files under ``directory`` (recursively), sorted; raises if the folder is missing."""
    d = Path(directory)
    if not d.is_dir():
        raise InvalidInputError(f"image folder not found: {d}")
    return sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_image(path: Path, spec: ModelSpec) -> np.ndarray:
    """Read and preprocess one image; raises InvalidInputError if it is unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return preprocess(img, spec)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise InvalidInputError(f"cannot read image {path}: {exc}") from None


def load_image_batches(
    directory: str | Path, spec: ModelSpec, *, batch: int, limit: int | None = None
) -> list[np.ndarray]:
    """Preprocessed images from ``directory`` in batches of ``batch`` (the last may be smaller).

    Unreadable files are skipped; a folder with no readable image raises InvalidInputError.
    """
    if batch < 1:
        raise InvalidInputError(f"batch must be >= 1, got {batch}")
    paths = list_images(directory)
    if not paths:
        raise InvalidInputError(f"no images ({', '.join(IMAGE_SUFFIXES[:4])}, ...) in {directory}")
    arrays: list[np.ndarray] = []
    for p in paths:
        if limit is not None and len(arrays) >= limit:
            break
        try:
            arrays.append(load_image(p, spec))
        except InvalidInputError:
            continue
    if not arrays:
        raise InvalidInputError(f"no readable image in {directory}")
    stacked = np.stack(arrays)
    return [stacked[i : i + batch] for i in range(0, len(stacked), batch)]


def random_images(spec: ModelSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random uint8 images (N, H, W, C) of the spec's input size."""
    c, h, w = spec.input_shape
    return rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def random_batches(spec: ModelSpec, *, count: int, batch: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` seeded batches of random images run through the spec's normalisation."""
    if count < 1 or batch < 1:
        raise InvalidInputError(f"count and batch must be >= 1, got {count} and {batch}")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        imgs = random_images(spec, batch, rng)
        if spec.input_shape[0] == 1:
            imgs = imgs[..., 0]
        out.append(np.stack([_normalise(im, spec) for im in imgs]))
    return out
