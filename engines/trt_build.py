"""Building TensorRT engines (10.x and 11.x) from a precision's ONNX file, through the cache.

Networks are strongly typed: TensorRT 10 gets ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``,
TensorRT 11 is always strongly typed. The ONNX file carries the precision (FP16 tensors, INT8
Q/DQ nodes); no precision builder flags and no calibrators are used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnbench.artifacts import atomic_write_bytes, require_file, sha256_file
from cnnbench.batch import BatchRange
from cnnbench.engines.cuda import gpu_identity, require_cuda, use_device
from cnnbench.engines.trt_cache import BuildOptions, BuildTarget, EngineCache, cache_key
from cnnbench.errors import ArtifactError, InvalidInputError, RuntimeUnavailableError, first_line
from cnnbench.export.graph import real_inputs
from cnnbench.progress import StepHistory, Steps, note, warn

TRT_HINT = "pip install 'cnnbench[trt]' on a machine with an NVIDIA GPU"
Shape = tuple[int, ...]


def trt_version() -> str:
    """The installed TensorRT version, or a one-line RuntimeUnavailableError."""
    try:
        import tensorrt
    except ImportError:
        raise RuntimeUnavailableError(f"TensorRT is not installed; {TRT_HINT}") from None
    except OSError as exc:  # the wheel is there but its CUDA libraries are not
        raise RuntimeUnavailableError(f"TensorRT cannot load ({exc}); {TRT_HINT}") from None
    version = getattr(tensorrt, "__version__", None)
    if version is None:  # e.g. only the tensorrt-stubs package: a namespace package, no library
        raise RuntimeUnavailableError(
            f"TensorRT is not installed (only its type stubs); {TRT_HINT}"
        )
    return str(version)


def require_trt(device: str) -> tuple[str, int]:
    """TensorRT's version and the CUDA device index, or one line naming what is missing."""
    version = trt_version()
    return version, require_cuda(device, "TensorRT")


def onnx_input(path: Path) -> tuple[str, tuple[int | str, ...]]:
    """Name and dims (ints, or strings for symbolic dims) of the ONNX graph's first real input."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for inp in real_inputs(model):
        dims = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
            for d in inp.type.tensor_type.shape.dim
        )
        return inp.name, dims
    raise ArtifactError(f"{path} has no graph input")


def profile_shapes(batches: BatchRange, dims: tuple[int | str, ...]) -> tuple[Shape, Shape, Shape]:
    """min/opt/max input shapes for ``batches``, checked against the ONNX input ``dims``."""
    if len(dims) < 2:
        raise InvalidInputError(f"ONNX input must be (N, ...), got dims {dims}")
    rest = dims[1:]
    if not all(isinstance(d, int) and d > 0 for d in rest):
        raise InvalidInputError(f"ONNX input needs fixed non-batch dims for TensorRT, got {dims}")
    batch = dims[0]
    if isinstance(batch, int) and batch > 0 and (batches.min, batches.max) != (batch, batch):
        raise InvalidInputError(
            f"the ONNX file has a fixed batch of {batch}; use --batch {batch} "
            f"or export with a dynamic batch"
        )
    fixed = tuple(int(d) for d in rest)
    return (batches.min, *fixed), (batches.opt, *fixed), (batches.max, *fixed)


def network_flags(trt_module: Any) -> int:
    """Creation flags for a strongly typed network on this TensorRT version."""
    major = int(str(trt_module.__version__).split(".")[0])
    if major >= 11:
        return 0  # always strongly typed; the flag is no longer needed
    return 1 << int(trt_module.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _polygraphy() -> Any:
    """Polygraphy's TensorRT backend (the ``trt`` extra), or a one-line error."""
    try:
        import polygraphy.backend.trt as pg_trt
        from polygraphy.logger import G_LOGGER
    except ImportError:
        raise RuntimeUnavailableError(f"Polygraphy is not installed; {TRT_HINT}") from None
    G_LOGGER.module_severity = G_LOGGER.WARNING  # our own lines say what is being built
    return pg_trt


