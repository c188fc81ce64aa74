"""Inception-v4 and Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke & Alemi 2016), 299x299 input.

Figure numbers refer to "Inception-v4, Inception-ResNet and the Impact of Residual Connections
on Learning" (arXiv:1602.07261). Every convolution is followed by BatchNorm (eps 0.001) and ReLU,
as in the authors' released implementation; "V" convolutions (the paper's valid padding) have
no padding, all others keep the grid size.

Inception-v4 is the paper's Figure 9: stem (Fig. 3), 4 x Inception-A (Fig. 4), Reduction-A
(Fig. 7; k, l, m, n = 192, 224, 256, 384), 7 x Inception-B (Fig. 5), Reduction-B (Fig. 8),
3 x Inception-C (Fig. 6), average pool, dropout (keep 0.8), fc.

Inception-ResNet-v2 defaults to the layout of the authors' released model, which is what the
published 55.8M parameters and 13.2 G multiply-adds describe; it uses the paper's residual
blocks (Figs. 16-19) and Reduction-A (k, l, m, n = 256, 256, 384, 384), but an Inception-v3 style
stem ending in a 320-wide mixed block, 10/20/10 residual blocks, widths 320/1088/2080 that
follow from that stem, and a final 1x1 conv to 1536. ``paper=True`` builds the paper's Figure 15
schema instead: Fig. 3 stem (384 wide), 5/10/5 blocks, widths 384/1152/2144 (the figures'
1154 and 2048 cannot add to their residual inputs; the text's arithmetic gives 1152 and 2144).

The networks are in :mod:`cnnbench.models.inception_v4` and
:mod:`cnnbench.models.inception_resnet_v2`, their shared blocks in
:mod:`cnnbench.models.inception_blocks`, the mapping of timm's weights in
:mod:`cnnbench.models.inception_timm`; this module registers both, Inception-v4 first.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cnnbench.models.inception_resnet_v2 import InceptionResNetV2
from cnnbench.models.inception_v4 import InceptionV4
from cnnbench.models.registry import register_model
from cnnbench.models.spec import ModelSpec, imagenet_spec

PAPER = (
    "Szegedy, Ioffe, Vanhoucke & Alemi 2016, Inception-v4, Inception-ResNet and the Impact of "
    "Residual Connections on Learning (AAAI 2017)"
)


def _spec(name: str, top1: float) -> ModelSpec:
    spec = imagenet_spec(
        name,
        "Inception",
        size=299,
        resize=342,
        top1=top1,
        top1_source="Szegedy et al. 2016, Table 2 (single 299 crop)",
        paper=PAPER,
        notes="inputs scaled to [-1, 1] (mean = std = 0.5) as the authors' TF-slim preprocessing",
    )
    half = (0.5, 0.5, 0.5)
    return dataclasses.replace(
        spec, preprocessing=dataclasses.replace(spec.preprocessing, mean=half, std=half)
    )


@register_model(_spec("inception_v4", 80.0))
def inception_v4(
    *, num_classes: int = 1000, layout: str = "released", **kwargs: Any
) -> InceptionV4:
    """Inception-v4: 42,679,816 parameters, about 12.3 G multiply-adds at 299x299.

    Args:
        layout: ``"released"`` (the authors' TF-slim network, timm's weights) or ``"paper"``.
    """
    return InceptionV4(num_classes=num_classes, layout=layout, **kwargs)


@register_model(_spec("inception_resnet_v2", 80.1))
def inception_resnet_v2(
    *, num_classes: int = 1000, paper: bool = False, **kwargs: Any
) -> InceptionResNetV2:
    """Inception-ResNet-v2: about 55.8M parameters and 13.2 G multiply-adds (released layout).

    Args:
        num_classes: width of the classifier.
        paper: the paper's Figure 15 schema (5/10/5 blocks, Fig. 3 stem) instead.
        **kwargs: ``scales``, ``dropout``.
    """
    return InceptionResNetV2(num_classes=num_classes, paper=paper, **kwargs)
