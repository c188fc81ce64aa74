"""Engine registry. Resolution is lazy: importing ``engines`` imports no runtime."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnnbench.errors import CnnbenchError
from cnnbench.naming import lookup

if TYPE_CHECKING:
    from cnnbench.engines.base import Engine, EngineOptions

# name -> "module:Class"; the module is imported only when the engine is asked for.
_ENGINES: dict[str, str] = {
    "torch": "cnnbench.engines.torch_engine:TorchEngine",
    "onnxruntime": "cnnbench.engines.onnxruntime_engine:OrtEngine",
    "openvino": "cnnbench.engines.openvino_engine:OpenVinoEngine",
    "tensorrt": "cnnbench.engines.tensorrt_engine:TensorRTEngine",
    "null": "cnnbench.engines.null_engine:NullEngine",
}
ALIASES = {"ort": "onnxruntime", "trt": "tensorrt", "ov": "openvino", "pytorch": "torch"}


def engine_names() -> list[str]:
    """Canonical engine names."""
    return list(_ENGINES)


def canonical(name: str) -> str:
    """Resolve an alias (ort, trt, ov) to its canonical name, or raise UnknownNameError."""
    name = ALIASES.get(name, name)
    lookup("engine", name, {**_ENGINES, **{a: "" for a in ALIASES}})
    return name


def get_engine_class(name: str) -> type[Engine]:
    """The Engine subclass for ``name`` (aliases allowed). Imports its module now."""
    module, _, cls = _ENGINES[canonical(name)].partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def create(name: str, options: EngineOptions | None = None) -> Engine:
    """An unloaded engine ``name`` (aliases allowed) with ``options``."""
    return get_engine_class(name)(options)


@dataclass(frozen=True)
class Availability:
    """One row of ``cnnbench engines``."""

    name: str
    available: bool
    version: str | None
    devices: tuple[str, ...]
    precisions: tuple[str, ...]
    reason: str | None = None
    extra: str | None = None

    @property
    def install(self) -> str | None:
        """The command that installs the missing runtime, when an extra provides it."""
        return f"pip install 'cnnbench[{self.extra}]'" if self.extra else None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "available": self.available,
            "version": self.version,
            "devices": list(self.devices),
            "precisions": list(self.precisions),
            "reason": self.reason,
            "install": None if self.available else self.install,
        }


def probe(name: str) -> Availability:
    """Whether engine ``name`` can run here, and if not, why and which extra installs it."""
    cls = get_engine_class(name)
    try:
        version = cls.runtime_version()
        devices = cls.available_devices()
        return Availability(
            cls.name, True, version, tuple(devices), cls.precisions, None, cls.extra
        )
    except (ImportError, OSError, CnnbenchError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return Availability(cls.name, False, None, cls.devices, cls.precisions, reason, cls.extra)


def probe_all() -> list[Availability]:
    """``probe`` for every engine, in registry order."""
    return [probe(n) for n in _ENGINES]
