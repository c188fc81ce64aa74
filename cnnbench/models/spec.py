"""What a model needs around it: input shape, classes, preprocessing and its published accuracy."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Image preprocessing, applied in this order: resize shorter side, centre crop, scale, normalise.

    ``resize`` is the shorter-side length before the crop; ``crop`` the square crop fed to the net.
    ``grayscale`` converts to one channel first (LeNet-5).
    """

    resize: int
    crop: int
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"
    grayscale: bool = False

    def __post_init__(self) -> None:
        if self.crop <= 0 or self.resize < self.crop:
            raise ValueError(f"resize ({self.resize}) must be >= crop ({self.crop}) > 0")
        if len(self.mean) != len(self.std):
            raise ValueError("mean and std must have the same length")


@dataclass(frozen=True)
class ModelSpec:
    """Everything about a zoo entry that is not its weights.

    Attributes:
        name: registry name, e.g. ``resnet50``.
        family: architecture family used for grouping and plot colours, e.g. ``ResNet``.
        input_shape: (C, H, W) of one sample.
        num_classes: width of the logits.
        preprocessing: how an image becomes an input tensor.
        top1: published top-1 accuracy in percent, or None.
        top1_source: citation for ``top1``.
        paper: the architecture's reference.
        imagenet: True for ImageNet-1k classifiers (the default benchmark set).
        torchvision: the torchvision builder whose state dicts load into ours, if any.
    """

    name: str
    family: str
    input_shape: tuple[int, int, int]
    num_classes: int
    preprocessing: Preprocessing
    top1: float | None = None
    top1_source: str | None = None
    paper: str = ""
    imagenet: bool = True
    torchvision: str | None = None
    notes: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if len(self.input_shape) != 3 or min(self.input_shape) <= 0:
            raise ValueError(
                f"input_shape must be (C, H, W) with positive sizes, got {self.input_shape}"
            )
        if self.num_classes <= 0:
            raise ValueError("num_classes must be positive")
        if self.preprocessing.crop != self.input_shape[1]:
            raise ValueError("preprocessing.crop must equal the input height")

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-safe values (what a cell spec carries to child processes)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        """The spec of :meth:`to_dict`."""
        d = dict(d)
        pre = dict(d.pop("preprocessing"))
        pre["mean"], pre["std"] = tuple(pre["mean"]), tuple(pre["std"])
        d["input_shape"] = tuple(d["input_shape"])
        return cls(**d, preprocessing=Preprocessing(**pre))


def imagenet_spec(
    name: str,
    family: str,
    *,
    size: int = 224,
    resize: int | None = None,
    top1: float | None = None,
    top1_source: str | None = None,
    paper: str = "",
    torchvision: str | None = None,
    notes: str = "",
) -> ModelSpec:
    """A spec for an ImageNet-1k classifier with the standard resize/crop and normalisation."""
    return ModelSpec(
        name=name,
        family=family,
        input_shape=(3, size, size),
        num_classes=1000,
        preprocessing=Preprocessing(resize=resize or round(size * 256 / 224), crop=size),
        top1=top1,
        top1_source=top1_source,
        paper=paper,
        torchvision=torchvision,
        notes=notes,
    )


TV_TOP1_SOURCE = "torchvision IMAGENET1K_V1 weights, single 224 centre crop"
