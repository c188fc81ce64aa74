"""The engine protocol: the smallest interface a benchmark needs (after MLPerf's backends and
Polygraphy's runners).

Lifecycle: ``Engine(options)`` → ``load(artifact, batches)`` → ``infer(batch)`` … → ``close()``;
an engine is a context manager that closes itself. For timing, ``infer`` is split in three so
that device-only time can be measured apart from host↔device copies:
``infer(x) == to_host(run(stage(x)))``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cnnbench.batch import BatchRange
from cnnbench.errors import InvalidInputError

if TYPE_CHECKING:
    from cnnbench.models.spec import ModelSpec

__all__ = ["PRECISIONS", "Artifact", "BatchRange", "Engine", "EngineOptions"]

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class Artifact:
    """What an engine loads: a model at a precision, as ONNX (file) and/or PyTorch (zoo name).

    ``onnx_path`` is the verified ONNX file of this precision (onnx-based engines);
    ``weights`` the state dict for the torch engine (None: seeded init).
    """

    model: str
    precision: str
    input_shape: tuple[int, int, int]
    num_classes: int
    onnx_path: Path | None = None
    weights: Path | None = None
    input_name: str = "input"
    sha256: str | None = None
    seed: int = 0

    @classmethod
    def for_spec(
        cls,
        spec: ModelSpec,
        precision: str,
        *,
        onnx_path: Path | None = None,
        weights: str | Path | None = None,
        sha256: str | None = None,
        seed: int = 0,
    ) -> Artifact:
        """The artifact of zoo model ``spec`` at ``precision`` (shape and classes from the spec)."""
        return cls(
            model=spec.name,
            precision=precision,
            input_shape=spec.input_shape,
            num_classes=spec.num_classes,
            onnx_path=onnx_path,
            weights=Path(weights) if weights is not None else None,
            sha256=sha256,
            seed=seed,
        )

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


@dataclass(frozen=True)
class EngineOptions:
    """Options shared by all engines; engine-specific ones go in ``extra`` (validated there)."""

    device: str = "cpu"
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be cpu or cuda[:N], got {self.device!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")


class Engine(abc.ABC):
    """One runtime. Subclasses set the class attributes and implement load/run."""

    name: ClassVar[str]
    #: precisions this engine can run (a subset of PRECISIONS)
    precisions: ClassVar[tuple[str, ...]]
    #: devices this engine can run on, e.g. ("cpu",) or ("cuda",)
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    #: extra to install when the runtime is missing
    extra: ClassVar[str | None] = None
    #: the engine-specific keys EngineOptions.extra may hold
    option_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: EngineOptions | None = None) -> None:
        self.options = options or EngineOptions()
        unknown = sorted(set(self.options.extra) - set(self.option_keys))
        if unknown:
            known = ", ".join(self.option_keys) or "none"
            raise InvalidInputError(
                f"unknown {self.name} option(s) {', '.join(unknown)}; known: {known}"
            )
        self.device = self.options.device
        self.artifact: Artifact | None = None
        self.batches: BatchRange | None = None

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        """Devices usable here (a subset of ``devices``); raises RuntimeUnavailableError if none."""
        return cls.devices

    def _accept(self, artifact: Artifact, batches: BatchRange) -> None:
        """Check that this engine serves ``artifact`` on its device, then remember both."""
        if artifact.precision not in self.precisions:
            raise InvalidInputError(
                f"engine {self.name} cannot run {artifact.precision}; "
                f"choose one of {', '.join(self.precisions)}"
            )
        kind = self.device.split(":")[0]
        if kind not in self.devices:
            raise InvalidInputError(
                f"engine {self.name} does not run on {self.device}; "
                f"choose --device {' or '.join(self.devices)}"
            )
        self.artifact, self.batches = artifact, batches

    # ---- identity -------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def runtime_version(cls) -> str:
        """Version of the wrapped runtime; raises RuntimeUnavailableError when it is missing."""

    @property
    def version(self) -> str:
        return self.runtime_version()

    # ---- lifecycle ------------------------------------------------------------------------
    @abc.abstractmethod
    def load(self, artifact: Artifact, batches: BatchRange) -> None:
        """Prepare to serve ``batches`` of ``artifact``; heavy work happens here, not in infer."""

    def stage(self, batch: np.ndarray) -> Any:
        """Host → device copy of one input batch (identity on the CPU)."""
        return batch

    @abc.abstractmethod
    def run(self, staged: Any) -> Any:
        """Compute on a staged input; the result may stay on the device."""

    def to_host(self, out: Any) -> np.ndarray:
        """Device → host copy of a result (identity on the CPU)."""
        return np.asarray(out)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """A batch in (N, C, H, W float32), logits out (N, classes).

        The caller owns the returned array, except with the null engine, whose results are views
        of one preallocated buffer.
        """
        return self.to_host(self.run(self.stage(batch)))

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on the CPU)."""

    def memory(self) -> dict[str, float]:
        """Engine-reported memory figures in MB, each named for what it is."""
        return {}

    def effective_precision(self) -> str | None:
        """The precision that actually computes (e.g. ``bf16`` when a runtime downcasts FP32)."""
        return self.artifact.precision if self.artifact else None

    def describe(self) -> dict[str, Any]:
        """What actually ran: effective precision, providers, threads, options.

        Subclasses extend this dict. ``effective_precision`` (also under ``precision``) is what
        computed, ``artifact_precision`` the file's.
        """
        art = self.artifact
        eff = self.effective_precision()
        return {
            "engine": self.name,
            "version": self.version,
            "device": self.device,
            "artifact_precision": art.precision if art else None,
            "effective_precision": eff,
            "precision": eff,
            "batches": str(self.batches) if self.batches else None,
        }

    def close(self) -> None:
        """Release the runtime's resources. Safe to call twice."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
