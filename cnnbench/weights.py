"""Loading state dicts safely and strictly."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from cnnbench.artifacts import require_file
from cnnbench.errors import WeightsError, first_line

if TYPE_CHECKING:
    from torch import nn


def read_state_dict(path: str | Path) -> dict:
    """Read a state dict with ``weights_only=True``; unwraps {'state_dict': ...} / {'model': ...}."""
    import torch

    p = require_file(path, "weights file")
    if not zipfile.is_zipfile(p):  # torch.save writes a zip archive; anything else is not one
        raise WeightsError(
            f"cannot read weights {p}: not a torch checkpoint (truncated or another format); "
            "pass a state dict saved with torch.save"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own text goes on to suggest weights_only=False, which we never do
        raise WeightsError(
            f"{p} is not a plain state dict: it holds pickled objects that a weights-only load "
            "refuses (cnnbench never unpickles code); save model.state_dict() with torch.save"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise WeightsError(
            f"cannot read weights {p} (truncated or not a torch checkpoint: "
            f"{first_line(exc, 120)}); pass a state dict saved with torch.save"
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsError(f"{p} does not hold a state dict (found {type(obj).__name__})")
    return obj


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load ``path`` into ``model`` strictly; a mismatch names the first missing/unexpected keys."""
    state = read_state_dict(path)
    check_match(model, state, path)
    model.load_state_dict(state, strict=True)


def check_match(model: nn.Module, state: dict, path: str | Path) -> None:
    """Raise WeightsError unless ``state`` has exactly ``model``'s keys and shapes (the model
    may live on the meta device: only shapes are read)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {missing[0]!r} (+{len(missing) - 1} more)")
        if unexpected:
            parts.append(f"unexpected {unexpected[0]!r} (+{len(unexpected) - 1} more)")
        raise WeightsError(f"weights {path} do not match the model: " + ", ".join(parts))
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise WeightsError(
                f"weights {path} do not match the model: {k!r} has shape "
                f"{tuple(state[k].shape)}, expected {tuple(v.shape)}"
            )
