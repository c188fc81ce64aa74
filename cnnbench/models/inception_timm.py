"""timm's Inception-v4 and Inception-ResNet-v2 weights (and TF-slim's port's) onto the released
layouts of :mod:`cnnbench.models.inception`: their state-dict keys in registration order, then
mapped tensor by tensor."""

from __future__ import annotations

from torch import nn

from cnnbench.weights import positional_map

_LEAVES = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3, "num_batches_tracked": 4}
#: timm's Inception-ResNet-v2 top-level modules in registration order (the others sort by name)
_IRV2_TOP = (
    "conv2d_1a", "conv2d_2a", "conv2d_2b", "conv2d_3b", "conv2d_4a", "mixed_5b", "repeat",
    "mixed_6a", "repeat_1", "mixed_7a", "repeat_2", "block8", "conv2d_7b", "classif",
)  # fmt: skip


def timm_order(key: str) -> tuple:
    """A sort key that puts timm's Inception state-dict keys in its modules' registration
    order: whatever order a file kept (safetensors sorts its keys by name), the positional map
    then sees the order timm's ``state_dict()`` had. Indices sort as numbers, a conv before
    its norm, tensors as torch lists them, the IRv2 stem by ``_IRV2_TOP``, the rest by name."""
    out = []
    for depth, part in enumerate(key.split(".")):
        if depth == 0 and part in _IRV2_TOP:
            out.append((0, _IRV2_TOP.index(part), ""))
        elif part.isdigit():
            out.append((0, int(part), ""))
        elif part in _LEAVES:
            out.append((1, _LEAVES[part], ""))
        elif part in ("conv", "bn"):
            out.append((2, int(part == "bn"), ""))
        else:
            out.append((3, 0, part))
    return tuple(out)


def timm_state_dict(model: nn.Module, state: dict, marker: str, classifier: str) -> dict | None:
    """``state`` mapped from timm's (and TF-slim's port's) layout onto ``model``, or None when
    ``state`` is not in that layout (it lacks ``marker``). Our released layouts register their
    modules in timm's order, so tensors map one to one, checked by shape and kind. TF-slim's
    1001-class heads (class 0: background) lose their first row, as timm does on load."""
    if marker not in state or f"{classifier}.weight" not in state:
        return None
    if getattr(model, "layout", "released") != "released" or getattr(model, "paper", False):
        raise ValueError("timm's weights fit the released layout only")
    state = {k: state[k] for k in sorted(state, key=timm_order)}
    own = model.state_dict()
    fc_rows = own["fc.weight"].shape[0]
    if state[f"{classifier}.weight"].shape[0] == fc_rows + 1:
        for part in ("weight", "bias"):
            state[f"{classifier}.{part}"] = state[f"{classifier}.{part}"][1:]
    return positional_map(own, state, what="timm checkpoint")
