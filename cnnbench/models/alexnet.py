"""AlexNet: the original two-GPU network (Krizhevsky, Sutskever & Hinton 2012) and torchvision's
single-tower variant (Krizhevsky 2014, "One weird trick for parallelizing CNNs").

The original's two GPUs are expressed as ``groups=2`` on conv2, conv4 and conv5 (the layers whose
kernels see only the maps on their own GPU); conv3 and the FC layers see both halves.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from cnnbench.models.init import he_init
from cnnbench.models.registry import register_model
from cnnbench.models.spec import TV_TOP1_SOURCE, imagenet_spec

ALEXNET_PAPER = (
    "Krizhevsky, Sutskever & Hinton, ImageNet Classification with Deep Convolutional Neural "
    "Networks, NIPS 2012"
)
ONE_WEIRD_TRICK = (
    "Krizhevsky, One weird trick for parallelizing convolutional neural networks, "
    "arXiv:1404.5997, 2014"
)


def paper_lrn() -> nn.LocalResponseNorm:
    """LRN with Krizhevsky et al.'s parameters (n=5, alpha=1e-4, beta=0.75, k=2).

    The paper divides by (k + alpha * sum a^2)^beta; PyTorch (like Caffe and ONNX) divides alpha
    by the window size, so alpha is passed as 5 * 1e-4 to compute the paper's formula exactly.
    """
    return nn.LocalResponseNorm(size=5, alpha=5 * 1e-4, beta=0.75, k=2.0)


class AlexNet(nn.Module):
    """The original AlexNet, 60,965,224 parameters at 227x227.

    LRN (n=5, alpha=1e-4, beta=0.75, k=2, the paper's formula) follows the ReLU of conv1 and
    conv2 and precedes their overlapping 3x3/2 max pooling; dropout 0.5 acts on the outputs of
    fc6 and fc7. The paper's "224x224" input is the well-known erratum for 227x227 (with 224, an
    11x11/4 conv without padding does not give 55x55).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, 96, kernel_size=11, stride=4),
                relu1=nn.ReLU(inplace=True),
                norm1=paper_lrn(),
                pool1=nn.MaxPool2d(kernel_size=3, stride=2),
                conv2=nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2),
                relu2=nn.ReLU(inplace=True),
                norm2=paper_lrn(),
                pool2=nn.MaxPool2d(kernel_size=3, stride=2),
                conv3=nn.Conv2d(256, 384, kernel_size=3, padding=1),
                relu3=nn.ReLU(inplace=True),
                conv4=nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2),
                relu4=nn.ReLU(inplace=True),
                conv5=nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2),
                relu5=nn.ReLU(inplace=True),
                pool5=nn.MaxPool2d(kernel_size=3, stride=2),
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                fc6=nn.Linear(256 * 6 * 6, 4096),
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(p=dropout),
                fc7=nn.Linear(4096, 4096),
                relu7=nn.ReLU(inplace=True),
                drop7=nn.Dropout(p=dropout),
                fc8=nn.Linear(4096, num_classes),
            )
        )
        self._init_paper()

    def _init_paper(self) -> None:
        # Section 5: weights ~ N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden FC
        # layers (to give ReLUs positive inputs early on), 0 in conv1, conv3 and fc8.
        ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
        for name, m in [*self.features.named_children(), *self.classifier.named_children()]:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 1.0 if name in ones else 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x 3 x 227 x 227
        x = self.features(x)
        # conv1 N x 96 x 55 x 55 -> pool1 27 -> conv2 N x 256 x 27 x 27 -> pool2 13
        # -> conv3/4 N x 384 x 13 x 13 -> conv5 N x 256 x 13 x 13 -> pool5 N x 256 x 6 x 6
        x = torch.flatten(x, 1)
        # N x 9216
        x = self.classifier(x)
        # N x num_classes
        return x


class AlexNetTV(nn.Module):
    """torchvision's ``alexnet`` layout (64-192-384-256-256 filters, no LRN, no groups)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )
        he_init(self, conv_mode="fan_out")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x 3 x 224 x 224
        x = self.features(x)
        # N x 256 x 6 x 6
        x = self.avgpool(x)
        # N x 256 x 6 x 6
        x = torch.flatten(x, 1)
        # N x 9216
        x = self.classifier(x)
        # N x num_classes
        return x


@register_model(
    imagenet_spec(
        "alexnet",
        "AlexNet",
        size=227,
        resize=256,
        top1=59.3,
        top1_source=(
            "Krizhevsky et al. 2012, Table 2: 1 CNN, 40.7% top-1 error on ILSVRC-2012 val "
            "(average over 10 patches: 4 corners + centre and their reflections)"
        ),
        paper=ALEXNET_PAPER,
        notes="two-GPU layout as groups=2 on conv2/4/5; 227x227 input (the paper's 224 is an erratum)",
    )
)
def alexnet(*, num_classes: int = 1000, **kwargs: Any) -> AlexNet:
    """The original two-group AlexNet (no torchvision twin)."""
    return AlexNet(num_classes=num_classes, **kwargs)


@register_model(
    imagenet_spec(
        "alexnet_tv",
        "AlexNet",
        top1=56.522,
        top1_source=TV_TOP1_SOURCE,
        paper=ONE_WEIRD_TRICK,
        torchvision="alexnet",
    )
)
def alexnet_tv(*, num_classes: int = 1000, **kwargs: Any) -> AlexNetTV:
    """torchvision's single-tower AlexNet, 61,100,840 parameters."""
    return AlexNetTV(num_classes=num_classes, **kwargs)
