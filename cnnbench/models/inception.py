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
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from cnnbench.models.googlenet import BasicConv2d
from cnnbench.models.init import he_init
from cnnbench.models.registry import register_model
from cnnbench.models.spec import ModelSpec, imagenet_spec
from cnnbench.weights import positional_map

__all__ = ["Branches", "InceptionResNetV2", "InceptionV4", "Residual", "Stem"]

PAPER = (
    "Szegedy, Ioffe, Vanhoucke & Alemi 2016, Inception-v4, Inception-ResNet and the Impact of "
    "Residual Connections on Learning (AAAI 2017)"
)


def _c(
    cin: int, cout: int, k: int | tuple[int, int], stride: int = 1, v: bool = False
) -> nn.Module:
    """Conv-BN-ReLU; ``v`` marks the paper's valid-padded ("V") convolutions."""
    kh, kw = (k, k) if isinstance(k, int) else k
    pad = (0, 0) if v else (kh // 2, kw // 2)
    return BasicConv2d(cin, cout, kernel_size=(kh, kw), stride=stride, padding=pad)


def _avg() -> nn.Module:
    # TF "SAME" average pooling divides by the number of real (unpadded) inputs.
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


def _max() -> nn.Module:
    return nn.MaxPool2d(3, stride=2)


class Branches(nn.Module):
    """Parallel branches whose outputs are concatenated along channels ("Filter concat")."""

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


def _seq(*mods: nn.Module) -> nn.Sequential:
    return nn.Sequential(*mods)


def _pair(n: int, released: bool) -> tuple[tuple[int, int], tuple[int, int]]:
    """The two factorized kernels of an n x n convolution, in the order the layout runs them:
    the released network (TF-slim, timm) runs (1, n) then (n, 1); the paper's figures as we
    read them, (n, 1) then (1, n)."""
    return ((1, n), (n, 1)) if released else ((n, 1), (1, n))


class Stem(nn.Module):
    """Figure 3: 299x299x3 -> 35x35x384 (Inception-v4; Inception-ResNet-v2 with ``paper=True``).

    ``released``: the factorized 7x7 as the released network runs it (see :func:`_pair`).
    """

    def __init__(self, released: bool = False) -> None:
        super().__init__()
        k1, k2 = _pair(7, released)
        self.conv = _seq(_c(3, 32, 3, 2, v=True), _c(32, 32, 3, v=True), _c(32, 64, 3))
        self.mixed_a = Branches(_max(), _c(64, 96, 3, 2, v=True))
        self.mixed_b = Branches(
            _seq(_c(160, 64, 1), _c(64, 96, 3, v=True)),
            _seq(_c(160, 64, 1), _c(64, 64, k1), _c(64, 64, k2), _c(64, 96, 3, v=True)),
        )
        self.mixed_c = Branches(_c(192, 192, 3, 2, v=True), _max())

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)  # N x 64 x 147 x 147
        x = self.mixed_a(x)  # N x 160 x 73 x 73
        x = self.mixed_b(x)  # N x 192 x 71 x 71
        return self.mixed_c(x)  # N x 384 x 35 x 35


def _ordered(pool: nn.Module, *convs: nn.Module, pool_last: bool) -> Branches:
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
    return _ordered(
        _max(),
        _c(cin, n, 3, 2, v=True),
        _seq(_c(cin, k, 1), _c(k, l, 3), _c(l, m, 3, 2, v=True)),
        pool_last=pool_last,
    )


# --- Inception-v4 blocks ------------------------------------------------------------------------


def inception_a(cin: int = 384, released: bool = False) -> Branches:
    """Figure 4: 35x35, 384 channels out."""
    return _ordered(
        _seq(_avg(), _c(cin, 96, 1)),
        _c(cin, 96, 1),
        _seq(_c(cin, 64, 1), _c(64, 96, 3)),
        _seq(_c(cin, 64, 1), _c(64, 96, 3), _c(96, 96, 3)),
        pool_last=released,
    )