def build_plan(onnx_path: Path, options: BuildOptions, timing_cache: Path | None) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine with Polygraphy's TensorRT loaders;
    keep the timing cache up to date (written atomically, by us).

    The network is strongly typed (on TensorRT 11 it always is, and the flag is not passed).
    TF32 is off (Polygraphy clears TensorRT's default-on flag when ``tf32=False``): FP32 layers
    compute in FP32. A timing cache that Polygraphy cannot load is removed with a warning and
    the build starts from an empty one; a corrupt cache only ever costs build time.
    """
    import tensorrt as trt

    pg = _polygraphy()
    exceptions = _polygraphy_errors()
    strongly = network_flags(trt) != 0  # False on 11: strongly typed without the flag
    try:
        builder, network, parser = pg.NetworkFromOnnxPath(str(onnx_path), strongly_typed=strongly)()
    except exceptions as exc:
        raise ArtifactError(f"TensorRT cannot parse {onnx_path}: {first_line(exc)}") from None
    tensor = network.get_input(0)
    lo, opt, hi = profile_shapes(options.batches, tuple(tensor.shape[:]))  # -1: dynamic
    pools = None
    if options.workspace_mb is not None:
        pools = {trt.MemoryPoolType.WORKSPACE: options.workspace_mb << 20}
    monitor = progress_monitor(trt, f"build {onnx_path.parent.name}/{onnx_path.name}")

    def make_config(cache: Path | None) -> Any:
        return pg.CreateConfig(
            tf32=False,
            profiles=[pg.Profile().add(tensor.name, min=lo, opt=opt, max=hi)],
            memory_pool_limits=pools,
            builder_optimization_level=options.opt_level,
            # the inspector reports each layer's formats, tactic and ONNX nodes only at DETAILED
            profiling_verbosity=trt.ProfilingVerbosity.DETAILED,
            load_timing_cache=str(cache) if cache is not None and cache.is_file() else None,
            progress_monitor=monitor,
        )(builder, network)

    try:
        config = make_config(timing_cache)
    except Exception as exc:  # an unreadable timing cache: drop it, build without
        if timing_cache is None or not timing_cache.is_file():
            raise ArtifactError(f"TensorRT builder config failed: {first_line(exc)}") from None
        warn(f"TensorRT timing cache {timing_cache} is unreadable ({first_line(exc)}); removed")
        timing_cache.unlink(missing_ok=True)
        try:
            config = make_config(None)
        except Exception as again:
            raise ArtifactError(f"TensorRT builder config failed: {first_line(again)}") from None
    try:
        plan = pg.EngineBytesFromNetwork((builder, network), config=config)()
    except exceptions as exc:
        raise ArtifactError(f"TensorRT failed to build {onnx_path}: {first_line(exc)}") from None
    del parser  # kept alive until the build is done: the network refers to its weights
    if not plan:
        raise ArtifactError(f"TensorRT failed to build {onnx_path}; see its log above")
    cache = config.get_timing_cache() if timing_cache is not None else None
    if timing_cache is not None and cache is not None:
        # replaces a file TensorRT could not read (Polygraphy then attached an empty cache);
        # where TensorRT refused the cache altogether (set_timing_cache returned False, which
        # Polygraphy ignores) there is none to save, and the old file is dropped
        atomic_write_bytes(timing_cache, bytes(cache.serialize()))
    elif timing_cache is not None:
        warn(f"TensorRT kept no timing cache for this build; {timing_cache} removed")
        timing_cache.unlink(missing_ok=True)
    return bytes(plan)


def _polygraphy_errors() -> tuple[type[BaseException], ...]:
    """What Polygraphy raises on a failed parse or build (its loggers' critical errors)."""
    try:
        from polygraphy.exception import PolygraphyException
    except ImportError:  # pragma: no cover - _polygraphy() has failed first
        return (RuntimeError,)
    return (PolygraphyException, RuntimeError)


def progress_monitor(trt_module: Any, label: str, every_s: float = 10.0) -> Any | None:
    """A ``trt.IProgressMonitor`` (TensorRT >= 10.0) that prints the builder's phases on stderr.

    A top-level phase is announced when it starts; while steps complete, a line at most every
    ``every_s`` seconds gives the deepest active phase's step count and an ETA from its rate so
    far. Returns None where the bindings have no progress monitor.
    """
    base = getattr(trt_module, "IProgressMonitor", None)
    if base is None:
        return None

    class _Monitor(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.phases: dict[str, tuple[int, float, str | None]] = {}
            self.last = time.perf_counter()

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.phases[phase_name] = (int(num_steps), time.perf_counter(), parent_phase)
            if parent_phase is None:
                note(f"[{label}] {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            now = time.perf_counter()
            if now - self.last >= every_s and phase_name in self.phases:
                self.last = now
                total, t0, _ = self.phases[phase_name]
                done = int(step) + 1
                eta = (now - t0) / done * max(total - done, 0)
                note(f"[{label}] {phase_name} {done}/{total}, eta {eta:.0f}s for this phase")
            return True  # keep building

        def phase_finish(self, phase_name: str) -> None:
            self.phases.pop(phase_name, None)

    return _Monitor()


@dataclass(frozen=True)
class EngineEntry:
    """A cached engine: where it is, its key, and whether this call built it."""

    path: Path
    key: str
    built: bool
    build_seconds: float
    target: BuildTarget
    options: BuildOptions
    plan: bytes = field(repr=False, default=b"")  # the verified bytes, to deserialize as-is


def ensure_engine(
    onnx_path: Path | str,
    options: BuildOptions,
    *,
    device: str = "cuda",
    cache: EngineCache | None = None,
    rebuild: bool = False,
    timing_cache: str | Path | None = None,
) -> EngineEntry:
    """The cached engine for ``onnx_path`` and ``options``, built (and cached) when needed.

    ``timing_cache``: None for the cache's shared file of this TensorRT and GPU, ``"off"`` for
    none, or a file to read (when present) and update.
    """
    version, index = require_trt(device)
    onnx_path = require_file(onnx_path, "ONNX file")
    name, dims = onnx_input(onnx_path)
    profile_shapes(options.batches, dims)  # fail before any build on a bad range
    gpu = gpu_identity(index)
    target = BuildTarget(
        onnx_sha256=sha256_file(onnx_path),
        trt_version=version,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        input_name=name,
        input_shape=tuple(int(d) for d in dims[1:]),
    )
    cache = cache or EngineCache()
    key = cache_key(target, options)
    cached = None if rebuild else cache.load(key)
    if cached is not None:
        return EngineEntry(cache.engine_path(key), key, False, 0.0, target, options, cached)
    note(f"building TensorRT engine for {onnx_path} ({options.precision}, batch {options.batches})")
    timing: Path | None
    if timing_cache is None:
        timing = cache.timing_cache_path(version, gpu.name, gpu.compute_capability)
    else:
        timing = None if str(timing_cache) == "off" else Path(timing_cache).expanduser()
    steps = Steps(
        f"TensorRT {options.precision}",
        plan=["build"],
        history=StepHistory(
            "trt-build",
            f"{target.onnx_sha256[:16]} {key[:16]}",
            size=onnx_path.stat().st_size,
        ),
    )
    # the builder builds for the current CUDA device: cuda:N's
    with steps.step("build"), use_device(device):
        plan = build_plan(onnx_path, options, timing)
    seconds = steps.timings["build"]
    info = {
        "onnx": str(onnx_path),
        "target": {**target.__dict__, "input_shape": list(target.input_shape)},
        "options": options.to_dict(),
        "build_seconds": round(seconds, 3),
    }
    path = cache.store(key, plan, info)
    note(f"built TensorRT engine in {seconds:.1f}s: {path}")
    return EngineEntry(path, key, True, seconds, target, options, plan)
