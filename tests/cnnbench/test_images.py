from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnbench.data.images import list_images, load_image_batches, preprocess, random_batches
from cnnbench.errors import InvalidInputError
from cnnbench.models.spec import ModelSpec, Preprocessing, imagenet_spec

SPEC = imagenet_spec("t", "T")


def test_preprocess_resizes_shorter_side_then_centre_crops() -> None:
    # Left half black, right half white, 448x224: after resize (256 short side) and centre crop
    # the crop straddles the boundary in the middle.
    img = np.zeros((224, 448, 3), dtype=np.uint8)
    img[:, 224:] = 255
    x = preprocess(Image.fromarray(img), SPEC)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    mean, std = np.array(SPEC.preprocessing.mean), np.array(SPEC.preprocessing.std)
    np.testing.assert_allclose(x[:, 100, 0], (0 - mean) / std, rtol=1e-5)
    np.testing.assert_allclose(x[:, 100, -1], (1 - mean) / std, rtol=1e-5)
    assert np.argmax(np.diff(x[0, 100])) in (111, 112)


def test_grayscale_spec_gives_one_channel() -> None:
    spec = ModelSpec(
        "g", "G", (1, 32, 32), 10, Preprocessing(32, 32, (0.5,), (0.5,), grayscale=True)
    )
    x = preprocess(Image.new("RGB", (40, 32), (255, 255, 255)), spec)
    assert x.shape == (1, 32, 32)
    np.testing.assert_allclose(x, 1.0)


def test_random_batches_are_seeded_and_normalised() -> None:
    a = random_batches(SPEC, count=2, batch=2, seed=3)
    b = random_batches(SPEC, count=2, batch=2, seed=3)
    c = random_batches(SPEC, count=2, batch=2, seed=4)
    assert [x.shape for x in a] == [(2, 3, 224, 224)] * 2
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    lo = (0 - np.array(SPEC.preprocessing.mean)) / np.array(SPEC.preprocessing.std)
    assert a[0].min() >= lo.min() - 1e-6


def test_load_image_batches_skips_unreadable_and_rejects_empty(tmp_path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        load_image_batches(tmp_path / "nope", SPEC, batch=2)
    with pytest.raises(InvalidInputError, match="no images"):
        load_image_batches(tmp_path, SPEC, batch=2)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InvalidInputError, match="no readable"):
        load_image_batches(tmp_path, SPEC, batch=2)
    for i in range(3):
        Image.new("RGB", (300, 260), (i * 40, 0, 0)).save(tmp_path / f"img{i}.png")
    batches = load_image_batches(tmp_path, SPEC, batch=2)
    assert [b.shape[0] for b in batches] == [2, 1]
    assert len(list_images(tmp_path)) == 4
