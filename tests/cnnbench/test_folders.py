"""Labelled image folders: layouts, label mapping, unreadable images and their limit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnbench.data.folders import ImageDataset, bad_limit, open_dataset, parse_max_bad
from cnnbench.errors import InvalidInputError
from cnnbench.models.spec import ModelSpec, Preprocessing

# A tiny 10-class "model": inputs 3x16x16; an image's class is encoded in its red level.
SPEC = ModelSpec(
    name="tiny",
    family="Test",
    input_shape=(3, 16, 16),
    num_classes=10,
    preprocessing=Preprocessing(resize=20, crop=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
    imagenet=False,
)


def _img(path: Path, cls: int, size: tuple[int, int] = (24, 20)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    a[..., 0] = 20 * cls + 10
    Image.fromarray(a).save(path)
    return path


def _infer(x: np.ndarray) -> np.ndarray:
    """Logits peaking at the class encoded in the red channel (what _img wrote)."""
    cls = np.clip(np.round((x[:, 0].mean(axis=(1, 2)) * 255 - 10) / 20), 0, 9).astype(int)
    logits = np.zeros((len(x), 10), dtype=np.float32)
    logits[np.arange(len(x)), cls] = 5.0
    logits[np.arange(len(x)), (cls + 1) % 10] = 4.0  # runner-up: counts for top-5 only
    return logits


class Score:
    def __init__(self, images: int, top1: float, top5: float, unreadable: int) -> None:
        self.images, self.top1, self.top5, self.unreadable = images, top1, top5, unreadable


def evaluate(
    ds: ImageDataset, infer=_infer, *, batch: int = 8, workers: int = 2, max_bad=0.01, **_: object
) -> Score:
    """Top-1/top-5 (%) of ``infer`` over the dataset's batches (what bench.run.accuracy does)."""
    ds.workers, ds.max_bad, ds.progress = workers, max_bad, False
    n = c1 = c5 = 0
    for x, y in ds.batches(batch):
        top = np.argsort(-infer(x), axis=1, kind="stable")[:, :5]
        c1 += int((top[:, 0] == y).sum())
        c5 += int((top == y[:, None]).any(axis=1).sum())
        n += len(y)
    return Score(n, 100 * c1 / n, 100 * c5 / n, len(ds.bad))


def test_imagefolder_numeric_names_map_to_class_indices(tmp_path: Path) -> None:
    for cls in (2, 7, 9):
        for k in range(3):
            _img(tmp_path / str(cls) / f"{k}.png", cls)
    ds = open_dataset(tmp_path, SPEC)
    assert ds.layout == "imagefolder"
    assert sorted({label for _, label in ds.samples}) == [2, 7, 9]
    res = evaluate(ds, _infer, batch=4, workers=3)
    assert (res.images, res.top1, res.top5, res.unreadable) == (9, 100.0, 100.0, 0)


def test_imagefolder_class_index_json_both_formats(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _img(root / "cat" / "a.png", 3)
    _img(root / "dog" / "b.jpg", 5)
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"cat": 3, "dog": 5}))
    tv = tmp_path / "tv.json"
    tv.write_text(json.dumps({"3": ["cat", "Felis"], "5": ["dog", "Canis"]}))
    for index in (plain, tv):
        ds = open_dataset(root, SPEC, labels_file=index)
        assert sorted((p.name, label) for p, label in ds.samples) == [("a.png", 3), ("b.jpg", 5)]
        assert evaluate(ds, _infer, batch=8).top1 == 100.0


def test_wrong_mapping_is_visible_in_accuracy(tmp_path: Path) -> None:
    """The same folder with a class index that swaps two classes must score 0 on them."""
    root = tmp_path / "data"
    _img(root / "cat" / "a.png", 3)
    _img(root / "dog" / "b.png", 5)
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps({"cat": 5, "dog": 3}))
    res = evaluate(open_dataset(root, SPEC, labels_file=swapped), _infer)
    assert res.top1 == 0.0


def test_sorted_names_need_one_folder_per_class(tmp_path: Path) -> None:
    for name in ("ant", "bee"):
        _img(tmp_path / name / "x.png", 0)
    with pytest.raises(InvalidInputError, match="2 class folders but tiny has 10 classes"):
        open_dataset(tmp_path, SPEC)
    for i, name in enumerate("cdefghij"):
        _img(tmp_path / name / "x.png", i + 2)
    ds = open_dataset(tmp_path, SPEC)
    assert [label for _, label in ds.samples] == list(range(10))


def test_flat_folder_filename_label_lines(tmp_path: Path) -> None:
    root = tmp_path / "val"
    for i, cls in enumerate([4, 1, 8, 0]):
        _img(root / f"ILSVRC2012_val_{i:08d}.JPEG", cls, size=(30, 17))
    labels = tmp_path / "val.txt"
    labels.write_text(
        "\n".join(f"ILSVRC2012_val_{i:08d}.JPEG {c}" for i, c in enumerate([4, 1, 8, 0])) + "\n"
    )
    ds = open_dataset(root, SPEC, labels_file=labels)
    assert ds.layout == "imagenet-val"
    assert [label for _, label in ds.samples] == [4, 1, 8, 0]
    assert evaluate(ds, _infer, batch=3, workers=2).top1 == 100.0


