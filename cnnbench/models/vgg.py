"""VGG configurations A, A-LRN, B, C, D, E (Simonyan & Zisserman 2014) and their BN variants.

Module names and shapes follow torchvision's ``VGG`` (``features`` / ``avgpool`` /
``classifier.0,3,6``), so torchvision's published state dicts load into ``vgg11``, ``vgg13``,
``vgg16``, ``vgg19`` and the ``*_bn`` models unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnnbench.models.alexnet import paper_lrn
from cnnbench.models.init import he_init
from cnnbench.models.registry import register_model
from cnnbench.models.spec import TV_TOP1_SOURCE, imagenet_spec

VGG_PAPER = (
    "Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image "
    "Recognition, ICLR 2015 (arXiv:1409.1556)"
)
# The paper's Table 3: single-scale dense evaluation, training scale S = 256, test scale Q = 256.
VGG_TABLE3 = (
    "Simonyan & Zisserman 2015, Table 3 (single test scale, dense evaluation, S=256, Q=256): "
    "top-1 ILSVRC-2012 val error"
)

# An int is a 3x3 conv (pad 1) with that many filters, "M" a 2x2/2 max pool, "LRN" a local
# response normalisation, and (n, k) a kxk conv with n filters (C's 1x1 convolutions).
LayerCfg = int | str | tuple[int, int]
# fmt: off
cfgs: dict[str, list[LayerCfg]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M",
          512, 512, (512, 1), "M", 512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
          512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
# fmt: on


def make_layers(cfg: list[LayerCfg], batch_norm: bool = False) -> nn.Sequential:
    """Build ``features`` from a configuration table (torchvision's indexing for A, B, D, E)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif v == "LRN":
            layers.append(paper_lrn())
        else:
            out_channels, k = v if isinstance(v, tuple) else (int(v), 3)
            conv = nn.Conv2d(in_channels, out_channels, kernel_size=k, padding=k // 2)
            if batch_norm:
                layers += [conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
            else:
                layers += [conv, nn.ReLU(inplace=True)]
            in_channels = out_channels
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG: a conv ``features`` stack, a 7x7 adaptive average pool and three FC layers."""

    def __init__(self, features: nn.Module, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = features
        # Identity at 224x224 (the map is already 7x7); lets other input sizes reach fc6.
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x 3 x 224 x 224
        x = self.features(x)
        # N x 512 x 7 x 7 (blocks: 64 @ 112, 128 @ 56, 256 @ 28, 512 @ 14, 512 @ 7)
        x = self.avgpool(x)
        # N x 512 x 7 x 7
        x = torch.flatten(x, 1)
        # N x 25088
        x = self.classifier(x)
        # N x num_classes
        return x


def _init_weights(model: nn.Module) -> None:
    # torchvision's VGG initialisation, run under get_model's seed.
    he_init(model, conv_mode="fan_out")


def _vgg(cfg: str, batch_norm: bool, num_classes: int, **kwargs: Any) -> VGG:
    return VGG(make_layers(cfgs[cfg], batch_norm=batch_norm), num_classes=num_classes, **kwargs)


def _tv_spec(name: str, top1: float) -> Any:
    return imagenet_spec(name, "VGG", top1=top1, top1_source=TV_TOP1_SOURCE,
                         paper=VGG_PAPER, torchvision=name)  # fmt: skip


@register_model(_tv_spec("vgg11", 69.020))
def vgg11(*, num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG configuration A (11 weight layers), 132,863,336 parameters."""
    return _vgg("A", False, num_classes, **kwargs)


@register_model(
    imagenet_spec(
        "vgg11_lrn",
        "VGG",
        top1=70.3,
        top1_source=f"{VGG_TABLE3} 29.7% for A-LRN",
        paper=VGG_PAPER,
        notes="configuration A-LRN: A with one LRN after the first conv + ReLU",
    )
)
def vgg11_lrn(*, num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG configuration A-LRN: A with LRN after the first conv layer (no torchvision twin)."""
    return _vgg("A-LRN", False, num_classes, **kwargs)


@register_model(_tv_spec("vgg13", 69.928))
def vgg13(*, num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG configuration B (13 weight layers), 133,047,848 parameters."""
    return _vgg("B", False, num_classes, **kwargs)


@register_model(
    imagenet_spec(
        "vgg16_c",
        "VGG",
        top1=71.9,
        top1_source=f"{VGG_TABLE3} 28.1% for C",
        paper=VGG_PAPER,
        notes="configuration C: D with the last conv of blocks 3, 4, 5 replaced by 1x1 convs",
    )
)
def vgg16_c(*, num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG configuration C: 16 weight layers, three of them 1x1 convs (no torchvision twin)."""
    return _vgg("C", False, num_classes, **kwargs)


@register_model(_tv_spec("vgg16", 71.592))
def vgg16(*, num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG configuration D (16 weight layers), 138,357,544 parameters."""
    return _vgg("D", False, num_classes, **kwargs)


@register_model(_tv_spec("vgg19", 72.376))
def vgg19(*, num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG configuration E (19 weight layers), 143,667,240 parameters."""
    return _vgg("E", False, num_classes, **kwargs)


@register_model(_tv_spec("vgg11_bn", 70.370))
def vgg11_bn(*, num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG A with batch normalisation after every conv (torchvision's ``vgg11_bn``)."""
    return _vgg("A", True, num_classes, **kwargs)


@register_model(_tv_spec("vgg13_bn", 71.586))
def vgg13_bn(*, num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG B with batch normalisation after every conv (torchvision's ``vgg13_bn``)."""
    return _vgg("B", True, num_classes, **kwargs)


@register_model(_tv_spec("vgg16_bn", 73.360))
def vgg16_bn(*, num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG D with batch normalisation after every conv (torchvision's ``vgg16_bn``)."""
    return _vgg("D", True, num_classes, **kwargs)


@register_model(_tv_spec("vgg19_bn", 74.218))
def vgg19_bn(*, num_classes: int = 1000, **kwargs: Any) -> VGG:
    """VGG E with batch normalisation after every conv (torchvision's ``vgg19_bn``)."""
    return _vgg("E", True, num_classes, **kwargs)
