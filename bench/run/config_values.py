"""The values of a sweep file or a service request, checked where they enter: each number
against its bound (:mod:`cnnbench.limits`), each name or path a scalar (a list or a mapping is
never turned into text), each list of a bounded length; every problem one line naming the
source and the key. Used by :mod:`bench.run.sweep_config`."""

from __future__ import annotations

from typing import Any

from cnnbench.errors import CnnbenchError, InvalidInputError
from cnnbench.limits import (
    CI_TARGET,
    GRID_LIST_ITEMS,
    MILLISECONDS,
    MIN_COUNT,
    QPS,
    SECONDS,
    WARMUP_COUNT,
    Bound,
)


def fail(src: str, msg: str) -> InvalidInputError:
    return InvalidInputError(f"config {src}: {msg}")


def list_of(src: str, key: str, v: Any, *, mappings: bool = False) -> list[Any]:
    """A list key's items: at most GRID_LIST_ITEMS, each a scalar (or, with ``mappings``, a
    mapping): a nested list is refused, never turned into text."""
    items = v if isinstance(v, list) else [v] if isinstance(v, (str, int)) else None
    if not items:
        raise fail(src, f"key '{key}' must be a non-empty list")
    if len(items) > GRID_LIST_ITEMS:
        raise fail(src, f"key '{key}' lists {len(items):,} items; at most {GRID_LIST_ITEMS:,}")
    for item in items:
        if not (scalar(item) or (mappings and isinstance(item, dict))):
            raise fail(src, f"key '{key}': {short(item)} is not a name or a number")
    return items


def scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float))


def short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def bounded(src: str, key: str, bound: Bound, v: Any) -> Any:
    """``v`` within ``bound`` (a YAML or JSON number, never text), or one line naming the key."""
    if isinstance(v, str):
        raise fail(src, f"key '{key}': {bound.what} must be {bound.describe()}, got {short(v)}")
    return named(src, key, lambda: bound.check(v))


#: the stop rule's and the server scenario's numbers, and their bounds
NUMBERS = {
    "warmup_count": WARMUP_COUNT, "min_count": MIN_COUNT, "warmup_time": SECONDS,
    "min_time": SECONDS, "max_time": SECONDS, "ci_target": CI_TARGET, "peak_time": SECONDS,
    "target_qps": QPS, "max_queue_delay_ms": MILLISECONDS, "latency_bound_ms": MILLISECONDS,
}  # fmt: skip


def numbers(src: str, key: str, given: dict[str, Any]) -> dict[str, Any]:
    """A ``stop:`` or ``server:`` mapping with each number checked against its bound."""
    out = dict(given)
    for k, v in given.items():
        if k in NUMBERS and v is not None:
            out[k] = bounded(src, f"{key}.{k}", NUMBERS[k], v)
        elif not scalar(v):
            raise fail(src, f"key '{key}.{k}': {short(v)} is not a value")
    return out


def name_or_path(src: str, key: str, v: Any) -> str:
    """A name or a path: a string (or a number, as YAML reads 7 or 1.5), never a list or a
    mapping turned into text."""
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise fail(src, f"key '{key}': {short(v)} is not a name or a path")
    return str(v)


def entry_value(src: str, key: str, v: Any) -> str:
    """A user model entry's value: a scalar, or a short list of numbers (a shape, a mean)."""
    if isinstance(v, list) and len(v) <= 8 and all(scalar(x) for x in v):
        return ",".join(map(str, v))
    return name_or_path(src, f"models.{key}", v)


def named(src: str, key: str, fn: Any) -> Any:
    try:
        return fn()
    except CnnbenchError as exc:
        raise fail(src, f"key '{key}': {exc}") from None


def mapping(src: str, key: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise fail(src, f"key '{key}' must be a mapping")
    return v
