"""TensorRT engine (10.x, 11.x): a cached, strongly typed plan run with the named-tensor API.

Buffers are torch CUDA tensors, preallocated for the profile's maximum batch; ``stage`` copies
host->device, ``run`` is ``execute_async_v3`` on the engine's own stream, ``to_host`` copies back.

``options.extra`` (``--engine-opt KEY=VALUE``; see ``OPTIONS``):
    workspace_mb: int, builder workspace pool limit (default: TensorRT's).
    builder_optimization_level: int 0..5 (default: TensorRT's, 3).
    timing_cache: a file to read and update, or off (default: one shared file per TensorRT
        version and GPU in the engine cache, like trtexec's --timingCacheFile).
    rebuild: bool, ignore a cached engine and build again.
    cache_dir: the engine cache folder (default: the cnnbench cache).
    cuda_graphs: bool, replay a CUDA graph of each batch size's enqueue (trtexec's
        --useCudaGraph; on by default with --timing gpu_compute, as trtexec 11 times).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cnnbench.engines.base import Artifact, BatchRange, Engine, EngineOptions
from cnnbench.engines.cuda import cuda_available, device_index, gpu_identity
from cnnbench.engines.executed import ExecutedLayer, trt_inspector_layers
from cnnbench.engines.layer_times import LayerTimes
from cnnbench.engines.options import Option
from cnnbench.engines.trt_build import EngineEntry, ensure_engine, require_trt, trt_version
from cnnbench.engines.trt_cache import MAX_OPT_LEVEL, BuildOptions, EngineCache
from cnnbench.engines.trt_profile import profile_context
from cnnbench.errors import ArtifactError, InvalidInputError
from cnnbench.precision import ONNX_PRECISIONS, Precision
from cnnbench.values import mib

if TYPE_CHECKING:
    import tensorrt as trt
    import torch

OPTIONS = (
    Option("workspace_mb", "int", "builder workspace pool limit in MiB", minimum=1),
    Option("builder_optimization_level", "int", "builder optimisation level (default 3)",
           minimum=0, maximum=MAX_OPT_LEVEL),
    # the timing cache and the engine cache speed up builds; they do not change what is keyed
    Option("timing_cache", "str", "timing cache file, or off", words=("off",), identity=False,
           metavar="PATH", names_path=True),
    Option("rebuild", "bool", "build again, ignoring a cached engine", identity=False),
    Option("cache_dir", "str", "engine cache folder", identity=False, metavar="DIR",
           names_path=True),
    Option("cuda_graphs", "bool", "replay a CUDA graph of each batch size's enqueue"),
)  # fmt: skip
#: the first compute capability with FP8 tensor cores (Ada); Hopper is 9.0
FP8_COMPUTE_CAPABILITY = (8, 9)
# TensorRT DataType names -> torch dtype names (looked up on torch at load)
_TORCH_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "UINT8": "uint8",
}


def engine_device_memory(engine: Any) -> int:
    """Bytes of device memory an execution context of ``engine`` needs:
    ``device_memory_size_v2`` (TensorRT 10.1 on), else the older attribute, which 10.0 has
    and 11 removed (looked up by name, so only a 10.0 engine ever reaches it)."""
    v2 = getattr(engine, "device_memory_size_v2", None)
    return int(v2 if v2 is not None else getattr(engine, "device_memory_size"))  # noqa: B009


class TensorRTEngine(Engine):
    """A deserialized TensorRT engine with one execution context and one CUDA stream."""

    name: ClassVar[str] = "tensorrt"
    option_schema: ClassVar[tuple[Option, ...]] = OPTIONS
    # Strongly typed: the precision is the ONNX file's, so only precisions with a file.
    precisions: ClassVar[tuple[Precision, ...]] = ONNX_PRECISIONS
    devices: ClassVar[tuple[str, ...]] = ("cuda",)
    extra: ClassVar[str | None] = "trt"

    def __init__(self, options: EngineOptions | None = None) -> None:
        super().__init__(options)
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._stream: torch.cuda.Stream | None = None
        self._entry: EngineEntry | None = None
        self._n = 0
        self.cuda_graphs = bool(self.options.extra.get("cuda_graphs", False))
        self._graphs: dict[int, Any] = {}

    @classmethod
    def runtime_version(cls) -> str:
        return trt_version()

    @property
    def stream(self) -> torch.cuda.Stream | None:
        return self._stream

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        require_trt("cuda")
        return ("cuda",)

    @classmethod
    def precisions_on(cls, device: str) -> tuple[Precision, ...]:
        """FP8 (E4M3) convolutions need compute capability 8.9 (Ada) or 9.0+ (Hopper on):
        listed only on such a GPU, or where no GPU can be asked."""
        if not cuda_available():
            return cls.precisions
        major, minor = gpu_identity(device_index(device)).compute_capability.split(".")
        fp8 = (int(major), int(minor)) >= FP8_COMPUTE_CAPABILITY
        return tuple(p for p in cls.precisions if p != Precision.FP8 or fp8)

    def load(self, artifact: Artifact, batches: BatchRange) -> None:
        import tensorrt as trt
        import torch

        self._accept(artifact, batches)
        _, index = require_trt(self.device)
        # TensorRT's runtime, engine and contexts live on the current CUDA device: for cuda:N
        # that must be N before anything is made, and stay N while it runs (one engine per
        # process, so this is set for the process)
        torch.cuda.set_device(index)
        if artifact.onnx_path is None:
            raise InvalidInputError(
                f"tensorrt needs the {artifact.precision} ONNX file of {artifact.model}; "
                f"run: cnnbench build {artifact.model} --precision {artifact.precision}"
            )
        extra = self.options.extra
        try:
            build = BuildOptions(
                artifact.precision,
                batches,
                extra.get("workspace_mb"),
                extra.get("builder_optimization_level"),
            )
        except ValueError as exc:
            raise InvalidInputError(f"tensorrt option: {exc}") from None
        cache = EngineCache(extra.get("cache_dir"))
        entry = ensure_engine(
            artifact.onnx_path,
            build,
            device=self.device,
            cache=cache,
            rebuild=bool(extra.get("rebuild", False)),
            timing_cache=extra.get("timing_cache"),
        )
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        engine = self._runtime.deserialize_cuda_engine(entry.plan)
        if engine is None:  # intact bytes that this TensorRT cannot read: rebuild once
            cache.remove(entry.key)
            entry = ensure_engine(
                artifact.onnx_path,
                build,
                device=self.device,
                cache=cache,
                timing_cache=extra.get("timing_cache"),
            )
            engine = self._runtime.deserialize_cuda_engine(entry.plan)
            if engine is None:
                raise ArtifactError(f"TensorRT cannot deserialize {entry.path}")
        self._entry, self._engine = entry, engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ArtifactError(f"expected one input and one output, got {inputs} / {outputs}")
        self._in_name, self._out_name = inputs[0], outputs[0]
        dev = torch.device("cuda", index)
        in_dtype = self._torch_dtype(engine.get_tensor_dtype(self._in_name))
        out_dtype = self._torch_dtype(engine.get_tensor_dtype(self._out_name))
        torch.cuda.reset_peak_memory_stats(dev)
        # Slices [:n] of a contiguous buffer start at the same address, so the tensor
        # addresses are set once, here; only the input shape changes with the batch.
        self._in = torch.empty((batches.max, *artifact.input_shape), dtype=in_dtype, device=dev)
        self._out = torch.empty((batches.max, artifact.num_classes), dtype=out_dtype, device=dev)
        self._stream = torch.cuda.Stream(dev)
        self._index = index
        context = engine.create_execution_context()
        if context is None:  # None, not an exception, when its device memory cannot be had
            raise ArtifactError(
                f"TensorRT could not create an execution context for batch {batches.max} "
                "(out of memory, or see its log above)"
            )
        for name, buf in ((self._in_name, self._in), (self._out_name, self._out)):
            if not context.set_tensor_address(name, buf.data_ptr()):  # False, never an exception
                raise ArtifactError(f"TensorRT refused the address of I/O tensor {name!r}")
        self._context = context
        self._n = 0

    @staticmethod
    def _torch_dtype(dt: trt.DataType) -> torch.dtype:
        import torch

        name = _TORCH_DTYPES.get(dt.name)
        if name is None:
            raise ArtifactError(f"unsupported TensorRT I/O data type {dt.name}")
        return getattr(torch, name)  # type: ignore[no-any-return]

    def stage(self, batch: np.ndarray) -> int:
        import torch

        assert self._stream is not None, "load() first"
        n = batch.shape[0]
        if n > self._in.shape[0]:
            raise InvalidInputError(f"batch {n} exceeds the profile maximum {self._in.shape[0]}")
        with torch.cuda.stream(self._stream):
            self._in[:n].copy_(torch.from_numpy(batch))
        return n

    def run(self, staged: Any) -> Any:
        assert self._context is not None and self._stream is not None, "load() first"
        n = int(staged)
        if n != self._n:
            if not self._context.set_input_shape(self._in_name, (n, *self._in.shape[1:])):
                raise InvalidInputError(f"batch {n} is outside the engine's profile")
            self._n = n
        if self.cuda_graphs:
            import torch

            graph = self._graphs.get(n) or self._capture(n)
            with torch.cuda.stream(self._stream):
                graph.replay()
            return self._out[:n]
        self._enqueue()
        return self._out[:n]

    def _enqueue(self) -> None:
        assert self._context is not None and self._stream is not None
        if not self._context.execute_async_v3(self._stream.cuda_stream):
            raise ArtifactError("TensorRT execute_async_v3 failed; see its log above")

    def _capture(self, n: int) -> Any:
        """The CUDA graph of batch ``n``'s enqueue, captured on the engine's stream. As
        TensorRT's guide says, one enqueue first, outside the capture: it does the deferred,
        shape-dependent work that a graph must not hold. The I/O addresses are fixed (set in
        load), so the graph stays valid for every later replay at this batch size."""
        import torch

        assert self._stream is not None
        self._enqueue()
        self._stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self._stream):
            self._enqueue()
        self._graphs[n] = graph
        return graph

    def to_host(self, out: Any) -> np.ndarray:
        assert self._stream is not None
        self._stream.synchronize()
        return out.float().cpu().numpy()  # type: ignore[no-any-return]

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    def memory(self) -> dict[str, float]:
        if self._engine is None or self._entry is None:
            return {}
        import torch

        return {
            "engine_device_memory_mb": mib(engine_device_memory(self._engine)),
            "engine_file_mb": mib(len(self._entry.plan)),
            "io_buffers_mb": mib(self._in.nbytes + self._out.nbytes),
            "torch_max_allocated_mb": mib(torch.cuda.max_memory_allocated(self._index)),
        }

    def executed_layers(self) -> list[ExecutedLayer] | None:
        """The engine inspector's layer information (JSON): per layer its type, input formats,
        tactic and the ONNX nodes it fused (the plan is built with DETAILED verbosity)."""
        if self._engine is None:
            return None
        import tensorrt as trt

        inspector = self._engine.create_engine_inspector()
        if self._context is not None and self.batches is not None:
            # formats are shown only with a context whose input shapes are all set
            self._context.set_input_shape(self._in_name, (self.batches.opt, *self._in.shape[1:]))
            inspector.execution_context = self._context
        return trt_inspector_layers(
            inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        )

    def profile_layers(self, batch: np.ndarray, queries: int) -> LayerTimes | None:
        """Per-layer times from TensorRT's IProfiler, on a second execution context (the timed
        one is never profiled), joined with the engine inspector's layers."""
        if self._engine is None or self._stream is None:
            return None
        import tensorrt as trt

        n = self.stage(batch)
        io = {self._in_name: self._in.data_ptr(), self._out_name: self._out.data_ptr()}
        return profile_context(
            trt, self._engine, io, self._in_name, (n, *self._in.shape[1:]), self._stream,
            queries, self.executed_layers() or [],
        )  # fmt: skip

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        entry = self._entry
        if entry is not None:
            info.update(
                strongly_typed=True,
                tf32=False,  # built with BuilderFlag.TF32 cleared: FP32 layers compute in FP32
                engine_path=str(entry.path),
                cache_key=entry.key,
                built_now=entry.built,
                build_seconds=round(entry.build_seconds, 3),
                gpu=entry.target.gpu_name,
                compute_capability=entry.target.compute_capability,
                workspace_mb=entry.options.workspace_mb,
                opt_level=entry.options.opt_level,
                cuda_graphs=self.cuda_graphs,
                input_dtype=str(self._in.dtype).removeprefix("torch."),
                output_dtype=str(self._out.dtype).removeprefix("torch."),
            )
        return info

    def close(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
        # drop every reference to device memory, so empty_cache can hand it back
        self._graphs.clear()
        self._context = None
        self._engine = None
        self._runtime = None  # type: ignore[assignment]
        self._stream = None
        self._in = self._out = None  # type: ignore[assignment]
        if cuda_available():
            import torch

            torch.cuda.empty_cache()
