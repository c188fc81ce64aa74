"""GoogLeNet (Szegedy et al. 2014) in torchvision's layout, so its published state dict loads.

Differences from the paper, all inherited from torchvision so that its weights fit:

* every convolution is followed by BatchNorm (eps 0.001) — the paper predates BN;
* branch 3 of each Inception module uses a 3x3 kernel where the paper (Table 1, "5x5") has 5x5.
  ``googlenet(paper_5x5=True)`` restores the paper's 5x5 (then torchvision weights no longer fit);
* the auxiliary classifiers ``aux1``/``aux2`` exist as modules (their keys are in the published
  state dict) but run only in training mode; in eval mode ``forward`` returns the logits alone.

torchvision's published weights expect inputs normalised with mean = std = 0.5 (torchvision sets
``transform_input=True`` for them, which maps ImageNet-normalised inputs to that); our spec asks
for that normalisation directly, so the network itself needs no input transform.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnbench.models.init import he_init
from cnnbench.models.registry import register_model
from cnnbench.models.spec import TV_TOP1_SOURCE, imagenet_spec

__all__ = ["BasicConv2d", "GoogLeNet", "GoogLeNetOutputs", "Inception", "InceptionAux", "googlenet"]

PAPER = "Szegedy et al. 2014, Going Deeper with Convolutions (CVPR 2015)"


class GoogLeNetOutputs(NamedTuple):
    """Training-mode outputs: main logits and the two auxiliary classifiers' logits."""

    logits: Tensor
    aux_logits2: Tensor | None
    aux_logits1: Tensor | None


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm(eps=0.001) -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """The Inception module: 1x1, 1x1->3x3, 1x1->"5x5", and 3x3 max pool->1x1, concatenated.

    Args:
        in_channels: input depth.
        ch1x1: filters of the 1x1 branch.
        ch3x3red: 1x1 reduction before the 3x3.
        ch3x3: filters of the 3x3.
        ch5x5red: 1x1 reduction before the "5x5".
        ch5x5: filters of the "5x5".
        pool_proj: 1x1 projection after the 3x3 max pool.
        kernel5: kernel of the "5x5" branch: 3 as torchvision (default), 5 as the paper.

    The output depth is ``ch1x1 + ch3x3 + ch5x5 + pool_proj``.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        kernel5: int = 3,
    ) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_channels, ch3x3red, kernel_size=1),
            BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            BasicConv2d(in_channels, ch5x5red, kernel_size=1),
            BasicConv2d(ch5x5red, ch5x5, kernel_size=kernel5, padding=kernel5 // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        branches = (self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x))
        return torch.cat(branches, 1)


class InceptionAux(nn.Module):
    """Auxiliary classifier: 4x4 average pool, 1x1 conv 128, fc 1024, dropout 0.7, fc."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(x, (4, 4))  # N x C x 4 x 4 (the paper's 5x5/3 pool on 14x14)
        x = self.conv(x)  # N x 128 x 4 x 4
        x = torch.flatten(x, 1)  # N x 2048
        x = F.relu(self.fc1(x), inplace=True)  # N x 1024
        return self.fc2(self.dropout(x))  # N x num_classes


class GoogLeNet(nn.Module):
    """GoogLeNet with torchvision's module names.

    Args:
        num_classes: width of the classifiers.
        aux_logits: build the two auxiliary classifiers (their outputs are used in training only).
        paper_5x5: use the paper's 5x5 kernels in branch 3 instead of torchvision's 3x3.
        dropout: dropout before the final fc (torchvision 0.2; the paper 0.4).
        dropout_aux: dropout inside the auxiliary classifiers.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        aux_logits: bool = True,
        paper_5x5: bool = False,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
    ) -> None:
        super().__init__()
        k5 = 5 if paper_5x5 else 3
        self.aux_logits = aux_logits
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32, k5)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64, k5)
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64, k5)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64, k5)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64, k5)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64, k5)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128, k5)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128, k5)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128, k5)
        self.aux1: InceptionAux | None = None
        self.aux2: InceptionAux | None = None
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout=dropout_aux)
            self.aux2 = InceptionAux(528, num_classes, dropout=dropout_aux)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # He init for convs rather than torchvision's trunc_normal(std=0.01): with BN at its
        # initial running statistics the latter shrinks eval-mode logits to ~1e-12, which
        # underflows FP16 and makes parity checks meaningless for a randomly initialised net.
        he_init(self, conv_mode="fan_in")

    def forward(self, x: Tensor) -> Tensor | GoogLeNetOutputs:
        """Logits in eval mode; ``GoogLeNetOutputs(logits, aux2, aux1)`` in training mode."""
        # `self.training` is a Python bool, so an eval-mode export traces the main path only.
        with_aux = self.training and self.aux_logits
        x = self.conv1(x)  # N x 64 x 112 x 112
        x = self.maxpool1(x)  # N x 64 x 56 x 56
        x = self.conv2(x)  # N x 64 x 56 x 56
        x = self.conv3(x)  # N x 192 x 56 x 56
        x = self.maxpool2(x)  # N x 192 x 28 x 28
        x = self.inception3a(x)  # N x 256 x 28 x 28
        x = self.inception3b(x)  # N x 480 x 28 x 28
        x = self.maxpool3(x)  # N x 480 x 14 x 14
        x = self.inception4a(x)  # N x 512 x 14 x 14
        aux1 = self.aux1(x) if with_aux and self.aux1 is not None else None
        x = self.inception4b(x)  # N x 512 x 14 x 14
        x = self.inception4c(x)  # N x 512 x 14 x 14
        x = self.inception4d(x)  # N x 528 x 14 x 14
        aux2 = self.aux2(x) if with_aux and self.aux2 is not None else None
        x = self.inception4e(x)  # N x 832 x 14 x 14
        x = self.maxpool4(x)  # N x 832 x 7 x 7
        x = self.inception5a(x)  # N x 832 x 7 x 7
        x = self.inception5b(x)  # N x 1024 x 7 x 7
        x = self.avgpool(x)  # N x 1024 x 1 x 1
        x = torch.flatten(x, 1)  # N x 1024
        x = self.fc(self.dropout(x))  # N x num_classes
        if with_aux:
            return GoogLeNetOutputs(x, aux2, aux1)
        return x


_SPEC = imagenet_spec(
    "googlenet",
    "GoogLeNet",
    top1=69.778,
    top1_source=TV_TOP1_SOURCE,
    paper=PAPER,
    torchvision="googlenet",
    notes="torchvision layout (BN, 3x3 in the '5x5' branch); inputs normalised with mean=std=0.5",
)
_SPEC = dataclasses.replace(
    _SPEC,
    preprocessing=dataclasses.replace(
        _SPEC.preprocessing, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)
    ),
)


@register_model(_SPEC)
def googlenet(
    *, num_classes: int = 1000, aux_logits: bool = True, paper_5x5: bool = False, **kwargs: Any
) -> GoogLeNet:
    """GoogLeNet; 6,624,904 parameters without the auxiliary classifiers (torchvision's count).

    Args:
        num_classes: width of the classifiers.
        aux_logits: keep ``aux1``/``aux2`` (needed for torchvision's published state dict).
        paper_5x5: 5x5 kernels in branch 3 as in the paper (torchvision has 3x3; its weights
            then no longer load).
        **kwargs: ``dropout``, ``dropout_aux``.
    """
    return GoogLeNet(num_classes=num_classes, aux_logits=aux_logits, paper_5x5=paper_5x5, **kwargs)
