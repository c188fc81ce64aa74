"""Receptive-field arithmetic (REFERENCE.md) and its propagation along real dataflow."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnbench.analysis import analyze
from cnnbench.receptive_field import RF, apply_window, chain, merge


def _rows(model: nn.Module, shape: tuple[int, ...]) -> dict[str, dict]:
    return {r["name"]: r for r in analyze(model, input_shape=shape).to_dict()["layers"]}


def test_stacked_3x3_convs_see_5_and_7() -> None:
    sizes = [rf.size[0] for rf in chain([(3, 1, 1)] * 3)]
    assert sizes == [3, 5, 7]


def test_seed_1d_example_7_9_17() -> None:
    # 7-wide stride-2 conv -> 7; 2-wide stride-2 max pool -> 9; 3-wide stride-1 conv -> 17.
    fields = chain([(7, 2, 0), (2, 2, 0), (3, 1, 0)])
    assert [f.size[0] for f in fields] == [7, 9, 17]
    assert [f.jump[0] for f in fields] == [2, 4, 4]
    # c' = c + ((k - 1)/2 - p) j, starting from the first pixel's centre 0.5.
    assert [f.start[0] for f in fields] == [3.5, 4.5, 8.5]


def test_seed_1d_example_through_real_modules() -> None:
    model = nn.Sequential(nn.Conv1d(1, 2, 7, stride=2), nn.MaxPool1d(2, 2), nn.Conv1d(2, 2, 3))
    rows = _rows(model, (1, 64))
    assert [rows[n]["rf_size"] for n in ("0", "1", "2")] == [7, 9, 17]
    assert [rows[n]["rf_jump"] for n in ("0", "1", "2")] == [2, 4, 4]
    assert [rows[n]["rf_start"] for n in ("0", "1", "2")] == [3.5, 4.5, 8.5]


def test_padding_and_dilation() -> None:
    rf = apply_window(RF.input((0,)), [3], [2], [1])
    assert (rf.size[0], rf.jump[0], rf.start[0]) == (3, 2, 0.5)  # same-padded: centred on pixel 0
    rf = apply_window(rf, [3], [1], [2], [2])  # k_eff = 5 on a jump of 2
    assert (rf.size[0], rf.jump[0], rf.start[0]) == (3 + 4 * 2, 2, 0.5)


@pytest.mark.parametrize("stack", [
    [(3, 1, 1), (3, 2, 1), (5, 1, 2), (2, 2, 0)],
    [(7, 2, 3), (3, 2, 1), (3, 1, 0), (1, 2, 0), (3, 1, 1)],
])  # fmt: skip
def test_formula_matches_the_pixels_a_unit_depends_on(stack: list[tuple[int, int, int]]) -> None:
    # Ground truth by autograd: the input pixels with a nonzero gradient for one output unit.
    layers = []
    for k, s, p in stack:
        conv = nn.Conv1d(1, 1, k, stride=s, padding=p, bias=False)
        nn.init.ones_(conv.weight)
        layers.append(conv)
    model = nn.Sequential(*layers)
    x = torch.ones(1, 1, 200, requires_grad=True)
    y = model(x)
    unit = y.shape[-1] // 2
    y[0, 0, unit].backward()
    hit = torch.nonzero(x.grad[0, 0]).flatten()
    lo, hi = int(hit.min()), int(hit.max()) + 1  # pixel i covers [i, i + 1)
    rf = chain(stack)[-1]
    assert hi - lo == rf.size[0]
    assert (lo + hi) / 2 == rf.start[0] + unit * rf.jump[0]
    assert _rows(model, (1, 200))[str(len(stack) - 1)]["rf_size"] == rf.size[0]


class _TwoBranches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 5, padding=2)
        self.after = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after(torch.cat([self.a(x), self.b(x)], dim=1))


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(4, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.c2(self.relu(self.c1(x)))
        out += x  # in-place add: the field of the merge is the larger one
        return self.relu(out)


def test_branches_merge_to_the_largest_field() -> None:
    rows = _rows(_TwoBranches(), (3, 16, 16))
    assert (rows["a"]["rf_size"], rows["b"]["rf_size"]) == (3, 5)
    assert rows["after"]["rf_size"] == 7


def test_residual_add_keeps_the_main_path_field() -> None:
    layers = analyze(_Residual(), input_shape=(4, 16, 16)).layers
    assert [(r.name, r.rf.size[0]) for r in layers if r.name != "input"] == [
        ("c1", 3), ("relu", 3), ("c2", 5), ("relu", 5),
    ]  # fmt: skip


def test_asymmetric_kernels_are_tracked_per_axis() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 1, (1, 7), padding=(0, 3)), nn.Conv2d(1, 1, (7, 1), padding=(3, 0))
    )
    rows = _rows(model, (1, 20, 20))
    assert rows["0"]["rf_size_axes"] == [1, 7] and rows["0"]["rf_size"] == 7
    assert rows["1"]["rf_size_axes"] == [7, 7]


def test_global_pooling_and_linear_span_the_whole_map() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 16 -> 8, r 3, j 2
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    rows = _rows(model, (3, 16, 16))
    assert rows["1"]["rf_size"] == 3 + (8 - 1) * 2
    assert rows["3"]["rf_size"] == rows["1"]["rf_size"]
    flat = _rows(nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Flatten()), (3, 16, 16))
    assert flat["1"]["rf_size"] == 17  # flatten before a linear layer: the 8x8 map as one window


def test_merge_picks_per_axis_maximum() -> None:
    a = RF((3, 7), (1, 2), (0.5, 3.5), (4, 4))
    b = RF((5, 1), (2, 1), (1.5, 0.5), (4, 4))
    m = merge([a, b], (4, 4))
    assert m.size == (5, 7) and m.jump == (2, 2) and m.start == (1.5, 3.5)


def test_resnet18_last_conv_sees_435_pixels() -> None:
    rows = {r.name: r for r in analyze("resnet18").layers}
    last = rows["layer4.1.conv2"].rf
    assert last is not None and last.size == (435, 435) and last.jump == (32, 32)
    assert rows["fc"].rf is not None and rows["fc"].rf.size[0] == 435 + 6 * 32


def test_lenet5_c5_sees_the_whole_32x32_input() -> None:
    rows = {r.name: r.to_dict() for r in analyze("lenet5").layers}
    assert [rows[n]["rf_size"] for n in ("c1", "s2", "c3", "s4", "c5")] == [5, 6, 14, 16, 32]
    assert [rows[n]["rf_jump"] for n in ("c1", "s2", "c3", "s4", "c5")] == [1, 2, 2, 4, 4]
