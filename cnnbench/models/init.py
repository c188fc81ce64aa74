"""The weight initialisation the ImageNet builders share (run under get_model's seed)."""

from __future__ import annotations

from typing import Literal

from torch import nn


def he_init(
    model: nn.Module, *, conv_mode: Literal["fan_in", "fan_out"], linear_std: float | None = 0.01
) -> None:
    """He et al. (Kaiming normal, ReLU gain) convolutions with zero bias, batch norm as the
    identity, and N(0, ``linear_std``) linear layers with zero bias (None keeps PyTorch's default).

    ``conv_mode`` is ``"fan_out"`` (torchvision's VGG/ResNet) or ``"fan_in"``.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=conv_mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)
