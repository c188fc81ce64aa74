"""timm checkpoints for Inception-v4 and Inception-ResNet-v2 load into our released layouts.

The fixture ``tests/fixtures/timm_state_dicts.json`` is recorded from timm itself by
``tests/fixtures/make_timm_fixture.py``. Shapes cannot tell a pooling branch's place in a
concatenation (it has no tensors), so the cross-check goes further where timm can be run (a
separate interpreter named by ``CNNBENCH_TIMM_PYTHON``, default ``/tmp/tv/bin/python``): a
seeded timm model's state dict loads through ``get_model(weights=...)`` and the eval-mode
logits are compared with timm's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch

from cnnbench.errors import WeightsError
from cnnbench.models import get_model
from cnnbench.weights import adapt, positional_map

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "timm_state_dicts.json"
DOC = json.loads(FIXTURE.read_text())
NAMES = sorted(DOC["models"])


def _meta(name: str, **kw: object) -> torch.nn.Module:
    with torch.device("meta"):
        return get_model(name, **kw)


def _timm_state(name: str) -> dict[str, torch.Tensor]:
    """A state dict in timm's keys and shapes (meta tensors: no memory)."""
    return {k: torch.empty(shape, device="meta") for k, shape in DOC["models"][name]["state_dict"]}


def test_fixture_is_timm_1_0() -> None:
    assert DOC["timm"].startswith("1.0.")
    assert set(NAMES) == {"inception_v4", "inception_resnet_v2"}


@pytest.mark.parametrize("name", NAMES)
def test_timm_keys_map_onto_the_released_layout(name: str) -> None:
    model = _meta(name)
    mapped = adapt(model, _timm_state(name), "timm.pth")
    own = model.state_dict()
    assert list(mapped) == list(own)
    assert all(tuple(mapped[k].shape) == tuple(v.shape) for k, v in own.items())


def test_the_paper_layouts_refuse_timm_weights() -> None:
    with pytest.raises(WeightsError, match="released layout only"):
        adapt(_meta("inception_v4", layout="paper"), _timm_state("inception_v4"), "t.pth")
    with pytest.raises(WeightsError, match="released layout only"):
        adapt(_meta("inception_resnet_v2", paper=True), _timm_state("inception_resnet_v2"), "t.pth")


def test_a_1001_class_tf_slim_head_loses_its_background_row() -> None:
    state = _timm_state("inception_resnet_v2")
    state["classif.weight"] = torch.arange(1001.0)[:, None].expand(1001, 1536)
    state["classif.bias"] = torch.arange(1001.0)
    mapped = adapt(_meta("inception_resnet_v2"), state, "tf.pth")
    assert mapped["fc.weight"].shape == (1000, 1536) and mapped["fc.bias"][0] == 1.0


def test_positional_map_names_the_first_misfit() -> None:
    own = {"a.weight": torch.zeros(2, 3), "a.bias": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"'x\.bias' \(3,\) does not fit 'a\.bias' \(2,\)"):
        positional_map(own, {"x.weight": torch.zeros(2, 3), "x.bias": torch.zeros(3)}, what="t")
    with pytest.raises(ValueError, match="has 1 tensors, the model 2"):
        positional_map(own, {"x.weight": torch.zeros(2, 3)}, what="t")


def test_inception_v4_layouts_differ_only_in_function() -> None:
    released, paper = _meta("inception_v4"), _meta("inception_v4", layout="paper")
    count = sum(p.numel() for p in released.parameters())
    assert count == sum(p.numel() for p in paper.parameters()) == 42_679_816
    # released: the stem's factorized 7x7 runs 1x7 first; the paper's, 7x1
    k = {n: tuple(p.shape[2:]) for n, p in released.state_dict().items() if n.endswith("weight")}
    assert k["features.0.mixed_b.branches.1.1.conv.weight"] == (1, 7)
    kp = {n: tuple(p.shape[2:]) for n, p in paper.state_dict().items() if n.endswith("weight")}
    assert kp["features.0.mixed_b.branches.1.1.conv.weight"] == (7, 1)
    with pytest.raises(ValueError, match="layout must be one of released, paper"):
        get_model("inception_v4", layout="slim")


# --- cross-check with timm itself --------------------------------------------------------------
TIMM_PY = os.environ.get("CNNBENCH_TIMM_PYTHON", "/tmp/tv/bin/python")
_MAKE = textwrap.dedent(
    """
    import sys, torch, timm
    name, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    m = timm.create_model(name, pretrained=False).eval()
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():  # BN statistics away from identity: a misplaced channel shows
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
    x = torch.randn(2, 3, 299, 299, generator=g)
    with torch.no_grad():
        y = m(x)
    torch.save(m.state_dict(), out + "/w.pth")
    from safetensors.torch import save_file  # keys sorted by name, not in module order
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, out + "/w.safetensors")
    torch.save({"x": x, "y": y}, out + "/io.pt")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_timm_weights_load_and_agree(name: str, tmp_path: Path) -> None:
    if not Path(TIMM_PY).exists():
        pytest.skip(f"no interpreter with timm at {TIMM_PY} (set CNNBENCH_TIMM_PYTHON)")
    subprocess.run([TIMM_PY, "-c", _MAKE, name, str(tmp_path)], check=True, timeout=600)
    io = torch.load(tmp_path / "io.pt", weights_only=True)
    for weights in ("w.pth", "w.safetensors"):
        model = get_model(name, weights=tmp_path / weights)
        with torch.no_grad():
            ours = model(io["x"])
        rel = float((ours - io["y"]).abs().max() / io["y"].abs().max())
        assert rel <= 1e-5, (weights, rel)


@pytest.mark.parametrize("name", NAMES)
def test_timm_order_restores_registration_order_from_any_order(name: str) -> None:
    # safetensors files keep their keys sorted by name, not in timm's module order
    from cnnbench.models.inception_timm import timm_order

    keys = [k for k, _ in DOC["models"][name]["state_dict"]]
    assert sorted(sorted(keys), key=timm_order) == keys
    assert sorted(reversed(keys), key=timm_order) == keys
    model = _meta(name)
    shuffled = dict(sorted(_timm_state(name).items()))
    assert list(adapt(model, shuffled, "sorted.safetensors")) == list(model.state_dict())