def inception_b(cin: int = 1024, released: bool = False) -> Branches:
    """Figure 5: 17x17, 1024 channels out. Both layouts run the short branch (1x7 then 7x1);
    the long one starts with 7x1 in the released network, 1x7 in the paper's."""
    a, b = _pair(7, not released)
    return _ordered(
        _seq(_avg(), _c(cin, 128, 1)),
        _c(cin, 384, 1),
        _seq(_c(cin, 192, 1), _c(192, 224, (1, 7)), _c(224, 256, (7, 1))),
        _seq(_c(cin, 192, 1), _c(192, 192, a), _c(192, 224, b), _c(224, 224, a), _c(224, 256, b)),
        pool_last=released,
    )


def reduction_b_v4(cin: int = 1024, released: bool = False) -> Branches:
    """Figure 8: 17x17 -> 8x8, 1536 channels out."""
    return _ordered(
        _max(),
        _seq(_c(cin, 192, 1), _c(192, 192, 3, 2, v=True)),
        _seq(
            _c(cin, 256, 1), _c(256, 256, (1, 7)), _c(256, 320, (7, 1)), _c(320, 320, 3, 2, v=True)
        ),
        pool_last=released,
    )


def inception_c(cin: int = 1536, released: bool = False) -> Branches:
    """Figure 6: 8x8, 1536 channels out (the last two branches split into 1x3 and 3x1). The
    long branch runs 3x1 then 1x3 in the released network, and its split 1x3 first."""
    a, b = _pair(3, not released)
    s1, s2 = _pair(3, released)
    return _ordered(
        _seq(_avg(), _c(cin, 256, 1)),
        _c(cin, 256, 1),
        _seq(_c(cin, 384, 1), Branches(_c(384, 256, (1, 3)), _c(384, 256, (3, 1)))),
        _seq(
            _c(cin, 384, 1),
            _c(384, 448, a),
            _c(448, 512, b),
            Branches(_c(512, 256, s1), _c(512, 256, s2)),
        ),
        pool_last=released,
    )


_LEAVES = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3, "num_batches_tracked": 4}
#: timm's Inception-ResNet-v2 top-level modules in registration order (the others sort by name)
_IRV2_TOP = (
    "conv2d_1a", "conv2d_2a", "conv2d_2b", "conv2d_3b", "conv2d_4a", "mixed_5b", "repeat",
    "mixed_6a", "repeat_1", "mixed_7a", "repeat_2", "block8", "conv2d_7b", "classif",
)  # fmt: skip


def timm_order(key: str) -> tuple:
    """A sort key that puts timm's Inception state-dict keys in its modules' registration
    order: whatever order a file kept (safetensors sorts its keys by name), the positional map
    then sees the order timm's ``state_dict()`` had. Indices sort as numbers, a conv before
    its norm, tensors as torch lists them, the IRv2 stem by ``_IRV2_TOP``, the rest by name."""
    out = []
    for depth, part in enumerate(key.split(".")):
        if depth == 0 and part in _IRV2_TOP:
            out.append((0, _IRV2_TOP.index(part), ""))
        elif part.isdigit():
            out.append((0, int(part), ""))
        elif part in _LEAVES:
            out.append((1, _LEAVES[part], ""))
        elif part in ("conv", "bn"):
            out.append((2, int(part == "bn"), ""))
        else:
            out.append((3, 0, part))
    return tuple(out)


def timm_state_dict(model: nn.Module, state: dict, marker: str, classifier: str) -> dict | None:
    """``state`` mapped from timm's (and TF-slim's port's) layout onto ``model``, or None when
    ``state`` is not in that layout (it lacks ``marker``). Our released layouts register their
    modules in timm's order, so tensors map one to one, checked by shape and kind. TF-slim's
    1001-class heads (class 0: background) lose their first row, as timm does on load."""
    if marker not in state or f"{classifier}.weight" not in state:
        return None
    if getattr(model, "layout", "released") != "released" or getattr(model, "paper", False):
        raise ValueError("timm's weights fit the released layout only")
    state = {k: state[k] for k in sorted(state, key=timm_order)}
    own = model.state_dict()
    fc_rows = own["fc.weight"].shape[0]
    if state[f"{classifier}.weight"].shape[0] == fc_rows + 1:
        for part in ("weight", "bias"):
            state[f"{classifier}.{part}"] = state[f"{classifier}.{part}"][1:]
    return positional_map(own, state, what="timm checkpoint")


