"""The engine protocol: the smallest interface a benchmark needs (after MLPerf's backends and
Polygraphy's runners).

Lifecycle: ``Engine(options)`` → ``load(artifact, batches)`` → ``infer(batch)`` … → ``close()``;
an engine is a context manager that closes itself. For timing, ``infer`` is split in three so
that device-only time can be measured apart from host↔device copies:
``infer(x) == to_host(run(stage(x)))``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cnnbench.batch import BatchRange
from cnnbench.engines.executed import ExecutedLayer
from cnnbench.engines.layer_times import LayerTimes
from cnnbench.engines.options import Option, check_options, render
from cnnbench.errors import InvalidInputError
from cnnbench.precision import PRECISIONS, Precision

if TYPE_CHECKING:
    from cnnbench.models.spec import ModelSpec

__all__ = ["PRECISIONS", "Artifact", "BatchRange", "Engine", "EngineOptions", "unsupported"]


@dataclass(frozen=True)
class Artifact:
    """What an engine loads: a model at a precision, as ONNX (file) and/or PyTorch (zoo name).

    ``onnx_path`` is the verified ONNX file of this precision (onnx-based engines);
    ``weights`` the state dict for the torch engine (None: seeded init).
    """

    model: str
    precision: Precision  # the artifact precision: what the file (or the torch model) holds
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
        precision: Precision,
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


@dataclass(frozen=True)
class EngineOptions:
    """Options shared by all engines (``device``: cpu, cuda or cuda:N; ``threads`` >= 1), and
    the engine-specific ones in ``extra``, typed.

    The values are checked where they enter (a flag, a sweep file, a request:
    :func:`cnnbench.engines.parse_device`, :meth:`Engine.check_options`), or by
    :func:`cnnbench.engines.create` for the Python API; an engine made from them trusts them.
    """

    device: str = "cpu"
    threads: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(abc.ABC):
    """One runtime. Subclasses set the class attributes and implement load/run."""

    name: ClassVar[str]
    #: precisions this engine can run on some device; an engine that loads ONNX files lists
    #: only precisions the export path writes a file for (``Precision.has_onnx``)
    precisions: ClassVar[tuple[Precision, ...]]
    #: whether ``load`` needs the artifact's ONNX file (else it builds the zoo model, or nothing)
    loads_onnx: ClassVar[bool] = True
    #: devices this engine can run on, e.g. ("cpu",) or ("cuda",)
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    #: extra to install when the runtime is missing
    extra: ClassVar[str | None] = None
    #: the engine-specific options EngineOptions.extra may hold, typed
    option_schema: ClassVar[tuple[Option, ...]] = ()
    #: whether torch's caching allocator holds all of the engine's device memory (the torch
    #: engine), so ``torch.cuda.max_memory_allocated`` may stand for it when NVML cannot
    allocates_with_torch: ClassVar[bool] = False

    def __init__(self, options: EngineOptions | None = None) -> None:
        # typed and checked where they entered (check_options); an engine trusts them
        self.options = options or EngineOptions()
        self.device = self.options.device
        self.artifact: Artifact | None = None
        self.batches: BatchRange | None = None

    @classmethod
    def check_options(cls, device: str, given: Mapping[str, Any]) -> dict[str, Any]:
        """``given`` (text, YAML or Python values) typed by this engine's option schema and
        checked against ``device``: how every edge checks engine options, without making an
        engine. A bad key, value or combination is a one-line InvalidInputError."""
        typed = check_options(cls.name, cls.option_schema, given)
        cls.check_combination(device, typed)
        return typed

    @classmethod
    def check_combination(cls, device: str, options: Mapping[str, Any]) -> None:
        """Raise InvalidInputError when typed ``options`` cannot go together on ``device``."""

    @classmethod
    def option_text(cls, options: Mapping[str, Any], *, identity_only: bool = False) -> str:
        """``options`` as ``k=v,...`` (only those that change what is measured, if asked)."""
        return render(options, cls.option_schema, identity_only=identity_only)

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        """Devices usable here (a subset of ``devices``); raises RuntimeUnavailableError if none."""
        return cls.devices

    @classmethod
    def precisions_on(cls, device: str) -> tuple[Precision, ...]:
        """The precisions this engine runs on ``device`` (cpu, cuda or cuda:N)."""
        return cls.precisions

    def _accept(self, artifact: Artifact, batches: BatchRange) -> None:
        """Check that this engine serves ``artifact`` on its device, then remember both."""
        if artifact.precision not in self.precisions_on(self.device):
            raise unsupported(
                self.name, artifact.precision, self.device, self.precisions_on(self.device)
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

    def executed_layers(self) -> list[ExecutedLayer] | None:
        """After ``load``: each layer as the runtime ran it (cnnbench.engines.executed), or None
        when this runtime does not say."""
        return None

    def profile_layers(self, batch: np.ndarray, queries: int) -> LayerTimes | None:
        """After ``load``: each layer's time in ``queries`` profiled queries of ``batch``, on a
        profiled session of its own (the timed one is never profiled), as the runtime's
        profiler reports it (cnnbench.engines.layer_times); None when this engine has none."""
        return None

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

    def effective_precision(self) -> Precision | None:
        """The precision that actually computes (e.g. ``bf16`` when a runtime downcasts FP32)."""
        return self.artifact.precision if self.artifact else None

    @property
    def threads(self) -> int | None:
        """The intra-op threads this engine computes with (None on a GPU or when not set)."""
        return self.options.threads

    @property
    def stream(self) -> Any:
        """The ``torch.cuda.Stream`` its device work is queued on, or None (CPU, default stream)."""
        return None

    def describe(self) -> dict[str, Any]:
        """What actually ran: the artifact's and the effective precision, providers, options.

        Subclasses extend this dict. ``artifact_precision`` is the loaded file's (or torch
        model's), ``effective_precision`` what computed; the requested precision is the cell's.
        """
        art = self.artifact
        return {
            "engine": self.name,
            "version": self.version,
            "device": self.device,
            "artifact_precision": art.precision if art else None,
            "effective_precision": self.effective_precision(),
            "threads": self.threads,
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


def unsupported(
    engine: str, precision: Precision, device: str, choices: tuple[Precision, ...]
) -> InvalidInputError:
    """The one error for an engine asked for a precision it cannot run on a device."""
    return InvalidInputError(
        f"engine {engine} cannot run {precision} on {device.split(':')[0]}; "
        f"choose --precision {' or '.join(choices)}"
    )
