"""LeNet-5 as in LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to
document recognition" (Proc. IEEE 86(11)), Section II.B.

Faithful parts: 32x32 input, scaled tanh f(a) = 1.7159 tanh(2a/3) after every layer up to F6,
trainable subsampling S2/S4 (2x2 sum x one coefficient + one bias per map), C3's partial
connection table (Table I), C5 as a 5x5 convolution, F6 with 84 units, an output layer of ten
Euclidean RBF units with fixed prototypes, and the uniform +-2.4/fan-in initialisation.

Departures (documented in the spec notes too):
- The RBF prototypes were hand-drawn 7x12 bitmaps of the characters; we cannot reproduce them,
  so they are ten rows of a Paley Hadamard matrix of order 84: a fixed +-1 code whose
  prototypes are pairwise orthogonal (Hamming distance 42).
- Training criterion: the paper's MAP criterion (eq. 9) is cross-entropy over -y_i plus a
  constant e^-j "rubbish class" term in the normaliser. We return logits = -||f6 - w_i||^2 and
  train with plain cross-entropy (j omitted); argmax of the logits is the closest prototype.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnbench.models.registry import register_model
from cnnbench.models.spec import ModelSpec, Preprocessing

LENET_PAPER = (
    "LeCun, Bottou, Bengio & Haffner, Gradient-Based Learning Applied to Document Recognition, "
    "Proc. IEEE 86(11):2278-2324, 1998"
)

# Table I: for each C3 map, the S2 maps it sees. 0-5: three contiguous maps, 6-11: four
# contiguous, 12-14: four non-contiguous, 15: all six.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (4, 5, 0), (5, 0, 1),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (3, 4, 5, 0), (4, 5, 0, 1), (5, 0, 1, 2),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)  # fmt: skip


def _uniform_fan_in_(t: torch.Tensor, fan_in: int) -> None:
    # Paper, Appendix A: weights uniform in [-2.4/F, 2.4/F], F the unit's fan-in.
    bound = 2.4 / fan_in
    nn.init.uniform_(t, -bound, bound)


class ScaledTanh(nn.Module):
    """The paper's squashing function f(a) = A tanh(S a) with A = 1.7159, S = 2/3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))

    def cnnbench_counts(self, inp: torch.Tensor, out: torch.Tensor) -> dict[str, int]:
        return {"connections": 0, "macs": 0}