def _init(model: nn.Module) -> None:
    # He init keeps activations finite through ~150 conv layers at random initialisation.
    he_init(model, conv_mode="fan_in")


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
        self.features = _seq(
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
        _init(self)

    def adapt_state_dict(self, state: dict) -> dict | None:
        """timm's ``inception_v4`` weights, mapped onto the released layout (None: not timm's)."""
        return timm_state_dict(self, state, "features.0.conv.weight", "last_linear")

    def forward(self, x: Tensor) -> Tensor:
        # stem N x 384 x 35 x 35 -> A N x 384 x 35 x 35 -> red-A N x 1024 x 17 x 17
        # -> B N x 1024 x 17 x 17 -> red-B N x 1536 x 8 x 8 -> C N x 1536 x 8 x 8
        x = self.features(x)  # N x 1536 x 8 x 8
        x = torch.flatten(self.avgpool(x), 1)  # N x 1536
        return self.fc(self.dropout(x))  # N x num_classes


# --- Inception-ResNet-v2 blocks -----------------------------------------------------------------


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
            _c(c, 32, 1),
            _seq(_c(c, 32, 1), _c(32, 32, 3)),
            _seq(_c(c, 32, 1), _c(32, 48, 3), _c(48, 64, 3)),
        ),
        128,
        c,
        scale,
    )


def block_b(c: int, scale: float) -> Residual:
    """Figure 17 (Inception-ResNet-B), 17x17."""
    return Residual(
        Branches(_c(c, 192, 1), _seq(_c(c, 128, 1), _c(128, 160, (1, 7)), _c(160, 192, (7, 1)))),
        384,
        c,
        scale,
    )


def block_c(c: int, scale: float, relu: bool = True) -> Residual:
    """Figure 19 (Inception-ResNet-C), 8x8."""
    return Residual(
        Branches(_c(c, 192, 1), _seq(_c(c, 192, 1), _c(192, 224, (1, 3)), _c(224, 256, (3, 1)))),
        448,
        c,
        scale,
        relu,
    )


def reduction_b_res(cin: int, pool_last: bool = False) -> Branches:
    """Figure 18: 17x17 -> 8x8, ``cin + 992`` channels out."""
    return _ordered(
        _max(),
        _seq(_c(cin, 256, 1), _c(256, 384, 3, 2, v=True)),
        _seq(_c(cin, 256, 1), _c(256, 288, 3, 2, v=True)),
        _seq(_c(cin, 256, 1), _c(256, 288, 3), _c(288, 320, 3, 2, v=True)),
        pool_last=pool_last,
    )


def released_stem() -> nn.Sequential:
    """The released model's stem: Inception-v3 style convs, then a 320-wide mixed block."""
    return _seq(
        _c(3, 32, 3, 2, v=True),  # N x 32 x 149 x 149
        _c(32, 32, 3, v=True),  # N x 32 x 147 x 147
        _c(32, 64, 3),  # N x 64 x 147 x 147
        _max(),  # N x 64 x 73 x 73
        _c(64, 80, 1),  # N x 80 x 73 x 73
        _c(80, 192, 3, v=True),  # N x 192 x 71 x 71
        _max(),  # N x 192 x 35 x 35
        Branches(
            _c(192, 96, 1),
            _seq(_c(192, 48, 1), _c(48, 64, 5)),
            _seq(_c(192, 64, 1), _c(64, 96, 3), _c(96, 96, 3)),
            _seq(_avg(), _c(192, 64, 1)),
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
        self.features = _seq(
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
        self.conv = nn.Identity() if paper else _c(cc, 1536, 1)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(cc if paper else 1536, num_classes)
        _init(self)

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
