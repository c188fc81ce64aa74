"""Small value helpers every layer shares: numbers read back from result cells, sizes in MB."""

from __future__ import annotations

import math
from typing import Any


def blank(v: Any) -> bool:
    """True for None, '' and NaN (how missing values come back from CSV and JSON lines)."""
    return v is None or v == "" or (isinstance(v, float) and math.isnan(v))


def num(v: Any) -> float | None:
    """``v`` as a finite float (numbers and numeric strings), else None; booleans are not numbers."""
    if blank(v) or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def mib(nbytes: int | float) -> float:
    """Bytes -> MB (MiB, 2**20 bytes), rounded to 3 decimals for reports."""
    return round(float(nbytes) / 2**20, 3)
