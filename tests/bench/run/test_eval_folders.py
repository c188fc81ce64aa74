"""End-to-end accuracy on an image folder: top-1 must be 100% on images labelled with the
model's own confident predictions.

The folder is built here: smooth synthetic images of assorted sizes, saved as PNG, reloaded,
and preprocessed by an independent re-implementation of torchvision's ImageNet evaluation
transform (Resize(256) on the shorter side, CenterCrop(224), ToTensor, Normalize). The model is
resnet18 with seeded weights whose classifier bias is re-centred on these images' features, so
predictions spread over many classes instead of one. Only images whose top-1 margin is large are
kept, each labelled with its predicted class. Any error in the preprocessing order, the
normalisation, the channel order, or the folder-name -> class mapping changes predictions and
breaks the 100%.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

N_CANDIDATES = 24
MIN_KEPT, MIN_CLASSES = 6, 4
MARGIN = 0.15  # top-1 minus top-2 logit, in units of the image's logit standard deviation


def _sizes(rng: np.random.Generator) -> tuple[int, int]:
    """A (w, h) for which torchvision's rounding conventions and any other sane one agree
    (long side scales to an integer, even crop border), so the reference is exact."""
    while True:
        short = int(rng.integers(230, 400))
        long_ = int(rng.integers(short, 420))
        scaled = 256 * long_ / short
        if scaled == int(scaled) and (int(scaled) - 224) % 2 == 0:
            return (long_, short) if rng.random() < 0.5 else (short, long_)


def _smooth_image(rng: np.random.Generator):  # -> PIL.Image.Image
    from PIL import Image

    w, h = _sizes(rng)
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    a = np.zeros((h, w, 3))
    for _ in range(3):
        f = rng.uniform(1, 12, 2)
        phase, amp = rng.uniform(0, 6.3, 3), rng.uniform(20, 80, 3)
        a += amp * np.sin(2 * np.pi * (xx[..., None] * f[0] + yy[..., None] * f[1]) + phase)
    a += rng.uniform(60, 190, 3)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _reference_input(img, resize: int = 256, crop: int = 224):  # -> torch.Tensor
    """torchvision's Resize(256) + CenterCrop(224) + ToTensor + Normalize, written out."""
    import torch
    from PIL import Image

    img = img.convert("RGB")
    w, h = img.size
    if w <= h:
        nw, nh = resize, int(resize * h / w)
    else:
        nw, nh = int(resize * w / h), resize
    img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    top, left = int(round((nh - crop) / 2.0)), int(round((nw - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))
    t = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    return (t - mean) / std


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[int]]:
    """(ImageFolder root, weights file, labels kept) built from resnet18's own predictions."""
    import torch
    from PIL import Image

    from cnnbench.models import get_model

    tmp = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(7)
    raw = tmp / "raw"
    raw.mkdir()
    paths = []
    for i in range(N_CANDIDATES):
        p = raw / f"img{i:02d}.png"
        _smooth_image(rng).save(p)
        paths.append(p)
    model = get_model("resnet18", seed=0)
    inputs = []
    for p in paths:  # reloaded from the PNG files
        with Image.open(p) as img:
            inputs.append(_reference_input(img))
    x = torch.stack(inputs)
    feats: dict[str, torch.Tensor] = {}
    hook = model.avgpool.register_forward_hook(lambda m, i, o: feats.update(f=o.flatten(1)))
    with torch.no_grad():
        model(x)
        hook.remove()
        # Seeded weights predict one class for everything; centring the logits on these
        # images' mean feature spreads the predictions over many classes.
        model.fc.bias.copy_(-(model.fc.weight @ feats["f"].mean(0)))
        logits = model.fc(feats["f"])
    top2 = logits.topk(2, dim=1)
    margin = (top2.values[:, 0] - top2.values[:, 1]) / logits.std(dim=1)
    keep = [i for i in range(N_CANDIDATES) if margin[i] > MARGIN]
    labels = [int(top2.indices[i, 0]) for i in keep]
    assert len(keep) >= MIN_KEPT and len(set(labels)) >= MIN_CLASSES, (keep, labels)
    root = tmp / "data"
    for i, label in zip(keep, labels, strict=True):
        dest = root / f"{label:04d}" / paths[i].name  # zero-padded: still class `label`
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(paths[i].read_bytes())
    weights = tmp / "resnet18-centred.pt"
    torch.save(model.state_dict(), weights)
    return root, weights, labels


