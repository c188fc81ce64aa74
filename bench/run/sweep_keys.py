"""The keys of a sweep file (or a service request) that name things: ``engine_options:`` typed
by each engine's schema for its device, and ``models:`` entries that are the user's own model
(an ONNX file relative to the file's folder, a module factory, or a mapping describing one).
One-line errors name the key (``config SRC: key 'K': ...``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cnnbench import engines
from cnnbench.bench.run.config_values import entry_value, fail, mapping, name_or_path, named
from cnnbench.engines import default_device
from cnnbench.models import register_user_model
from cnnbench.models.user import is_user_model


def engine_options(
    src: str, raw: Any, engs: list[str], device: str | None
) -> dict[str, tuple[dict[str, Any], ...]]:
    """``engine_options:``: per engine of the grid, a mapping of options or a list of them,
    each typed by the engine's schema and checked against the engine's device."""
    out: dict[str, tuple[dict[str, Any], ...]] = {}
    given = mapping(src, "engine_options", raw)
    for name, sets_given in given.items():
        e = named(src, "engine_options", lambda n=name: engines.canonical(str(n)))
        if e not in engs:
            raise fail(src, f"key 'engine_options': engine {e} is not in 'engines'")
        sets = sets_given if isinstance(sets_given, list) else [sets_given]
        if not sets or not all(isinstance(g, dict) or g is None for g in sets):
            raise fail(src, f"key 'engine_options.{e}' must be a mapping or a list of mappings")
        dev = device or default_device(e)
        typed = [
            named(
                src,
                f"engine_options.{e}",
                lambda g=g, e=e, d=dev: engines.check_options(e, d, g or {}),
            )
            for g in sets
        ]
        unique = list({json.dumps(t, sort_keys=True): t for t in typed}.values())
        if len(unique) != len(typed):
            raise fail(src, f"key 'engine_options.{e}': the same option set is listed twice")
        out[e] = tuple(unique)
    for e in engs:  # an engine without options: its defaults must suit the device too
        if e not in out:
            named(
                src, "device", lambda e=e: engines.check_options(e, device or default_device(e), {})
            )
    return out


_USER_KEYS = ("model", "name", "input_shape", "mean", "std")


def model_name(src: str, base: Path, item: Any) -> str:
    """A ``models:`` entry as the registry names it: a zoo name; your ONNX file (``x.onnx``,
    relative to the config's folder) or module factory (``pkg.mod:fn``); or a mapping
    ``{model: x.onnx, name: ..., input_shape: 3,64,64, mean: ..., std: ...}``."""
    if isinstance(item, dict):
        unknown = sorted(set(item) - set(_USER_KEYS))
        if unknown or "model" not in item:
            raise fail(src, f"key 'models': an entry's keys are {', '.join(_USER_KEYS)}")
        text = name_or_path(src, "models", item["model"])
        opts = {k: entry_value(src, k, v) for k, v in item.items() if k != "model"}
    else:
        text, opts = name_or_path(src, "models", item), {}
    if not is_user_model(text):
        if opts:
            raise fail(src, f"key 'models': {text} is a zoo model; name, input_shape, mean and "
                        "std describe your own model")  # fmt: skip
        return text
    if text.lower().endswith(".onnx") and not Path(text).is_absolute():
        text = str(base / text)
    return str(named(src, "models", lambda: register_user_model(text, **opts).name))
