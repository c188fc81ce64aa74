"""ResNet-18/34/50/101/152 (He et al. 2015) in torchvision's layout, so its state dicts load.

Module names follow torchvision: ``conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc``; each
stage is a Sequential of ``BasicBlock`` or ``Bottleneck`` whose projection shortcut is
``downsample.0`` (1x1 conv) and ``downsample.1`` (BN). As in torchvision ("ResNet v1.5") the
Bottleneck strides on its 3x3 conv, not on the first 1x1 as the paper's Table 1 implies.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from cnnbench.models.init import he_init
from cnnbench.models.registry import register_model
from cnnbench.models.spec import TV_TOP1_SOURCE, ModelSpec, imagenet_spec

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
]

PAPER = "He et al. 2015, Deep Residual Learning for Image Recognition (CVPR 2016)"


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut: ResNet-18/34."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand (x4), plus shortcut: ResNet-50/101/152."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]


class ResNet(nn.Module):
    """A ResNet: 7x7 stem, max pool, four stages of residual blocks, global average pool, fc.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: number of blocks in each of the four stages.
        num_classes: width of the classifier.
        zero_init_residual: start each block's last BN at zero so blocks begin as identities.
    """

    def __init__(
        self,
        block: Block,
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        self._init_weights(zero_init_residual)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # He et al. init (fan_out) for convs, BN as identity; fc keeps PyTorch's default.
        he_init(self, conv_mode="fan_out", linear_std=None)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        # Shapes for a 224x224 input; C = 64 (BasicBlock) or 256 (Bottleneck) after layer1.
        x = self.relu(self.bn1(self.conv1(x)))  # N x 64 x 112 x 112
        x = self.maxpool(x)  # N x 64 x 56 x 56
        x = self.layer1(x)  # N x C x 56 x 56
        x = self.layer2(x)  # N x 2C x 28 x 28
        x = self.layer3(x)  # N x 4C x 14 x 14
        x = self.layer4(x)  # N x 8C x 7 x 7
        x = self.avgpool(x)  # N x 8C x 1 x 1
        x = torch.flatten(x, 1)  # N x 8C
        return self.fc(x)  # N x num_classes


def _spec(name: str, top1: float) -> ModelSpec:
    return imagenet_spec(
        name, "ResNet", top1=top1, top1_source=TV_TOP1_SOURCE, paper=PAPER, torchvision=name
    )


@register_model(_spec("resnet18", 69.758))
def resnet18(*, num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNet-18: BasicBlock x (2, 2, 2, 2); 11,689,512 parameters."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, **kwargs)


@register_model(_spec("resnet34", 73.314))
def resnet34(*, num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNet-34: BasicBlock x (3, 4, 6, 3); 21,797,672 parameters."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes=num_classes, **kwargs)


@register_model(_spec("resnet50", 76.130))
def resnet50(*, num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNet-50: Bottleneck x (3, 4, 6, 3); 25,557,032 parameters."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, **kwargs)


@register_model(_spec("resnet101", 77.374))
def resnet101(*, num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNet-101: Bottleneck x (3, 4, 23, 3); 44,549,160 parameters."""
    return ResNet(Bottleneck, (3, 4, 23, 3), num_classes=num_classes, **kwargs)


@register_model(_spec("resnet152", 78.312))
def resnet152(*, num_classes: int = 1000, **kwargs: Any) -> ResNet:
    """ResNet-152: Bottleneck x (3, 8, 36, 3); 60,192,808 parameters."""
    return ResNet(Bottleneck, (3, 8, 36, 3), num_classes=num_classes, **kwargs)
