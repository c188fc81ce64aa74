"""The null engine: returns a preallocated output, so a run measures the harness's own overhead."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from cnnbench import __version__
from cnnbench.engines.base import Artifact, BatchRange, Engine
from cnnbench.precision import PRECISIONS, Precision
from cnnbench.values import mib


class NullEngine(Engine):
    """Does no inference: ``infer`` returns a view of a preallocated (N, classes) zero array."""

    name: ClassVar[str] = "null"
    # It computes nothing, so it stands in for the harness of any precision.
    precisions: ClassVar[tuple[Precision, ...]] = PRECISIONS
    loads_onnx: ClassVar[bool] = False
    # It never touches a device, so it can stand in for any device's harness overhead.
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")

    _out: np.ndarray | None = None

    @classmethod
    def runtime_version(cls) -> str:
        return __version__

    def load(self, artifact: Artifact, batches: BatchRange) -> None:
        self._accept(artifact, batches)
        self._out = np.zeros((batches.max, artifact.num_classes), dtype=np.float32)

    def run(self, staged: Any) -> np.ndarray:
        assert self._out is not None, "load() first"
        return self._out[: len(staged)]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self._out[: len(batch)]  # type: ignore[index]

    def memory(self) -> dict[str, float]:
        return {"output_buffer_mb": mib(self._out.nbytes) if self._out is not None else 0.0}

    def close(self) -> None:
        self._out = None
