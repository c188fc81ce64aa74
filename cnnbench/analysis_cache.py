"""The zoo listing (spec + params + MACs per model), cached on disk.

Analysing all models takes several seconds (and importing the zoo imports torch), so the
listing is cached under ``cache_dir()/analysis``, keyed by a hash of the zoo's and the analysis'
source files and the installed torch version. A warm cache answers without importing torch.
A cache file that does not parse or whose rows are malformed is ignored and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any

from cnnbench.artifacts import atomic_write_json, cache_dir
from cnnbench.errors import CnnbenchError
from cnnbench.models import get_spec, list_models, user_model
from cnnbench.progress import warn

CACHE_VERSION = 1
_HERE = Path(__file__).resolve().parent
_INT_FIELDS = ("params", "params_all", "macs", "activations", "num_classes")


def cache_key() -> str:
    """sha256 (16 hex) of the model and analysis sources, the torch version and this format."""
    files = sorted((_HERE / "models").glob("*.py"))
    ours = (
        "analysis.py",
        "analysis_trace.py",
        "receptive_field.py",
        "meta_fast.py",
        "analysis_cache.py",
    )
    files += [_HERE / f for f in ours]
    h = hashlib.sha256(f"v{CACHE_VERSION}|torch {_torch_version()}".encode())
    for f in files:
        h.update(f"\0{f.name}\0".encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def cache_path(key: str | None = None) -> Path:
    """Where the listing for ``key`` (default: the current key) is cached."""
    return cache_dir() / "analysis" / f"zoo-{key or cache_key()}.json"


def summarize(name: str) -> dict[str, Any]:
    """One listing row: the spec's fields plus params, MACs and activations at its input shape."""
    from cnnbench.analysis import analyze  # torch-bound: imported where used, as torch is

    spec = get_spec(name)
    totals = analyze(name).totals
    return {
        "name": spec.name,
        "family": spec.family,
        "input_shape": list(spec.input_shape),
        "num_classes": spec.num_classes,
        "params": totals["params"],
        "params_all": totals["params_all"],
        "macs": totals["macs"],
        "gmacs": round(totals["macs"] / 1e9, 3),
        "activations": totals["activations"],
        "top1": spec.top1,
        "top1_source": spec.top1_source,
        "imagenet": spec.imagenet,
        "torchvision": spec.torchvision,
    }


def zoo_listing(*, imagenet_only: bool = False, use_cache: bool = True) -> list[dict[str, Any]]:
    """Every registered model's row, in registration order (from the cache when it is valid)."""
    key = cache_key()
    path = cache_path(key)
    rows = _read(path, key) if use_cache else None
    if rows is None:
        # the zoo's own models (a user's model, named in this process, is not part of it)
        rows = [summarize(n) for n in list_models() if user_model(n) is None]
        if use_cache:
            _write(path, key, rows)
    return [r for r in rows if r["imagenet"] or not imagenet_only]


def _torch_version() -> str:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        import torch

        return str(torch.__version__)


def _read(path: Path, key: str) -> list[dict[str, Any]] | None:
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("key") != key or doc.get("version") != CACHE_VERSION:
            raise ValueError("key mismatch")
        rows = doc["models"]
        if not isinstance(rows, list) or not rows or not all(_valid(r) for r in rows):
            raise ValueError("malformed rows")
        return rows
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        warn(f"ignoring corrupt analysis cache {path}; rebuilding it")
        return None


def _valid(row: Any) -> bool:
    return (
        isinstance(row, dict)
        and isinstance(row.get("name"), str)
        and isinstance(row.get("family"), str)
        and isinstance(row.get("imagenet"), bool)
        and all(isinstance(row.get(f), int) and row[f] >= 0 for f in _INT_FIELDS)
        and isinstance(row.get("input_shape"), list)
        and len(row["input_shape"]) == 3
        and all(isinstance(v, int) and v > 0 for v in row["input_shape"])
    )


def _write(path: Path, key: str, rows: list[dict[str, Any]]) -> None:
    try:
        atomic_write_json(path, {"key": key, "version": CACHE_VERSION, "models": rows})
    except (OSError, CnnbenchError) as exc:  # a read-only cache only costs speed
        warn(f"cannot write analysis cache {path}: {exc}")
        return
    for stale in path.parent.glob("zoo-*.json"):  # listings of older sources are never read
        if stale != path:
            stale.unlink(missing_ok=True)