def _eval(*args: str) -> dict:
    import json

    from click.testing import CliRunner

    from cnnbench.cli import cli

    res = CliRunner().invoke(cli, ["eval", "resnet18", *args, "--format", "json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_eval_gives_100_percent_on_its_own_confident_predictions(
    labelled_folder: tuple[Path, Path, list[int]], tmp_path: Path
) -> None:
    from cnnbench.bench.report.build import compare_rows
    from cnnbench.bench.results.files import read_rows

    root, weights, labels = labelled_folder
    out = tmp_path / "results.csv"
    result = _eval(
        "--data", str(root), "--weights", str(weights), "--engine", "torch",
        "--batch", "5", "--workers", "3", "--out", str(out),
    )  # fmt: skip
    assert (result["samples"], result["unreadable"]) == (len(labels), 0)
    assert (result["top1"], result["top5"], result["source"]) == (1.0, 1.0, "measured")
    [row] = read_rows(out)  # the row joins a results file, in percent
    assert (row["top1"], row["top5"], row["accuracy_source"]) == (100.0, 100.0, "measured")
    assert (row["scenario"], row["dataset"], row["images"]) == ("accuracy", "data", len(labels))
    [cmp] = compare_rows(read_rows(out))
    assert (cmp["top1"], cmp["top1_source"]) == (100.0, "measured")
    assert cmp["top1_detail"] == f"measured on data ({len(labels)} images) with torch fp32"


def test_wrong_channel_order_breaks_the_100_percent(
    labelled_folder: tuple[Path, Path, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check can fail: the same pipeline with BGR channels no longer matches the labels."""
    import cnnbench.data.folders as folders
    import cnnbench.data.images as images

    real = images.preprocess
    monkeypatch.setattr(folders, "preprocess", lambda img, spec: real(img, spec)[::-1].copy())
    root, weights, _ = labelled_folder
    result = _eval("--data", str(root), "--weights", str(weights), "--batch", "8")
    assert result["top1"] < 1.0


def test_bad_data_is_one_line_before_any_model_work(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from PIL import Image

    from cnnbench.cli import cli

    (tmp_path / "empty").mkdir()
    (tmp_path / "d" / "1000").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "d" / "1000" / "a.png")
    for args, match in (
        (["--data", str(tmp_path / "empty")], "no class subfolders"),
        (["--data", str(tmp_path / "d")], "label 1000 of .* outside resnet18's 1000 classes"),
        (["--labels", str(tmp_path / "x.txt")], "--labels needs --data"),
        (["--data", str(tmp_path / "d"), "--max-bad", "lots"], "--max-bad must be"),
    ):
        res = CliRunner().invoke(cli, ["eval", "resnet18", *args])
        assert res.exit_code == 2, res.output
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and re.search(match, lines[0]), res.stderr


@pytest.mark.slow
def test_eval_through_onnxruntime_flat_layout(
    labelled_folder: tuple[Path, Path, list[int]], tmp_path: Path
) -> None:
    """The same images as a flat ImageNet-val folder + labels file, through ONNX Runtime."""
    root, weights, labels = labelled_folder
    flat = tmp_path / "val"
    flat.mkdir()
    lines = []
    for img in sorted(root.rglob("*.png")):
        (flat / img.name).write_bytes(img.read_bytes())
        lines.append(f"{img.name} {int(img.parent.name)}")
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
    result = _eval(
        "--data", str(flat), "--labels", str(tmp_path / "val.txt"), "--weights", str(weights),
        "--engine", "ort", "--batch", "4", "--artifacts", str(tmp_path / "artifacts"),
    )  # fmt: skip
    assert (result["engine"], result["samples"], result["top1"]) == (
        "onnxruntime",
        len(labels),
        1.0,
    )
