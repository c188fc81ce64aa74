"""The largest batch that fits: doubling until a trial runs out of memory, then a binary search
between the last batch that ran and the first that did not.

Each trial is one cell, measured briefly in its own process (an out-of-memory error leaves a
CUDA context fragmented, so the next trial must not share it). A failure that is not
out-of-memory stops the search: it would hide the answer, not be it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cnnbench.errors import CheckFailedError, InvalidInputError
from cnnbench.progress import note

#: how runtimes word a failed device allocation (runner.error_text prefixes "out of memory")
_OOM_WORDS = (
    "out of memory",
    "outofmemoryerror",
    "cudaerrormemoryallocation",
    "failed to allocate",
)


def is_oom(row: dict[str, Any]) -> bool:
    """Whether a trial's row failed for lack of memory."""
    text = str(row.get("error") or "").lower()
    return any(w in text for w in _OOM_WORDS)


@dataclass
class MaxBatch:
    """The outcome: the largest batch that ran (its row), the first that did not, the trials."""

    best: int | None
    best_row: dict[str, Any] | None
    first_failing: int | None
    limit: int
    trials: list[tuple[int, str]] = field(default_factory=list)  # (batch, "ok" | "oom")

    @property
    def hit_limit(self) -> bool:
        return self.best == self.limit

    def fields(self) -> dict[str, Any]:
        return {
            "max_batch": self.best,
            "max_batch_first_oom": self.first_failing,
            "max_batch_limit": self.limit,
            "max_batch_trials": json.dumps(self.trials),
        }


def find_max_batch(
    trial: Callable[[int], dict[str, Any]], *, start: int = 1, limit: int = 4096
) -> MaxBatch:
    """Search the largest batch in ``start..limit`` for which ``trial(batch)`` has no error.

    Doubling from ``start`` until a trial is out of memory (or ``limit`` is reached), then a
    binary search in between. Raises CheckFailedError if a trial fails for another reason, and
    when even ``start`` does not fit.
    """
    if not 1 <= start <= limit:
        raise InvalidInputError(f"the batch search needs 1 <= start <= limit, got {start}..{limit}")
    result = MaxBatch(None, None, None, limit)

    def attempt(b: int) -> bool:
        row = trial(b)
        if not row.get("error"):
            result.trials.append((b, "ok"))
            if result.best is None or b > result.best:
                result.best, result.best_row = b, row
            note(f"max batch: {b} fits")
            return True
        if is_oom(row):
            result.trials.append((b, "oom"))
            note(f"max batch: {b} is out of memory")
            return False
        raise CheckFailedError(f"batch {b} failed, not for memory: {row['error']}")

    b = start
    hi: int | None = None
    while True:
        if not attempt(b):
            hi = b
            break
        if b == limit:
            break
        b = min(b * 2, limit)
    if result.best is None:
        raise CheckFailedError(f"even batch {start} does not fit in device memory")
    if hi is not None:
        lo = result.best
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if attempt(mid):
                lo = mid
            else:
                hi = mid
        result.first_failing = hi
    return result
