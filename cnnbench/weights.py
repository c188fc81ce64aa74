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


def _is_safetensors(p: Path) -> bool:
    """The safetensors layout: an 8-byte little-endian header length, then a JSON header."""
    try:
        with open(p, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1


def _read_safetensors(p: Path) -> dict:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise WeightsError(f"{p} is a .safetensors file; pip install safetensors") from None
    try:
        return dict(load_file(str(p), device="cpu"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"cannot read weights {p}: {first_line(exc, 160)}") from None


def read_state_dict(path: str | Path) -> dict:
    """Read a state dict: a torch checkpoint with ``weights_only=True`` (unwrapping
    {'state_dict': ...} / {'model': ...}), or a ``.safetensors`` file (tensors only, no code
    by design). Nothing is ever unpickled beyond tensors and plain containers."""
    import torch

    p = require_file(path, "weights file")
    if p.suffix == ".safetensors" or _is_safetensors(p):
        obj: object = _read_safetensors(p)
        if not obj:
            raise WeightsError(f"{p} holds no tensors")
        return obj  # type: ignore[return-value]
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
    """Load ``path`` into ``model`` strictly; a mismatch names the first missing/unexpected keys.

    A checkpoint in another project's layout is first mapped by the model's own
    ``adapt_state_dict(state)`` where it has one (the Inception models read timm's)."""
    state = adapt(model, read_state_dict(path), path)
    check_match(model, state, path)
    model.load_state_dict(state, strict=True)


def adapt(model: nn.Module, state: dict, path: str | Path) -> dict:
    """``state`` in ``model``'s own keys: as it is when they match, else mapped by the model's
    ``adapt_state_dict`` (which returns None for a layout it does not know)."""
    own = model.state_dict()
    if state.keys() == own.keys():
        return state
    adapter = getattr(model, "adapt_state_dict", None)
    if adapter is None:
        return state
    try:
        mapped = adapter(state)
    except ValueError as exc:
        raise WeightsError(f"weights {path} do not map onto the model: {exc}") from None
    return state if mapped is None else mapped


def positional_map(own: dict, theirs: dict, *, what: str) -> dict:
    """``theirs`` renamed to ``own``'s keys, tensor by tensor in order: for checkpoints of a
    network whose modules are registered in the same order as ours (so concatenated channels
    line up) under other names. Every pair must agree in shape and in the last key part
    (weight, bias, running_mean, ...); the first disagreement is a ValueError naming both."""
    if len(own) != len(theirs):
        raise ValueError(f"{what} has {len(theirs)} tensors, the model {len(own)}")
    out = {}
    for (k, v), (tk, tv) in zip(own.items(), theirs.items(), strict=True):
        if k.rsplit(".", 1)[-1] != tk.rsplit(".", 1)[-1] or tuple(v.shape) != tuple(tv.shape):
            raise ValueError(
                f"{what} tensor {tk!r} {tuple(tv.shape)} does not fit {k!r} {tuple(v.shape)}"
            )
        out[k] = tv
    return out


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
