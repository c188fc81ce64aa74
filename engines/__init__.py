"""Engine registry. Importing it imports no runtime: each engine module imports its runtime
(torch, onnxruntime, openvino, tensorrt) inside the methods that use it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cnnbench.engines.base import Engine, EngineOptions
from cnnbench.engines.null_engine import NullEngine
from cnnbench.engines.onnxruntime_engine import OrtEngine
from cnnbench.engines.openvino_engine import OpenVinoEngine
from cnnbench.engines.tensorrt_engine import TensorRTEngine
from cnnbench.engines.torch_engine import TorchEngine
from cnnbench.errors import CnnbenchError, InvalidInputError
from cnnbench.naming import lookup
from cnnbench.precision import Precision

_ENGINES: dict[str, type[Engine]] = {
    cls.name: cls for cls in (TorchEngine, OrtEngine, OpenVinoEngine, TensorRTEngine, NullEngine)
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
    """The Engine subclass for ``name`` (aliases allowed)."""
    return _ENGINES[canonical(name)]


def default_device(name: str) -> str:
    """``cpu``, unless engine ``name`` runs only on a GPU (tensorrt): then ``cuda``."""
    return "cpu" if "cpu" in get_engine_class(name).devices else "cuda"


#: the devices an engine may be asked for: ``cpu``, ``cuda`` or ``cuda:N``
DEVICE_HELP = "cpu, cuda or cuda:N"


def parse_device(text: str) -> str:
    """``text`` as a device name (``cpu``, ``cuda``, ``cuda:N``), or a one-line error: how
    every edge (a flag, a sweep file, a request) reads a device."""
    dev = str(text).strip().lower()
    # a device index of at most 4 digits: a longer one is no GPU, and no int() of it overflows
    if dev in ("cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit() and len(dev) <= 9):
        return dev
    raise InvalidInputError(f"device must be {DEVICE_HELP}, got {text!r}")


def parse_threads(value: object) -> int:
    """An intra-op thread count (an integer >= 1), or a one-line error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"threads must be an integer >= 1, got {value!r}")
    return value


def check_options(name: str, device: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Engine ``name``'s options ``given`` typed by its schema and checked against ``device``,
    without making an engine (see :meth:`Engine.check_options`)."""
    return get_engine_class(name).check_options(device, given)


def graph_defaults(name: str, device: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Engine ``name``'s typed ``options`` with CUDA graphs on where the engine can replay
    them (a ``cuda_graphs`` option) and the options neither set it nor compile (torch.compile
    records its own graphs): what the gpu_compute timing mode means by default."""
    cls = get_engine_class(name)
    if "cuda_graphs" not in {o.name for o in cls.option_schema}:
        return dict(options)
    if "cuda_graphs" in options or options.get("compile"):
        return dict(options)
    return cls.check_options(device, {**options, "cuda_graphs": True})


def create(name: str, options: EngineOptions | None = None) -> Engine:
    """An unloaded engine ``name`` (aliases allowed) with ``options``: the Python API's way in,
    so the device, threads and engine options are checked here, once."""
    cls = get_engine_class(name)
    options = options or EngineOptions()
    threads = None if options.threads is None else parse_threads(options.threads)
    device = parse_device(options.device)
    return cls(EngineOptions(device, threads, cls.check_options(device, options.extra)))


@dataclass(frozen=True)
class Availability:
    """One row of ``cnnbench engines``."""

    name: str
    available: bool
    version: str | None
    devices: tuple[str, ...]
    #: per device, the precisions the engine runs there (only those the export path produces)
    precisions_by_device: dict[str, tuple[Precision, ...]]
    reason: str | None = None
    extra: str | None = None

    @property
    def precisions(self) -> tuple[Precision, ...]:
        """The precisions it runs on at least one of ``devices``."""
        have = {p for ps in self.precisions_by_device.values() for p in ps}
        return tuple(p for p in Precision if p in have)

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
            "precisions_by_device": {d: list(ps) for d, ps in self.precisions_by_device.items()},
            "reason": self.reason,
            "install": None if self.available else self.install,
        }


def probe(name: str) -> Availability:
    """Whether engine ``name`` can run here, and if not, why and which extra installs it."""
    cls = get_engine_class(name)
    try:
        version = cls.runtime_version()
        devices = tuple(cls.available_devices())
        by_device = {d: cls.precisions_on(d) for d in devices}
        return Availability(cls.name, True, version, devices, by_device, None, cls.extra)
    except (ImportError, OSError, CnnbenchError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        by_device = {d: cls.precisions_on(d) for d in cls.devices}
        return Availability(cls.name, False, None, cls.devices, by_device, reason, cls.extra)


def probe_all() -> list[Availability]:
    """``probe`` for every engine, in registry order."""
    return [probe(n) for n in _ENGINES]
