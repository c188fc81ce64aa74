"""Inception-ResNet-v2: the paper's residual blocks (Figs. 16-19 with Fig. 20's scaling) in the
layout of the authors' released model, or in the paper's Figure 15 schema (see
:mod:`cnnbench.models.inception`, where it is registered).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnbench.models.inception_blocks import (
    Branches,
    Stem,
    avg_pool,
    conv_bn,
    init_weights,
    max_pool,
    ordered,
    reduction_a,
    seq,
)
from cnnbench.models.inception_timm import timm_state_dict

__all__ = ["InceptionResNetV2", "Residual"]


class Residual(nn.Module):
    """``x + scale * up(branches(x))``, then ReLU: Figs. 16, 17, 19 with Fig. 20's scaling.

    ``up`` is the un-activated 1x1 conv that restores the input depth (it has a bias, no BN).
    """

    def __init__(
        self, branches: Branches, mid: int, cout: int, scale: float, relu: bool = True
    ) -> None:
        super().__init__()
        self.branches = branches
        self.up = nn.Conv2d(mid, cout, kernel_size=1)
        self.scale = scale
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(x + self.scale * self.up(self.branches(x)))


def block_a(c: int, scale: float) -> Residual:
    """Figure 16 (Inception-ResNet-A), 35x35."""
    return Residual(
        Branches(
            conv_bn(c, 32, 1),
            seq(conv_bn(c, 32, 1), conv_bn(32, 32, 3)),
            seq(conv_bn(c, 32, 1), conv_bn(32, 48, 3), conv_bn(48, 64, 3)),
        ),
        128,
        c,
        scale,
    )


def block_b(c: int, scale: float) -> Residual:
    """Figure 17 (Inception-ResNet-B), 17x17."""
    return Residual(
        Branches(
            conv_bn(c, 192, 1),
            seq(conv_bn(c, 128, 1), conv_bn(128, 160, (1, 7)), conv_bn(160, 192, (7, 1))),
        ),
        384,
        c,
        scale,
    )


def block_c(c: int, scale: float, relu: bool = True) -> Residual:
    """Figure 19 (Inception-ResNet-C), 8x8."""
    return Residual(
        Branches(
            conv_bn(c, 192, 1),
            seq(conv_bn(c, 192, 1), conv_bn(192, 224, (1, 3)), conv_bn(224, 256, (3, 1))),
        ),
        448,
        c,
        scale,
        relu,
    )


def reduction_b_res(cin: int, pool_last: bool = False) -> Branches:
    """Figure 18: 17x17 -> 8x8, ``cin + 992`` channels out."""
    return ordered(
        max_pool(),
        seq(conv_bn(cin, 256, 1), conv_bn(256, 384, 3, 2, v=True)),
        seq(conv_bn(cin, 256, 1), conv_bn(256, 288, 3, 2, v=True)),
        seq(conv_bn(cin, 256, 1), conv_bn(256, 288, 3), conv_bn(288, 320, 3, 2, v=True)),
        pool_last=pool_last,
    )


def released_stem() -> nn.Sequential:
    """The released model's stem: Inception-v3 style convs, then a 320-wide mixed block."""
    return seq(
        conv_bn(3, 32, 3, 2, v=True),  # N x 32 x 149 x 149
        conv_bn(32, 32, 3, v=True),  # N x 32 x 147 x 147
        conv_bn(32, 64, 3),  # N x 64 x 147 x 147
        max_pool(),  # N x 64 x 73 x 73
        conv_bn(64, 80, 1),  # N x 80 x 73 x 73
        conv_bn(80, 192, 3, v=True),  # N x 192 x 71 x 71
        max_pool(),  # N x 192 x 35 x 35
        Branches(
            conv_bn(192, 96, 1),
            seq(conv_bn(192, 48, 1), conv_bn(48, 64, 5)),
            seq(conv_bn(192, 64, 1), conv_bn(64, 96, 3), conv_bn(96, 96, 3)),
            seq(avg_pool(), conv_bn(192, 64, 1)),
        ),  # N x 320 x 35 x 35
    )


class InceptionResNetV2(nn.Module):
    """Inception-ResNet-v2.

    Args:
        num_classes: width of the classifier.
        paper: build the paper's Figure 15 schema instead of the released layout (see module doc).
        scales: residual scaling of the A, B and C blocks (the paper: "between 0.1 and 0.3").
        dropout: dropout before the fc (keep 0.8).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        paper: bool = False,
        scales: tuple[float, float, float] = (0.17, 0.10, 0.20),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.paper = paper
        c = 384 if paper else 320
        na, nb, nc = (5, 10, 5) if paper else (10, 20, 10)
        cb, cc = c + 768, c + 768 + 992  # widths after Reduction-A and Reduction-B
        self.features = seq(
            Stem() if paper else released_stem(),
            *(block_a(c, scales[0]) for _ in range(na)),
            # the released network concatenates the pooling branch last (its weights follow)
            reduction_a(c, 256, 256, 384, 384, pool_last=not paper),
            *(block_b(cb, scales[1]) for _ in range(nb)),
            reduction_b_res(cb, pool_last=not paper),
            *(block_c(cc, scales[2]) for _ in range(nc - 1)),
            # The released model's last block is linear (no scaling, no ReLU) before the 1x1 conv.
            block_c(cc, scales[2], relu=True) if paper else block_c(cc, 1.0, relu=False),
        )
        self.conv = nn.Identity() if paper else conv_bn(cc, 1536, 1)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(cc if paper else 1536, num_classes)
        init_weights(self)

    def adapt_state_dict(self, state: dict) -> dict | None:
        """timm's ``inception_resnet_v2`` weights, onto the released layout (None: not timm's)."""
        return timm_state_dict(self, state, "conv2d_1a.conv.weight", "classif")

    def forward(self, x: Tensor) -> Tensor:
        # Released layout (paper=True: 384 / 1152 / 2144 wide, no final conv):
        # stem N x 320 x 35 x 35 -> A N x 320 x 35 x 35 -> red-A N x 1088 x 17 x 17
        # -> B N x 1088 x 17 x 17 -> red-B N x 2080 x 8 x 8 -> C N x 2080 x 8 x 8
        x = self.features(x)  # N x 2080 x 8 x 8
        x = self.conv(x)  # N x 1536 x 8 x 8
        x = torch.flatten(self.avgpool(x), 1)  # N x 1536
        return self.fc(self.dropout(x))  # N x num_classes
