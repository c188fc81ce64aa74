"""Batch ranges (min/opt/max), shared by export (dynamic axes), engines and the harness."""

from __future__ import annotations

from dataclasses import dataclass

from cnnbench.limits import BATCH


@dataclass(frozen=True)
class BatchRange:
    """The batch sizes an engine must serve: min ≤ opt ≤ max (a TensorRT optimisation profile)."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        for name in ("min", "opt", "max"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"batch {name} must be a positive integer, got {v!r}")
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"batch range must satisfy min <= opt <= max, got {self}")

    @classmethod
    def fixed(cls, n: int) -> BatchRange:
        return cls(n, n, n)

    @classmethod
    def parse(cls, text: str) -> BatchRange:
        """Parse ``N`` or ``MIN:OPT:MAX`` (each within :data:`cnnbench.limits.BATCH`); raise
        ValueError with the offending text."""
        parts = text.split(":")
        try:
            nums = [int(p) for p in parts if len(p.strip()) <= 20]
        except ValueError:
            raise ValueError(f"batch must be N or MIN:OPT:MAX integers, got {text!r}") from None
        if len(nums) != len(parts):
            raise ValueError(f"batch must be N or MIN:OPT:MAX integers, got {text[:40]!r}")
        if any(n > BATCH.hi for n in nums):
            raise ValueError(f"batch must be <= {int(BATCH.hi)}, got {text[:40]!r}")
        if len(nums) == 1:
            return cls.fixed(nums[0])
        if len(nums) != 3:
            raise ValueError(f"batch must be N or MIN:OPT:MAX, got {text!r}")
        return cls(*nums)

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}"
