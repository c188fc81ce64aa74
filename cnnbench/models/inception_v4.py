"""Inception-v4 (the paper's Figure 9): stem (Fig. 3), 4 x Inception-A (Fig. 4), Reduction-A
(Fig. 7; k, l, m, n = 192, 224, 256, 384), 7 x Inception-B (Fig. 5), Reduction-B (Fig. 8),
3 x Inception-C (Fig. 6), average pool, dropout (keep 0.8), fc. Registered in
:mod:`cnnbench.models.inception`.
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
    kernel_pair,
    max_pool,
    ordered,
    reduction_a,
    seq,
)
from cnnbench.models.inception_timm import timm_state_dict

__all__ = ["InceptionV4"]


def inception_a(cin: int = 384, released: bool = False) -> Branches:
    """Figure 4: 35x35, 384 channels out."""
    return ordered(
        seq(avg_pool(), conv_bn(cin, 96, 1)),
        conv_bn(cin, 96, 1),
        seq(conv_bn(cin, 64, 1), conv_bn(64, 96, 3)),
        seq(conv_bn(cin, 64, 1), conv_bn(64, 96, 3), conv_bn(96, 96, 3)),
        pool_last=released,
    )


def inception_b(cin: int = 1024, released: bool = False) -> Branches:
    """Figure 5: 17x17, 1024 channels out. Both layouts run the short branch (1x7 then 7x1);
    the long one starts with 7x1 in the released network, 1x7 in the paper's."""
    a, b = kernel_pair(7, not released)
    return ordered(
        seq(avg_pool(), conv_bn(cin, 128, 1)),
        conv_bn(cin, 384, 1),
        seq(conv_bn(cin, 192, 1), conv_bn(192, 224, (1, 7)), conv_bn(224, 256, (7, 1))),
        seq(
            conv_bn(cin, 192, 1),
            conv_bn(192, 192, a),
            conv_bn(192, 224, b),
            conv_bn(224, 224, a),
            conv_bn(224, 256, b),
        ),
        pool_last=released,
    )


def reduction_b_v4(cin: int = 1024, released: bool = False) -> Branches:
    """Figure 8: 17x17 -> 8x8, 1536 channels out."""
    return ordered(
        max_pool(),
        seq(conv_bn(cin, 192, 1), conv_bn(192, 192, 3, 2, v=True)),
        seq(
            conv_bn(cin, 256, 1),
            conv_bn(256, 256, (1, 7)),
            conv_bn(256, 320, (7, 1)),
            conv_bn(320, 320, 3, 2, v=True),
        ),
        pool_last=released,
    )


def inception_c(cin: int = 1536, released: bool = False) -> Branches:
    """Figure 6: 8x8, 1536 channels out (the last two branches split into 1x3 and 3x1). The
    long branch runs 3x1 then 1x3 in the released network, and its split 1x3 first."""
    a, b = kernel_pair(3, not released)
    s1, s2 = kernel_pair(3, released)
    return ordered(
        seq(avg_pool(), conv_bn(cin, 256, 1)),
        conv_bn(cin, 256, 1),
        seq(conv_bn(cin, 384, 1), Branches(conv_bn(384, 256, (1, 3)), conv_bn(384, 256, (3, 1)))),
        seq(
            conv_bn(cin, 384, 1),
            conv_bn(384, 448, a),
            conv_bn(448, 512, b),
            Branches(conv_bn(512, 256, s1), conv_bn(512, 256, s2)),
        ),
        pool_last=released,
    )


LAYOUTS = ("released", "paper")


class InceptionV4(nn.Module):
    """Inception-v4 (Figure 9).

    Args:
        num_classes: width of the classifier.
        dropout: dropout before the fc (keep 0.8).
        layout: ``"released"`` (default) builds the network the authors released (TF-slim, and
            timm's port of it): factorized kernels in its orientation and the pooling branch
            last in every concatenation, so its weights and its published top-1 apply.
            ``"paper"`` builds the paper's figures as drawn: pool branch first, the other
            orientation. Same parameters and MACs; other functions.
    """

    def __init__(
        self, num_classes: int = 1000, dropout: float = 0.2, layout: str = "released"
    ) -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        rel = layout == "released"
        self.layout = layout
        self.features = seq(
            Stem(released=rel),
            *(inception_a(released=rel) for _ in range(4)),
            reduction_a(384, 192, 224, 256, 384, pool_last=rel),
            *(inception_b(released=rel) for _ in range(7)),
            reduction_b_v4(released=rel),
            *(inception_c(released=rel) for _ in range(3)),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1536, num_classes)
        init_weights(self)

    def adapt_state_dict(self, state: dict) -> dict | None:
        """timm's ``inception_v4`` weights, mapped onto the released layout (None: not timm's)."""
        return timm_state_dict(self, state, "features.0.conv.weight", "last_linear")

    def forward(self, x: Tensor) -> Tensor:
        # stem N x 384 x 35 x 35 -> A N x 384 x 35 x 35 -> red-A N x 1024 x 17 x 17
        # -> B N x 1024 x 17 x 17 -> red-B N x 1536 x 8 x 8 -> C N x 1536 x 8 x 8
        x = self.features(x)  # N x 1536 x 8 x 8
        x = torch.flatten(self.avgpool(x), 1)  # N x 1536
        return self.fc(self.dropout(x))  # N x num_classes
