"""A plain dict registry of model builders (after torchvision's ``models/_api.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cnnbench.models.user as user
from cnnbench import weights_hub
from cnnbench.errors import InvalidInputError
from cnnbench.models.spec import ModelSpec
from cnnbench.naming import lookup
from cnnbench.weights import adapt, check_match, load_weights, read_state_dict

if TYPE_CHECKING:
    from torch import nn

Builder = Callable[..., "nn.Module"]


@dataclass(frozen=True)
class Entry:
    spec: ModelSpec
    builder: Builder


_REGISTRY: dict[str, Entry] = {}
#: the zoo's names, in registration order, known without importing the zoo (and torch): an
#: unknown name is refused before anything heavy is imported (a test keeps this list true)
ZOO_NAMES = (
    "alexnet", "alexnet_tv", "googlenet", "inception_v4", "inception_resnet_v2", "lenet5",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "vgg11", "vgg11_lrn", "vgg13",
    "vgg16_c", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
)  # fmt: skip


def _known_or_refused(name: str) -> None:
    """Refuse a name that is neither the zoo's nor a user model's, with suggestions, without
    importing the zoo."""
    if name in ZOO_NAMES or user.user_model(name) is not None:
        return
    lookup("model", name, {n: n for n in (*ZOO_NAMES, *user.known())})


def register_model(spec: ModelSpec) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder`` under ``spec.name``. Registering a name twice raises."""

    def wrap(builder: Builder) -> Builder:
        if spec.name in _REGISTRY:
            raise ValueError(f"model '{spec.name}' is already registered")
        _REGISTRY[spec.name] = Entry(spec, builder)
        return builder

    return wrap


def _ensure_loaded() -> None:
    # The zoo modules register themselves on import; import them once, lazily.
    from cnnbench.models import zoo  # noqa: F401

    # user models (an ONNX file, a module factory) named in this process
    known = user.known()
    for name in [n for n, e in _REGISTRY.items() if e.spec.family == user.FAMILY]:
        if name not in known:  # forgotten (user.forget_all)
            del _REGISTRY[name]
    for name, um in known.items():
        entry = _REGISTRY.get(name)
        if entry is not None and entry.spec.family != user.FAMILY:
            raise InvalidInputError(
                f"{um.source} would be named {name!r}, a zoo model's name; give it --name"
            )
        _REGISTRY[name] = Entry(um.spec(), _user_builder(um))


def _user_builder(um: user.UserModel) -> Builder:
    def build(**kwargs: Any) -> nn.Module:
        if um.kind != "module":
            raise InvalidInputError(
                f"{um.name} is an ONNX file ({um.source}): it has no PyTorch module; use an "
                "engine that loads ONNX (onnxruntime, openvino, tensorrt)"
            )
        return user.build_module(um.source)

    return build


def register_user_model(text: str, **options: Any) -> ModelSpec:
    """Resolve ``text`` (``path.onnx`` or ``module:callable``) into a user model, register it
    in this process and return its spec; options: ``input_shape``, ``name``, ``mean``, ``std``.
    Cell specs carry it to child processes (see :func:`adopt_user_model`)."""
    um = user.resolve(text, **options)
    adopt_user_model(um)
    return um.spec()


def adopt_user_model(um: user.UserModel) -> None:
    """Register a user model already read (a cell spec's, in a child process): nothing is
    read again. A zoo model's name is refused."""
    _ensure_loaded()
    taken = _REGISTRY.get(um.name)
    if taken is not None and taken.spec.family != user.FAMILY:
        raise InvalidInputError(
            f"{um.source} would be named {um.name!r}, a zoo model's name; give it --name"
        )
    user.remember(um)  # before it is registered: a clash fails with nothing remembered
    _ensure_loaded()


def user_model(name: str) -> user.UserModel | None:
    """The user model registered as ``name``, or None for zoo models."""
    return user.user_model(name)


def list_models(*, imagenet_only: bool = False) -> list[str]:
    """Registered model names in registration order (optionally only ImageNet classifiers)."""
    _ensure_loaded()
    return [n for n, e in _REGISTRY.items() if e.spec.imagenet or not imagenet_only]


def get_spec(name: str) -> ModelSpec:
    """The ModelSpec of ``name``; unknown names raise UnknownNameError with suggestions."""
    _known_or_refused(name)
    _ensure_loaded()
    return lookup("model", name, _REGISTRY).spec


def resolve_weights(name: str, text: str) -> weights_hub.Weights:
    """``--weights TEXT`` for model ``name``: a file, or torchvision / timm / a URL, fetched
    and hash-checked (cnnbench.weights_hub); where it came from is its ``provenance``."""
    spec = get_spec(name)
    return weights_hub.resolve(
        name, text, torchvision=spec.torchvision, timm_ok=name in weights_hub.TIMM_CONFIGS
    )


def weights_provenance(name: str, weights: weights_hub.Weights | None, seed: int) -> str:
    """A row's ``weights``: the resolved weights' provenance, a user ONNX file's identity, or
    ``seeded-init:SEED``."""
    if weights is not None:
        return weights.provenance
    um = user.user_model(name)
    if um is not None and um.kind == "onnx":
        return um.weights_id
    return weights_hub.seeded(seed)


def check_weights(name: str, path: str | Path) -> None:
    """Fail now, with one line, if ``path`` is not a state dict that loads into model ``name``
    (built on the meta device: no memory, no init), so a sweep fails before its first cell."""
    import torch

    with torch.device("meta"):
        model = get_model(name)
    check_match(model, adapt(model, read_state_dict(path), path), path)


def get_model(
    name: str,
    *,
    weights: str | Path | None = None,
    seed: int = 0,
    eval_mode: bool = True,
    **kwargs: Any,
) -> nn.Module:
    """Build model ``name``.

    Without ``weights`` the initialisation is seeded (``seed``) and deterministic. With weights,
    a state dict is loaded strictly with ``weights_only=True``.
    """
    import torch

    _ensure_loaded()
    entry = lookup("model", name, _REGISTRY)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = entry.builder(**kwargs)
    if weights is not None:
        load_weights(model, weights)
    return model.eval() if eval_mode else model