def test_flat_folder_one_label_per_sorted_file(tmp_path: Path) -> None:
    root = tmp_path / "val"
    for name, cls in (("b.png", 2), ("a.png", 6), ("c.png", 9)):
        _img(root / name, cls)
    labels = tmp_path / "labels.txt"
    labels.write_text("6\n2\n9\n")  # a, b, c
    ds = open_dataset(root, SPEC, labels_file=labels)
    assert [(p.name, label) for p, label in ds.samples] == [
        ("a.png", 6),
        ("b.png", 2),
        ("c.png", 9),
    ]
    assert evaluate(ds, _infer).top1 == 100.0


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1\n2\n", "has 2 labels but .* has 3 images"),
        ("a.png 1\nb.png 2\nc.png 3\nzzz.png 4\n", "names 'zzz.png', which is not an image"),
        ("a.png 1\nb.png 2\n", "1 image\\(s\\) in .* have no label"),
        ("a.png 1\nb.png x\nc.png 3\n", "label 'x' is not an integer"),
        ("a.png 1\nb.png 2\nc.png 10\n", "label 10 of .* is outside tiny's 10 classes"),
        ("a.png 1 extra\nb.png 2\nc.png 3\n", "must have 'filename label' lines"),
    ],
)
def test_labels_file_mismatch_is_one_clear_line(tmp_path: Path, text: str, match: str) -> None:
    root = tmp_path / "val"
    for name in ("a.png", "b.png", "c.png"):
        _img(root / name, 1)
    labels = tmp_path / "labels.txt"
    labels.write_text(text)
    with pytest.raises(InvalidInputError, match=match) as info:
        open_dataset(root, SPEC, labels_file=labels)
    assert "\n" not in str(info.value)


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="dataset folder not found"):
        open_dataset(tmp_path / "nope", SPEC)
    empty = tmp_path / "empty"
    (empty / "3").mkdir(parents=True)
    with pytest.raises(InvalidInputError, match="no images"):
        open_dataset(empty, SPEC)
    flat = tmp_path / "flat"
    flat.mkdir()
    _img(flat / "a.png", 1)
    with pytest.raises(InvalidInputError, match="no class subfolders; .* pass --labels"):
        open_dataset(flat, SPEC)
    with pytest.raises(InvalidInputError, match="labels file not found"):
        open_dataset(flat, SPEC, labels_file=tmp_path / "missing.txt")


def test_unreadable_images_are_counted_then_fatal_past_the_limit(tmp_path: Path) -> None:
    for k in range(8):
        _img(tmp_path / "3" / f"{k}.png", 3)
    (tmp_path / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "3" / "empty.jpg").write_bytes(b"")
    ds = open_dataset(tmp_path, SPEC)
    assert len(ds) == 10
    res = evaluate(ds, _infer, batch=3, max_bad=2)
    assert (res.images, res.unreadable, res.top1) == (8, 2, 100.0)
    assert sorted(p.name for p, _ in ds.bad) == ["broken.png", "empty.jpg"]
    with pytest.raises(InvalidInputError, match="2 unreadable images .* more than the allowed 1"):
        evaluate(ds, _infer, batch=3, max_bad=1)
    # 10% of 10 images allows one; 20% allows two.
    with pytest.raises(InvalidInputError, match="--max-bad"):
        evaluate(ds, _infer, max_bad=0.1)
    assert evaluate(ds, _infer, max_bad=0.2).unreadable == 2


def test_all_unreadable_is_an_error_even_within_the_limit(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "x.png").write_bytes(b"junk")
    ds = open_dataset(tmp_path, SPEC)
    with pytest.raises(InvalidInputError, match="unreadable"):
        evaluate(ds, _infer)
    with pytest.raises(InvalidInputError, match="no readable image"):
        evaluate(ds, _infer, max_bad=5)


def test_preprocessing_is_resize_then_centre_crop(tmp_path: Path) -> None:
    """A 40x20 image whose left and right quarters differ: the centre crop sees the middle."""
    a = np.zeros((20, 40, 3), dtype=np.uint8)
    a[:, 10:30, 0] = 200  # middle half red
    Image.fromarray(a).save(tmp_path / "x.png")
    (tmp_path / "labels.txt").write_text("x.png 0\n")
    ds = open_dataset(tmp_path, SPEC, labels_file=tmp_path / "labels.txt")
    ds.workers, ds.progress = 1, False
    x, y = next(ds.batches(1))
    # resize shorter side 20 -> 20 (40x20 stays), crop 16x16 from the centre: all red.
    assert x.shape == (1, 3, 16, 16) and y.tolist() == [0]
    np.testing.assert_allclose(x[0, 0], 200 / 255, rtol=1e-6)


def test_max_bad_parsing() -> None:
    assert parse_max_bad("1%") == pytest.approx(0.01)
    assert parse_max_bad("0.5") == 0.5
    assert parse_max_bad("10") == 10
    for bad in ("x", "150%", "-3", "1.5"):
        with pytest.raises(InvalidInputError):
            parse_max_bad(bad)
    assert bad_limit(0.01, 1000) == 10 and bad_limit(0.01, 50) == 1 and bad_limit(3, 5) == 3
