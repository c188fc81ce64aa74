"""What the report reads and draws: result rows, zoo entries, and how a row is classified.

The lowest module of the report: :mod:`bench.report.build` (the comparison), :mod:`bench.report.plots` and
:mod:`bench.report.html` import it, and it imports none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cnnbench.values import blank, num

__all__ = ["Row", "ZooEntry", "blank", "cell_of", "invalid", "is_accuracy_row", "num"]


def invalid(row: Mapping[str, Any]) -> bool:
    """A measured row whose verdict is invalid (rows from before verdicts count as valid)."""
    v = row.get("valid")
    return v is not None and v != "" and str(v).strip().lower() in ("false", "0", "no")


Row = dict[str, Any]


def is_accuracy_row(row: Mapping[str, Any]) -> bool:
    """A row written by ``cnnbench eval`` (measured top-1), not a timing cell."""
    return row.get("scenario") == "accuracy" or (
        num(row.get("top1")) is not None and row.get("accuracy_source") == "measured"
    )


def cell_of(row: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(model, engine, precision, device) of a row."""
    return tuple(str(row.get(k) or "") for k in ("model", "engine", "precision", "device"))  # type: ignore[return-value]


@dataclass(frozen=True)
class ZooEntry:
    """What the report needs about one zoo model, independent of any run."""

    name: str
    family: str
    params: int | None
    macs: int | None
    top1: float | None
    top1_source: str | None
    imagenet: bool
