"""scikit-learn's bundled handwritten digits, shaped for LeNet-5, with one fixed train/test split.

The data: 1,797 grey images of 8×8 pixels, values 0..16 (ink counts of 4×4 blocks of the original
32×32 bitmaps), ten classes. ``sklearn.datasets.load_digits`` reads it from the package, so no
download is needed.

How an 8×8 image becomes LeNet's 32×32 input (fixed; every number here is part of the contract):

1. ink = v / 16, so background is 0.0 and full ink 1.0 (light digit on dark ground, like MNIST);
2. the 8×8 image is scaled to 20×20 with PIL's bilinear filter (mode ``F``, float32), as MNIST
   puts a 20×20 digit box inside its 28×28 frame;
3. the 20×20 digit is centred in a 32×32 zero canvas (6 pixels of margin on every side), as
   LeCun et al. (1998) centre the 28×28 MNIST images in LeNet-5's 32×32 input;
4. the model's own normalisation: (x - mean) / std from its ModelSpec.

The split: ``train_test_split(test_size=0.25, stratify=labels, random_state=0, shuffle=True)``
over the 1,797 images: 1,347 train and 450 test images, every class in both.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cnnbench.errors import InvalidInputError
from cnnbench.models import get_spec

if TYPE_CHECKING:
    from cnnbench.models.spec import ModelSpec

SPLITS = ("train", "test")
TEST_SIZE = 0.25
SPLIT_SEED = 0
DIGIT_BOX = 20
CANVAS = 32
NUM_CLASSES = 10


@dataclass(frozen=True)
class DigitsSplit:
    """One split: ``images`` (N, 1, 32, 32) float32 normalised, ``labels`` (N,) int64."""

    name: str
    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def sha256(self) -> str:
        """Content hash of images and labels (keys calibration caches)."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images).tobytes())
        h.update(np.ascontiguousarray(self.labels).tobytes())
        return h.hexdigest()


def to_lenet_canvas(images8: np.ndarray) -> np.ndarray:
    """8×8 images with values 0..16 → (N, 32, 32) float32 ink in [0, 1], digit box centred."""
    from PIL import Image

    if images8.ndim != 3 or images8.shape[1:] != (8, 8):
        raise InvalidInputError(f"digits images must be (N, 8, 8), got {images8.shape}")
    ink = (images8.astype(np.float32) / 16.0).clip(0.0, 1.0)
    out = np.zeros((ink.shape[0], CANVAS, CANVAS), dtype=np.float32)
    lo = (CANVAS - DIGIT_BOX) // 2
    for i, img in enumerate(ink):
        big = Image.fromarray(img, mode="F").resize(
            (DIGIT_BOX, DIGIT_BOX), Image.Resampling.BILINEAR
        )
        out[i, lo : lo + DIGIT_BOX, lo : lo + DIGIT_BOX] = np.asarray(big, dtype=np.float32)
    return out


@functools.lru_cache(maxsize=1)
def _raw_split() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    canvas = to_lenet_canvas(np.asarray(data.images))
    labels = np.asarray(data.target, dtype=np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        canvas, labels, test_size=TEST_SIZE, stratify=labels, random_state=SPLIT_SEED, shuffle=True
    )
    return {"train": (x_tr, y_tr), "test": (x_te, y_te)}


def load_split(split: str = "test", spec: ModelSpec | None = None) -> DigitsSplit:
    """The ``train`` or ``test`` split as LeNet inputs, normalised with ``spec`` (default lenet5).

    Raises:
        InvalidInputError: for an unknown split name or a spec that is not 1×32×32.
    """
    if split not in SPLITS:
        raise InvalidInputError(f"unknown digits split '{split}': choose train or test")
    if spec is None:
        spec = get_spec("lenet5")
    if tuple(spec.input_shape) != (1, CANVAS, CANVAS):
        raise InvalidInputError(
            f"the digits dataset feeds 1x32x32 inputs; model {spec.name} expects "
            f"{'x'.join(map(str, spec.input_shape))}"
        )
    if spec.num_classes < NUM_CLASSES:
        raise InvalidInputError(f"model {spec.name} has {spec.num_classes} classes; digits has 10")
    images, labels = _raw_split()[split]
    mean = float(spec.preprocessing.mean[0])
    std = float(spec.preprocessing.std[0])
    x = ((images - mean) / std).astype(np.float32)[:, None, :, :]
    return DigitsSplit(split, np.ascontiguousarray(x), labels.copy())


def split_sizes() -> dict[str, int]:
    """Images per split: {'train': 1347, 'test': 450}."""
    return {k: int(v[1].shape[0]) for k, v in _raw_split().items()}