class Subsampling(nn.Module):
    """S2/S4: each unit sums a 2x2 block of one map, times a trainable coefficient, plus a bias.

    Two trainable parameters per map; squashing is the next module (:class:`ScaledTanh`).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.kernel_size = 2
        self.stride = 2
        self.padding = 0
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        _uniform_fan_in_(self.weight, 4)
        _uniform_fan_in_(self.bias, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.avg_pool2d(x, kernel_size=2, stride=2) * 4.0  # the 2x2 sum
        return s * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def cnnbench_counts(self, inp: torch.Tensor, out: torch.Tensor) -> dict[str, int]:
        units = out[0].numel()
        # The paper counts 4 inputs + 1 bias per unit (S2: 14*14*6*5 = 5,880).
        return {"connections": units * 5, "macs": units}

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size=2, stride=2"


class PartialConv2d(nn.Module):
    """C3: a 5x5 convolution in which output map i sees only the input maps ``table[i]``.

    Only the table's kernels are parameters: ``weight`` holds them in table order (60 kernels of
    5x5 for Table I, + 16 biases = 1,516). Each forward gathers them into a dense
    (out, in, k, k) kernel with zeros where the table has no connection, so the layer runs as one
    ordinary convolution (fast, and exports to ONNX as Gather + Conv).
    """

    index: torch.Tensor

    def __init__(self, table: tuple[tuple[int, ...], ...], in_channels: int, kernel_size: int):
        super().__init__()
        self.table = table
        self.in_channels = in_channels
        self.out_channels = len(table)
        self.kernel_size = kernel_size
        self.stride = 1
        self.padding = 0
        n_kernels = sum(len(row) for row in table)
        self.weight = nn.Parameter(torch.empty(n_kernels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(self.out_channels))
        # index[o * in + i] = 1 + position of kernel (o, i) in ``weight``; 0 = the zero kernel.
        index = [0] * (self.out_channels * in_channels)
        pos = 0
        for o, row in enumerate(table):
            fan_in = len(row) * kernel_size * kernel_size
            _uniform_fan_in_(self.weight.data[pos : pos + len(row)], fan_in)
            _uniform_fan_in_(self.bias.data[o : o + 1], fan_in)
            for i in row:
                index[o * in_channels + i] = 1 + pos
                pos += 1
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)

    def dense_weight(self) -> torch.Tensor:
        """The (out, in, k, k) kernel with zeros where Table I has no connection."""
        k = self.kernel_size
        bank = torch.cat([self.weight.new_zeros((1, k, k)), self.weight], dim=0)
        return bank.index_select(0, self.index).view(self.out_channels, self.in_channels, k, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.dense_weight(), self.bias)

    def connection_matrix(self) -> list[list[bool]]:
        """Table I as rows of input maps x columns of output maps (True where connected)."""
        return [[i in row for row in self.table] for i in range(self.in_channels)]

    def cnnbench_counts(self, inp: torch.Tensor, out: torch.Tensor) -> dict[str, int]:
        hw = out.shape[-1] * out.shape[-2]
        taps = self.weight.shape[0] * self.kernel_size * self.kernel_size
        # Every output unit has its map's weights plus one bias (C3: 100 * 1,516 = 151,600).
        return {"connections": hw * (taps + self.out_channels), "macs": hw * taps}

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, table=I"


def paley_code(n_rows: int = 10, q: int = 83) -> list[list[float]]:
    """Rows 1..n_rows of the Paley (type I) Hadamard matrix of order q + 1 (q prime, 3 mod 4).

    Rows of a Hadamard matrix are pairwise orthogonal, so any two of these +-1 prototypes
    differ in exactly (q + 1) / 2 places: equally far apart, like a good output code.
    """
    squares = {(i * i) % q for i in range(1, q)}

    def chi(a: int) -> int:
        a %= q
        return 0 if a == 0 else (1 if a in squares else -1)

    n = q + 1
    h = [[0] * n for _ in range(n)]
    for j in range(n):
        h[0][j] = 1
    for i in range(1, n):
        h[i][0] = -1
        for j in range(1, n):
            h[i][j] = chi(j - i) + (1 if i == j else 0)
    return [[float(v) for v in h[r]] for r in range(1, n_rows + 1)]


class EuclideanRBF(nn.Module):
    """Output layer: y_i = ||x - w_i||^2 with fixed prototypes w_i; returns -y as logits."""

    prototypes: torch.Tensor

    def __init__(self, in_features: int = 84, num_classes: int = 10) -> None:
        super().__init__()
        self.in_features = in_features
        self.num_classes = num_classes
        if in_features != 84 or not 1 <= num_classes <= 83:
            raise ValueError(f"num_classes must be in 1..83 for 84 RBF inputs, got {num_classes}")
        code = paley_code(num_classes)
        # A buffer, not a Parameter: the prototypes are fixed, not trained.
        self.register_buffer("prototypes", torch.tensor(code, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = x.unsqueeze(1) - self.prototypes.unsqueeze(0)  # N x classes x 84
        return -(diff * diff).sum(dim=-1)

    def cnnbench_counts(self, inp: torch.Tensor, out: torch.Tensor) -> dict[str, int]:
        n = self.in_features * self.num_classes
        return {"connections": n, "macs": n}

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, fixed prototypes"


class LeNet5(nn.Module):
    """LeNet-5: C1 - S2 - C3 - S4 - C5 - F6 - RBF output, 60,000 trainable parameters."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, kernel_size=5)
        self.c1_act = ScaledTanh()
        self.s2 = Subsampling(6)
        self.s2_act = ScaledTanh()
        self.c3 = PartialConv2d(C3_TABLE, 6, kernel_size=5)
        self.c3_act = ScaledTanh()
        self.s4 = Subsampling(16)
        self.s4_act = ScaledTanh()
        self.c5 = nn.Conv2d(16, 120, kernel_size=5)
        self.c5_act = ScaledTanh()
        self.f6 = nn.Linear(120, 84)
        self.f6_act = ScaledTanh()
        self.output = EuclideanRBF(84, num_classes)
        for layer, fan_in in ((self.c1, 25), (self.c5, 400), (self.f6, 120)):
            _uniform_fan_in_(layer.weight, fan_in)
            if layer.bias is not None:
                _uniform_fan_in_(layer.bias, fan_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x 1 x 32 x 32
        x = self.c1_act(self.c1(x))
        # N x 6 x 28 x 28
        x = self.s2_act(self.s2(x))
        # N x 6 x 14 x 14
        x = self.c3_act(self.c3(x))
        # N x 16 x 10 x 10
        x = self.s4_act(self.s4(x))
        # N x 16 x 5 x 5
        x = self.c5_act(self.c5(x))
        # N x 120 x 1 x 1
        x = torch.flatten(x, 1)
        # N x 120
        x = self.f6_act(self.f6(x))
        # N x 84
        return self.output(x)
        # N x 10


# Inputs are ink intensities in [0, 1] (MNIST / sklearn digits convention: 0 = background).
# The paper maps the background (white) to -0.1 and the ink (black) to 1.175:
# (0 - mean) / std = -0.1 and (1 - mean) / std = 1.175  =>  std = 1 / 1.275 = 40/51,
# mean = 0.1 * std = 4/51. Dark-ink-on-white photographs must be inverted before this.
LENET_PREPROCESSING = Preprocessing(
    resize=32, crop=32, mean=(4 / 51,), std=(40 / 51,), grayscale=True
)

LENET_SPEC = ModelSpec(
    name="lenet5",
    family="LeNet",
    input_shape=(1, 32, 32),
    num_classes=10,
    preprocessing=LENET_PREPROCESSING,
    top1=99.05,
    top1_source=(
        "LeCun et al. 1998, Section III.C: 0.95% test error on MNIST (LeNet-5, no distortions); "
        "not an ImageNet figure"
    ),
    paper=LENET_PAPER,
    imagenet=False,
    torchvision=None,
    notes=(
        "RBF prototypes are a fixed +-1 Paley-Hadamard code (the paper's hand-drawn 7x12 bitmaps "
        "are not reproducible); logits are negative squared distances, trained with cross-entropy"
    ),
)


@register_model(LENET_SPEC)
def lenet5(*, num_classes: int = 10, **kwargs: Any) -> LeNet5:
    """LeNet-5 (LeCun et al. 1998) for 32x32 grayscale digits."""
    return LeNet5(num_classes=num_classes, **kwargs)
