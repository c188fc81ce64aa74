"""The classic zoo: LeNet-5, AlexNet (original and torchvision's), VGG A-E and the BN variants."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnbench.errors import WeightsError
from cnnbench.models import get_model, get_spec, list_models, register_model
from cnnbench.weights import load_weights

CLASSIC_PARAMS = {
    "lenet5": 60_000,
    "alexnet": 60_965_224,
    "alexnet_tv": 61_100_840,
    "vgg11": 132_863_336,
    "vgg11_lrn": 132_863_336,
    "vgg13": 133_047_848,
    "vgg16_c": 133_638_952,
    "vgg16": 138_357_544,
    "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840,
    "vgg13_bn": 133_053_736,
    "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
}
TV_NAMES = {"alexnet_tv": "alexnet"} | {
    n: n for n in CLASSIC_PARAMS if n.startswith("vgg") and n not in ("vgg11_lrn", "vgg16_c")
}

# LeCun et al. 1998, Table I: rows are S2 maps, columns C3 maps, X where connected.
TABLE_I = (
    "X...XXX..XXXX.XX",
    "XX...XXX..XXXX.X",
    "XXX...XXX..X.XXX",
    ".XXX..XXXX..X.XX",
    "..XXX..XXXX.XX.X",
    "...XXX..XXXX.XXX",
)


@pytest.fixture(scope="module")
def alexnet_model() -> nn.Module:
    return get_model("alexnet")


def _meta_model(name: str) -> nn.Module:
    with torch.device("meta"):
        return get_model(name)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _io(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, tuple]:
    """Input and output of the named submodules in one forward pass."""
    seen: dict[str, tuple] = {}
    mods = dict(model.named_modules())
    hooks = [
        mods[n].register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, (i[0], o)))
        for n in names
    ]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_all_classic_models_registered() -> None:
    names = list_models()
    assert set(CLASSIC_PARAMS) <= set(names)
    assert "lenet5" not in list_models(imagenet_only=True)
    assert set(CLASSIC_PARAMS) - {"lenet5"} <= set(list_models(imagenet_only=True))


@pytest.mark.parametrize("name", sorted(CLASSIC_PARAMS))
def test_param_count_exact(name: str) -> None:
    assert _n_params(_meta_model(name)) == CLASSIC_PARAMS[name]


@pytest.mark.parametrize("name", sorted(CLASSIC_PARAMS))
def test_meta_forward_shape_and_spec(name: str) -> None:
    spec = get_spec(name)
    model = _meta_model(name)
    with torch.device("meta"):
        out = model(torch.empty(2, *spec.input_shape))
    assert tuple(out.shape) == (2, spec.num_classes)
    assert spec.preprocessing.crop == spec.input_shape[1] == spec.input_shape[2]
    assert spec.torchvision == TV_NAMES.get(name)
    assert spec.top1 is None or (spec.top1_source and 50 < spec.top1 < 100)


def test_published_top1_values() -> None:
    expect = {
        "alexnet_tv": 56.522,
        "vgg11": 69.020,
        "vgg13": 69.928,
        "vgg16": 71.592,
        "vgg19": 72.376,
        "vgg11_bn": 70.370,
        "vgg13_bn": 71.586,
        "vgg16_bn": 73.360,
        "vgg19_bn": 74.218,
        "alexnet": 100 - 40.7,
        "vgg11_lrn": 100 - 29.7,
        "vgg16_c": 100 - 28.1,
    }
    for name, top1 in expect.items():
        assert get_spec(name).top1 == pytest.approx(top1), name


# ---- LeNet-5 ---------------------------------------------------------------------------


def test_lenet_layer_params_and_names() -> None:
    model = get_model("lenet5")
    per_layer = {n: _n_params(getattr(model, n)) for n in ("c1", "s2", "c3", "s4", "c5", "f6")}
    assert per_layer == {"c1": 156, "s2": 12, "c3": 1516, "s4": 32, "c5": 48120, "f6": 10164}
    assert _n_params(model.output) == 0  # fixed prototypes
    assert "output.prototypes" in model.state_dict()


def test_lenet_c3_connection_table() -> None:
    c3 = get_model("lenet5").c3
    matrix = c3.connection_matrix()
    assert ["".join("X" if c else "." for c in row) for row in matrix] == list(TABLE_I)
    sizes = [len(row) for row in c3.table]
    assert sizes == [3] * 6 + [4] * 9 + [6]
    # The dense kernel is exactly zero where Table I has no connection ...
    dense = c3.dense_weight().detach()
    for i, row in enumerate(TABLE_I):
        for o, mark in enumerate(row):
            assert bool(dense[o, i].abs().sum() > 0) == (mark == "X"), (i, o)
    # ... so perturbing one S2 map changes exactly the C3 maps Table I connects it to.
    x = torch.randn(1, 6, 14, 14)
    base = c3(x)
    for i, row in enumerate(TABLE_I):
        bumped = x.clone()
        bumped[:, i] += 1.0
        changed = (c3(bumped) - base).abs().flatten(2).amax(-1)[0] > 0
        assert "".join("X" if c else "." for c in changed.tolist()) == row


def test_lenet_counts_follow_the_paper() -> None:
    model = get_model("lenet5")
    x = torch.randn(2, 1, 32, 32)
    io = _io(model, x, ["s2", "c3", "s4", "output"])
    counts = {n: getattr(model, n).cnnbench_counts(*io[n]) for n in io}
    assert counts["s2"]["connections"] == 5_880
    assert counts["c3"]["connections"] == 151_600
    assert counts["s4"]["connections"] == 2_000
    assert counts["c3"]["macs"] == 100 * 1_500
    assert counts["output"] == {"connections": 840, "macs": 840}
    for n in ("s2", "c3", "s4"):
        mod = getattr(model, n)
        assert all(isinstance(getattr(mod, a), int) for a in ("kernel_size", "stride", "padding"))
    assert (model.c3.kernel_size, model.s2.kernel_size, model.s2.stride) == (5, 2, 2)


def test_lenet_squashing_preprocessing_and_prototypes() -> None:
    model = get_model("lenet5")
    f = model.c1_act
    assert f(torch.tensor([1.0, -1.0])).tolist() == pytest.approx([1.0, -1.0], abs=1e-4)
    pre = get_spec("lenet5").preprocessing
    assert pre.grayscale and pre.resize == pre.crop == 32
    assert (0 - pre.mean[0]) / pre.std[0] == pytest.approx(-0.1)
    assert (1 - pre.mean[0]) / pre.std[0] == pytest.approx(1.175)
    protos = model.output.prototypes
    assert set(protos.unique().tolist()) == {-1.0, 1.0} and tuple(protos.shape) == (10, 84)
    assert torch.equal(protos @ protos.T, 84 * torch.eye(10))  # equidistant code
    # Logits are negative squared distances: a prototype itself is classified as its class.
    assert model.output(protos).argmax(1).tolist() == list(range(10))
    assert model.output(protos).diagonal().abs().max() == 0


def test_lenet_subsampling_is_scaled_sum_plus_bias() -> None:
    s2 = get_model("lenet5").s2
    x = torch.randn(1, 6, 4, 4)
    y = s2(x)
    block = x[0, 3, 0:2, 2:4].sum()
    assert y[0, 3, 0, 1].item() == pytest.approx((block * s2.weight[3] + s2.bias[3]).item(), 1e-5)


# The TorchScript exporter is quick; the dynamo exporter (export/'s default) takes ~10 s here.
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("dynamo", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_lenet_onnx_export_matches_torch(tmp_path, dynamo: bool) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = get_model("lenet5")
    path = tmp_path / "lenet5.onnx"
    torch.onnx.export(
        model,
        (torch.randn(2, 1, 32, 32),),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}},
        dynamo=dynamo,
    )
    x = torch.randn(3, 1, 32, 32)
    got = ort.InferenceSession(str(path)).run(None, {"input": x.numpy()})[0]
    assert got.shape == (3, 10)
    assert abs(got - model(x).detach().numpy()).max() < 1e-4


# ---- AlexNet ---------------------------------------------------------------------------


def test_alexnet_layout_and_neuron_counts(alexnet_model: nn.Module) -> None:
    model = alexnet_model
    f = model.features
    assert [f.conv2.groups, f.conv3.groups, f.conv4.groups, f.conv5.groups] == [2, 1, 2, 2]
    order = list(f._modules)
    assert order[:4] == ["conv1", "relu1", "norm1", "pool1"]
    assert order[4:8] == ["conv2", "relu2", "norm2", "pool2"]
    assert (f.pool1.kernel_size, f.pool1.stride) == (3, 2)  # overlapping pooling
    assert list(model.classifier._modules) == [
        "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8",
    ]  # fmt: skip
    assert model.classifier.drop6.p == model.classifier.drop7.p == 0.5
    names = ["features.conv1", "features.conv2", "features.conv3", "features.conv4",
             "features.conv5", "classifier.fc6", "classifier.fc7", "classifier.fc8"]  # fmt: skip
    with torch.no_grad():
        io = _io(model, torch.randn(2, 3, 227, 227), names)
    neurons = [io[n][1][0].numel() for n in names]
    out = io["classifier.fc8"][1]
    assert tuple(out.shape) == (2, 1000) and torch.isfinite(out).all()
    # The paper's list, with its first figure corrected (253,440 is an erratum for 55*55*96).
    assert neurons == [290_400, 186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000]
    # The paper's init: biases 1 in conv2, conv4, conv5, fc6, fc7 and 0 elsewhere.
    assert f.conv2.bias.eq(1).all() and f.conv1.bias.eq(0).all() and f.conv3.bias.eq(0).all()
    assert model.classifier.fc7.bias.eq(1).all() and model.classifier.fc8.bias.eq(0).all()


def test_lrn_computes_the_papers_formula(alexnet_model: nn.Module) -> None:
    norm = alexnet_model.features.norm1
    a = torch.randn(1, 8, 2, 2) * 10
    b = norm(a)
    i, n, k, alpha, beta = 3, 5, 2.0, 1e-4, 0.75
    lo, hi = max(0, i - n // 2), min(7, i + n // 2)
    expect = a[0, i] / (k + alpha * (a[0, lo : hi + 1] ** 2).sum(0)) ** beta
    assert torch.allclose(b[0, i], expect, rtol=1e-5)


@pytest.mark.parametrize("name", ["lenet5", "alexnet_tv"])  # alexnet: in the layout test
def test_forward_finite(name: str) -> None:
    spec = get_spec(name)
    with torch.no_grad():
        out = get_model(name)(torch.randn(2, *spec.input_shape))
    assert tuple(out.shape) == (2, spec.num_classes) and torch.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "vgg11",
        "vgg11_lrn",
        "vgg13",
        "vgg16_c",
        "vgg16",
        "vgg19",
        "vgg11_bn",
        "vgg13_bn",
        "vgg16_bn",
        "vgg19_bn",
    ],  # fmt: skip
)
def test_forward_finite_vgg(name: str) -> None:
    # 2 x 7.6-19.6 G MACs each on the CPU: slow. The meta-device test covers shapes by default.
    spec = get_spec(name)
    with torch.no_grad():
        out = get_model(name)(torch.randn(2, *spec.input_shape))
    assert tuple(out.shape) == (2, 1000) and torch.isfinite(out).all()


# ---- VGG -------------------------------------------------------------------------------


def test_vgg_configurations() -> None:
    def convs(name: str) -> list[tuple[int, int]]:
        return [(m.out_channels, m.kernel_size[0]) for m in _meta_model(name).modules()
                if isinstance(m, nn.Conv2d)]  # fmt: skip

    assert [len(convs(n)) for n in ("vgg11", "vgg13", "vgg16_c", "vgg16", "vgg19")] == [
        8, 10, 13, 13, 16,
    ]  # fmt: skip
    c, d = convs("vgg16_c"), convs("vgg16")
    assert [i for i, (cc, dd) in enumerate(zip(c, d, strict=True)) if cc != dd] == [6, 9, 12]
    assert all(c[i][1] == 1 for i in (6, 9, 12))
    lrn = _meta_model("vgg11_lrn").features
    assert isinstance(lrn[2], nn.LocalResponseNorm) and isinstance(lrn[1], nn.ReLU)
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in lrn) == 1
    # The seed's VGG-16 table: weights (no bias) of the first convs.
    w = [m.weight.numel() for m in _meta_model("vgg16").features if isinstance(m, nn.Conv2d)]
    assert w[:4] == [1_728, 36_864, 73_728, 147_456]


# ---- registry, init, weights -----------------------------------------------------------


def test_register_twice_raises() -> None:
    with pytest.raises(ValueError, match="vgg16"):
        register_model(get_spec("vgg16"))(lambda **kw: nn.Identity())


@pytest.mark.parametrize("name", ["lenet5", pytest.param("alexnet_tv", marks=pytest.mark.slow)])
def test_seeded_init_is_deterministic(name: str) -> None:
    a, b = get_model(name, seed=3).state_dict(), get_model(name, seed=3).state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    c = get_model(name, seed=4).state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_lenet_prototypes_do_not_depend_on_the_seed() -> None:
    a, c = get_model("lenet5", seed=3).state_dict(), get_model("lenet5", seed=4).state_dict()
    assert not torch.equal(a["c3.weight"], c["c3.weight"])
    assert torch.equal(a["output.prototypes"], c["output.prototypes"])  # fixed, seed-free


def test_weights_round_trip(tmp_path) -> None:
    src = get_model("lenet5", seed=1)
    path = tmp_path / "lenet5.pt"
    torch.save(src.state_dict(), path)
    dst = get_model("lenet5", seed=0)
    load_weights(dst, path)
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(dst(x), src(x))
    via_get = get_model("lenet5", weights=path)
    assert torch.equal(via_get(x), src(x))


def test_weights_mismatch_names_the_key(tmp_path) -> None:
    state = get_model("lenet5").state_dict()
    state["c3.kernels"] = state.pop("c3.weight")
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"missing 'c3\.weight'.*unexpected 'c3\.kernels'"):
        load_weights(get_model("lenet5"), path)
    # A different head: the fixed prototypes' shape differs and is named.
    torch.save(get_model("lenet5", num_classes=5).state_dict(), path)
    with pytest.raises(WeightsError, match=r"output\.prototypes"):
        load_weights(get_model("lenet5"), path)


def test_tv_state_dict_layout_on_meta() -> None:
    # Same keys in the same order as torchvision's builders (the fixture test checks shapes).
    keys = list(_meta_model("alexnet_tv").state_dict())
    assert keys[:2] == ["features.0.weight", "features.0.bias"]
    assert keys[-2:] == ["classifier.6.weight", "classifier.6.bias"]
    bn = _meta_model("vgg11_bn").state_dict()
    assert tuple(bn["features.1.running_mean"].shape) == (64,)
    assert "features.1.num_batches_tracked" in bn
    assert tuple(bn["classifier.0.weight"].shape) == (4096, 25088)


def test_safetensors_weights_load_and_junk_is_one_line(tmp_path) -> None:
    from safetensors.torch import save_file

    src = get_model("lenet5", seed=1)
    path = tmp_path / "lenet5.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(get_model("lenet5", weights=path)(x), src(x))
    renamed = tmp_path / "weights.bin"  # recognised by its header, whatever its name
    renamed.write_bytes(path.read_bytes())
    assert torch.equal(get_model("lenet5", weights=renamed)(x), src(x))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(WeightsError, match="cannot read weights"):
        load_weights(get_model("lenet5"), bad)
