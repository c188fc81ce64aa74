"""The model zoo: ``list_models``, ``get_model``, ``get_spec``."""

from cnnbench.models.registry import (
    adopt_user_model,
    check_weights,
    get_model,
    get_spec,
    list_models,
    register_model,
    register_user_model,
    resolve_weights,
    user_model,
    weights_provenance,
)
from cnnbench.models.spec import ModelSpec, Preprocessing

__all__ = [
    "adopt_user_model",
    "ModelSpec",
    "Preprocessing",
    "check_weights",
    "get_model",
    "get_spec",
    "list_models",
    "register_model",
    "register_user_model",
    "resolve_weights",
    "user_model",
    "weights_provenance",
]
