"""A plain dict registry of model builders (after torchvision's ``models/_api.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def list_models(*, imagenet_only: bool = False) -> list[str]:
    """Registered model names in registration order (optionally only ImageNet classifiers)."""
    _ensure_loaded()
    return [n for n, e in _REGISTRY.items() if e.spec.imagenet or not imagenet_only]


def get_spec(name: str) -> ModelSpec:
    """The ModelSpec of ``name``; unknown names raise UnknownNameError with suggestions."""
    _ensure_loaded()
    return lookup("model", name, _REGISTRY).spec


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
