"""The building blocks the two Inception networks share: Conv-BN-ReLU with the paper's valid
("V") padding, parallel branches, the stem of Figure 3, Reduction-A (Figure 7), the branch order
of either layout, and the networks' weight init.

Figure numbers refer to "Inception-v4, Inception-ResNet and the Impact of Residual Connections
on Learning" (arXiv:1602.07261); the networks are registered in :mod:`cnnbench.models.inception`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cnnbench.models.googlenet import BasicConv2d
from cnnbench.models.init import he_init

__all__ = ["Branches", "Stem"]


def conv_bn(
    cin: int, cout: int, k: int | tuple[int, int], stride: int = 1, v: bool = False
) -> nn.Module:
    """Conv-BN-ReLU; ``v`` marks the paper's valid-padded ("V") convolutions."""
    kh, kw = (k, k) if isinstance(k, int) else k
    pad = (0, 0) if v else (kh // 2, kw // 2)
    return BasicConv2d(cin, cout, kernel_size=(kh, kw), stride=stride, padding=pad)


def avg_pool() -> nn.Module:
    # TF "SAME" average pooling divides by the number of real (unpadded) inputs.
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


def max_pool() -> nn.Module:
    return nn.MaxPool2d(3, stride=2)


class Branches(nn.Module):
    """Parallel branches whose outputs are concatenated along channels ("Filter concat")."""

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


def seq(*mods: nn.Module) -> nn.Sequential:
    return nn.Sequential(*mods)


def kernel_pair(n: int, released: bool) -> tuple[tuple[int, int], tuple[int, int]]:
    """The two factorized kernels of an n x n convolution, in the order the layout runs them:
    the released network (TF-slim, timm) runs (1, n) then (n, 1); the paper's figures as we
    read them, (n, 1) then (1, n)."""
    return ((1, n), (n, 1)) if released else ((n, 1), (1, n))


class Stem(nn.Module):
    """Figure 3: 299x299x3 -> 35x35x384 (Inception-v4; Inception-ResNet-v2 with ``paper=True``).

    ``released``: the factorized 7x7 as the released network runs it (see :func:`kernel_pair`).
    """

    def __init__(self, released: bool = False) -> None:
        super().__init__()
        k1, k2 = kernel_pair(7, released)
        self.conv = seq(
            conv_bn(3, 32, 3, 2, v=True), conv_bn(32, 32, 3, v=True), conv_bn(32, 64, 3)
        )
        self.mixed_a = Branches(max_pool(), conv_bn(64, 96, 3, 2, v=True))
        self.mixed_b = Branches(
            seq(conv_bn(160, 64, 1), conv_bn(64, 96, 3, v=True)),
            seq(
                conv_bn(160, 64, 1),
                conv_bn(64, 64, k1),
                conv_bn(64, 64, k2),
                conv_bn(64, 96, 3, v=True),
            ),
        )
        self.mixed_c = Branches(conv_bn(192, 192, 3, 2, v=True), max_pool())

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)  # N x 64 x 147 x 147
        x = self.mixed_a(x)  # N x 160 x 73 x 73
        x = self.mixed_b(x)  # N x 192 x 71 x 71
        return self.mixed_c(x)  # N x 384 x 35 x 35


def ordered(pool: nn.Module, *convs: nn.Module, pool_last: bool) -> Branches:
    """The pooling branch first (the paper's figures, left to right) or last (the released
    network's concatenation order, which its weights' downstream channels follow)."""
    return Branches(*convs, pool) if pool_last else Branches(pool, *convs)


def reduction_a(
    cin: int,
    k: int,
    l: int,  # noqa: E741 (paper's names)
    m: int,
    n: int,
    pool_last: bool = False,
) -> Branches:
    """Figure 7: 35x35 -> 17x17, ``cin + n + m`` channels out."""
    return ordered(
        max_pool(),
        conv_bn(cin, n, 3, 2, v=True),
        seq(conv_bn(cin, k, 1), conv_bn(k, l, 3), conv_bn(l, m, 3, 2, v=True)),
        pool_last=pool_last,
    )


def init_weights(model: nn.Module) -> None:
    # He init keeps activations finite through ~150 conv layers at random initialisation.
    he_init(model, conv_mode="fan_in")
