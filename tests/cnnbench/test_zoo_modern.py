"""GoogLeNet, the ResNets, Inception-v4 and Inception-ResNet-v2: sizes, outputs, determinism."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnbench.models import get_model, get_spec, list_models
from cnnbench.models.googlenet import GoogLeNetOutputs, Inception

MODERN = [
    "googlenet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "inception_v4",
    "inception_resnet_v2",
]

# REFERENCE.md: torchvision's exact counts (GoogLeNet without its auxiliary classifiers).
EXACT_PARAMS = {
    "googlenet": 6_624_904,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
# REFERENCE.md: multiply-adds in G (ResNets at 224, torchvision's figures; Inceptions at 299).
MACS_G = {
    "resnet18": 1.81,
    "resnet34": 3.66,
    "resnet50": 4.09,
    "resnet101": 7.80,
    "resnet152": 11.51,
    "inception_v4": 12.3,
    "inception_resnet_v2": 13.2,
}
HEAVY = {"resnet34", "resnet50", "resnet101", "resnet152", "inception_v4", "inception_resnet_v2"}


def _meta(name: str, **kwargs: Any) -> nn.Module:
    with torch.device("meta"):
        return get_model(name, **kwargs)


def _params(model: nn.Module, *, skip_aux: bool = True) -> int:
    return sum(
        p.numel()
        for n, p in model.named_parameters()
        if not (skip_aux and n.startswith(("aux1.", "aux2.")))
    )


def _input(name: str, batch: int = 2, device: str = "cpu") -> torch.Tensor:
    return torch.randn(batch, *get_spec(name).input_shape, device=device)


def test_all_registered() -> None:
    assert set(MODERN) <= set(list_models(imagenet_only=True))


@pytest.mark.parametrize("name", sorted(EXACT_PARAMS))
def test_exact_param_counts(name: str) -> None:
    assert _params(_meta(name)) == EXACT_PARAMS[name]


@pytest.mark.parametrize(
    ("name", "millions"), [("inception_v4", 42.7), ("inception_resnet_v2", 55.8)]
)
def test_inception_param_counts_within_half_percent(name: str, millions: float) -> None:
    params = _params(_meta(name))
    assert abs(params / (millions * 1e6) - 1) < 0.005, params


@pytest.mark.parametrize("name", sorted(MACS_G))
def test_macs_match_published(name: str) -> None:
    model = _meta(name)
    counter = FlopCounterMode(display=False)
    with counter:
        model(_input(name, batch=1, device="meta"))
    macs = counter.get_total_flops() / 2
    assert abs(macs / (MACS_G[name] * 1e9) - 1) < 0.01, macs


@pytest.mark.parametrize("name", MODERN)
def test_meta_forward_shapes(name: str) -> None:
    # The analysis builds models on the meta device; every model must run there.
    out = _meta(name)(_input(name, device="meta"))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 1000)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in MODERN]
)
def test_forward_is_finite(name: str) -> None:
    model = get_model(name)
    with torch.no_grad():
        out = model(_input(name))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 1000)
    assert torch.isfinite(out).all()
    # Random-init logits must not vanish (FP16/INT8 parity would then compare zeros).
    assert out.std().item() > 1e-3


@pytest.mark.parametrize("name", ["resnet18", "googlenet"])
def test_seeded_init_is_deterministic(name: str) -> None:
    a = get_model(name, seed=0).state_dict()
    b = get_model(name, seed=0).state_dict()
    c = get_model(name, seed=1).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_googlenet_aux_only_in_training() -> None:
    model = get_model("googlenet")
    x = torch.randn(2, 3, 112, 112)  # smaller than 224 to keep the test fast; shapes still fit
    with torch.no_grad():
        assert isinstance(model(x), torch.Tensor)
        model.train()
        out = model(x)
        assert isinstance(out, GoogLeNetOutputs)
        assert out.aux_logits1 is not None and out.aux_logits2 is not None
        assert [t.shape for t in (out.logits, out.aux_logits2, out.aux_logits1)] == [(2, 1000)] * 3
        assert not torch.equal(out.aux_logits1, out.aux_logits2)
        no_aux = get_model("googlenet", aux_logits=False, eval_mode=False)
        assert not any(n.startswith("aux") for n, _ in no_aux.named_parameters())
        assert isinstance(no_aux(x), torch.Tensor)


def _conv5(module: Inception) -> nn.Conv2d:
    conv = module.branch3[1].conv
    assert isinstance(conv, nn.Conv2d)
    return conv


def test_googlenet_paper_5x5_option() -> None:
    tv, paper = _meta("googlenet"), _meta("googlenet", paper_5x5=True)
    # Each Inception module's "5x5" branch gains (25 - 9) * red * out weights.
    convs = [_conv5(m) for m in tv.modules() if isinstance(m, Inception)]
    assert len(convs) == 9
    extra = sum(16 * c.in_channels * c.out_channels for c in convs)
    assert _params(paper) == _params(tv) + extra
    kernels = {_conv5(m).kernel_size for m in paper.modules() if isinstance(m, Inception)}
    assert kernels == {(5, 5)}
    assert paper(_input("googlenet", device="meta")).shape == (2, 1000)


def test_inception_module_depth() -> None:
    module = Inception(256, 128, 128, 192, 32, 96, 64)  # GoogLeNet's inception3b
    assert module(torch.randn(1, 256, 28, 28)).shape == (1, 480, 28, 28)


def test_inception_resnet_v2_paper_schema() -> None:
    model = _meta("inception_resnet_v2", paper=True)
    assert isinstance(model.fc, nn.Linear)
    assert model.fc.in_features == 2144  # 384 + 768 (Reduction-A) + 992 (Reduction-B)
    assert model(_input("inception_resnet_v2", device="meta")).shape == (2, 1000)


def test_specs() -> None:
    for name in ("inception_v4", "inception_resnet_v2"):
        spec = get_spec(name)
        assert spec.family == "Inception"
        assert spec.input_shape == (3, 299, 299)
        assert (spec.preprocessing.resize, spec.preprocessing.crop) == (342, 299)
        assert spec.preprocessing.mean == spec.preprocessing.std == (0.5, 0.5, 0.5)
        assert spec.torchvision is None
    assert get_spec("inception_v4").top1 == 80.0
    assert get_spec("inception_resnet_v2").top1 == 80.1
    assert get_spec("resnet50").top1 == 76.130
    assert get_spec("resnet50").torchvision == "resnet50"
    assert get_spec("googlenet").preprocessing.mean == (0.5, 0.5, 0.5)


@pytest.mark.slow
def test_googlenet_eval_exports_logits_only(tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "googlenet.onnx"
    torch.onnx.export(get_model("googlenet"), (_input("googlenet"),), path, dynamo=False)
    assert len(onnx.load(str(path)).graph.output) == 1
