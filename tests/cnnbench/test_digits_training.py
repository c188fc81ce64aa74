"""The digits split (fixed, documented) and seeded, deterministic LeNet-5 training."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from cnnbench.artifacts import sha256_file
from cnnbench.data import digits
from cnnbench.errors import InvalidInputError
from cnnbench.models import get_model, get_spec
from cnnbench.training import TrainConfig, train

BACKGROUND = -0.1  # LeNet's normalisation maps ink 0 to -0.1 and full ink to 1.175


def test_split_sizes_are_fixed_and_stratified() -> None:
    assert digits.split_sizes() == {"train": 1347, "test": 450}
    test = digits.load_split("test")
    train_ = digits.load_split("train")
    counts = np.bincount(test.labels, minlength=10)
    # stratified: every class holds about a quarter of its ~180 images in the test split
    assert counts.min() >= 43 and counts.max() <= 46, counts
    assert len(np.unique(train_.labels)) == 10
    # the same split every time (content hash, not just sizes)
    assert digits.load_split("test").sha256() == test.sha256()
    assert test.sha256() != train_.sha256()


def test_images_are_centred_20x20_digits_on_32x32_with_lenet_levels() -> None:
    x = digits.load_split("test").images
    assert x.shape == (450, 1, 32, 32) and x.dtype == np.float32
    # 6-pixel margins are pure background
    for region in (x[..., :6, :], x[..., 26:, :], x[..., :, :6], x[..., :, 26:]):
        np.testing.assert_allclose(region, BACKGROUND, atol=1e-6)
    assert x.min() == pytest.approx(BACKGROUND, abs=1e-6)
    assert 1.0 < x.max() <= 1.175 + 1e-5


def test_canvas_maps_ink_to_unit_range() -> None:
    img = np.zeros((1, 8, 8))
    img[0, 3:5, 3:5] = 16
    out = digits.to_lenet_canvas(img)
    assert out.shape == (1, 32, 32)
    assert out.max() == pytest.approx(1.0) and out.min() == 0.0
    assert out[0, 16, 16] == pytest.approx(1.0)  # the blob stays in the centre
    with pytest.raises(InvalidInputError):
        digits.to_lenet_canvas(np.zeros((2, 7, 7)))


def test_split_refuses_other_models_and_names() -> None:
    with pytest.raises(InvalidInputError, match="1x32x32"):
        digits.load_split("test", get_spec("resnet18"))
    with pytest.raises(InvalidInputError, match="unknown digits split"):
        digits.load_split("validation")


@pytest.mark.parametrize(
    ("field", "value"), [("epochs", 0), ("batch", -1), ("lr", 0.0), ("shift", 9), ("threads", 0)]
)
def test_config_validation_names_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})  # type: ignore[arg-type]


def test_training_is_deterministic_and_seeded(tmp_path) -> None:
    a = train(TrainConfig(epochs=1), tmp_path / "a.pt")
    b = train(TrainConfig(epochs=1), tmp_path / "b.pt")
    c = train(TrainConfig(epochs=1, seed=1), tmp_path / "c.pt")
    assert a.sha256 == b.sha256 == sha256_file(tmp_path / "a.pt")
    assert a.sha256 != c.sha256
    assert a.losses == b.losses and len(a.losses) == 1
    assert a.test_samples == 450 and a.train_samples == 1347
    # one epoch already learns something: far above chance (10%)
    assert a.test_top1 > 0.3
    assert (tmp_path / "a.train.json").is_file()
    # the weights load strictly into a fresh model
    get_model("lenet5", weights=tmp_path / "a.pt")


def test_train_cli_prints_the_path_last(tmp_path) -> None:
    from cnnbench.cli import cli

    out = tmp_path / "w" / "weights.pt"
    res = CliRunner().invoke(cli, ["train", "lenet5", "--epochs", "1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == str(out)
    assert out.is_file()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_train_cli_rejects_a_model_digits_cannot_feed(tmp_path) -> None:
    from cnnbench.cli import cli

    out = tmp_path / "w.pt"
    res = CliRunner().invoke(cli, ["train", "resnet18", "--out", str(out)])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "lenet5" in lines[0], res.stderr
    assert not out.exists()


@pytest.mark.slow
def test_default_training_reaches_97_percent(tmp_path) -> None:
    result = train(TrainConfig(), tmp_path / "weights.pt")
    assert result.test_top1 >= 0.97, result.test_top1
