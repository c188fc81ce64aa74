"""ONNX Runtime engine: CPU, CUDA and TensorRT execution providers, FP32/FP16/INT8 files.

``options.extra`` (``--engine-opt KEY=VALUE``; see ``OPTIONS``):
    graph_optimization_level: disable | basic | extended | all (default all), the session's
        graph optimisations (``GraphOptimizationLevel.ORT_*``).
    providers: list of providers in priority order, full names or short ones
        ("cpu", "cuda", "tensorrt"). Default: CPU on the CPU, CUDA then CPU on cuda.
    io_binding: bool, GPU only (default True): inputs and outputs live in preallocated device
        buffers, so ``run`` does no host copies; ``stage``/``to_host`` do them. False: ``sess.run``
        on host arrays (copies through the host inside the timed call).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cnnbench.artifacts import cache_dir, ensure_dir, sha256_file
from cnnbench.engines.base import Artifact, BatchRange, Engine, EngineOptions
from cnnbench.engines.cuda import device_index
from cnnbench.engines.executed import ExecutedLayer, ort_profile_layers
from cnnbench.engines.layer_times import LayerTimes, ort_layer_times
from cnnbench.engines.options import Option
from cnnbench.errors import ArtifactError, InvalidInputError, RuntimeUnavailableError, first_line
from cnnbench.host import physical_cores
from cnnbench.precision import ONNX_PRECISIONS, Precision
from cnnbench.values import mib

#: graph_optimization_level -> onnxruntime.GraphOptimizationLevel member
OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL",
}  # fmt: skip
OPTIONS = (
    Option("graph_optimization_level", "choice", "session graph optimisations (default all)",
           choices=tuple(OPT_LEVELS)),
    Option("providers", "list", "execution providers in order: cpu, cuda, tensorrt or full names"),
    Option("io_binding", "bool", "GPU: preallocated device buffers (default true)"),
)  # fmt: skip
SHORT = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
#: runs of a profiled session before the profiled queries
_PROFILE_WARMUP = 3
_GPU_HINT = (
    "GPU providers need onnxruntime-gpu in a separate environment "
    "(pip uninstall -y onnxruntime && pip install onnxruntime-gpu)"
)


def _ort_errors() -> tuple[type[Exception], ...]:
    """onnxruntime's load errors (InvalidProtobuf, InvalidGraph, ...; not RuntimeError subclasses)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as c

    names = (
        "Fail",
        "InvalidArgument",
        "InvalidGraph",
        "InvalidProtobuf",
        "NoSuchFile",
        "RuntimeException",
    )
    return tuple(getattr(c, n) for n in names if hasattr(c, n))


def session_options(threads: int, level: str = "all") -> Any:
    """The SessionOptions this engine uses (shared with bench/scripts for a fair comparison)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[level])
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 4  # fatal only: its errors reach the user as our one line
    return so


def _provider_names(given: Any) -> list[str]:
    """The ``providers`` option as ONNX Runtime's provider names (cpu, cuda, ... expanded)."""
    items = given.split(",") if isinstance(given, str) else given
    return [SHORT.get(str(p).strip().lower(), str(p).strip()) for p in items]


class OrtEngine(Engine):
    """An ``onnxruntime.InferenceSession`` on the artifact's ONNX file."""

    name: ClassVar[str] = "onnxruntime"
    option_schema: ClassVar[tuple[Option, ...]] = OPTIONS
    # FP8 files are not listed: no provider here computes FP8 (the CPU provider would run the
    # convolutions in FP32 between E4M3 Q/DQ pairs; only TensorRT runs them in FP8)
    precisions: ClassVar[tuple[Precision, ...]] = tuple(
        p for p in ONNX_PRECISIONS if p != Precision.FP8
    )
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")

    def __init__(self, options: EngineOptions | None = None) -> None:
        super().__init__(options)
        extra = self.options.extra
        self.on_cuda = self.device.startswith("cuda")
        self.providers = self._requested_providers(extra.get("providers"))
        self.io_binding = self.on_cuda and bool(extra.get("io_binding", True))
        self._threads = self.options.threads or physical_cores()
        self._sess: Any = None
        self._run: Any = None
        self._buffers: dict[int, tuple[Any, Any, Any]] = {}
        self._layers: list[ExecutedLayer] | None = None

    @property
    def threads(self) -> int | None:
        return None if self.on_cuda else self._threads

    def _requested_providers(self, given: Any) -> list[str]:
        if given is None:
            return (
                ["CUDAExecutionProvider", "CPUExecutionProvider"]
                if self.on_cuda
                else ["CPUExecutionProvider"]
            )
        return _provider_names(given)

    @classmethod
    def check_combination(cls, device: str, options: Mapping[str, Any]) -> None:
        given = options.get("providers")
        if given is None:
            return
        on_cuda = device.startswith("cuda")
        gpu = [p for p in _provider_names(given) if p in _GPU_PROVIDERS]
        if gpu and not on_cuda:
            raise InvalidInputError(f"provider {gpu[0]} needs --device cuda")
        if on_cuda and not gpu:
            raise InvalidInputError("--device cuda needs the cuda or tensorrt provider")

    @classmethod
    def runtime_version(cls) -> str:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeUnavailableError(
                f"onnxruntime is not importable ({exc}); pip install onnxruntime"
            ) from None
        return str(ort.__version__)

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        import onnxruntime as ort

        have = set(ort.get_available_providers())
        return ("cpu", "cuda") if have & set(_GPU_PROVIDERS) else ("cpu",)

    def load(self, artifact: Artifact, batches: BatchRange) -> None:
        import onnxruntime as ort

        self._accept(artifact, batches)
        if artifact.onnx_path is None:
            raise InvalidInputError(
                f"onnxruntime needs an ONNX file for {artifact.model}; "
                f"run: cnnbench export {artifact.model}"
            )
        path = Path(artifact.onnx_path)
        if not path.is_file():
            raise InvalidInputError(f"ONNX file not found: {path}")
        available = ort.get_available_providers()
        missing = [p for p in self.providers if p not in available]
        if missing:
            hint = _GPU_HINT if set(missing) & set(_GPU_PROVIDERS) else "check the name"
            raise RuntimeUnavailableError(
                f"onnxruntime provider {missing[0]} is not available here; {hint}"
            )
        try:
            self._sess = self._session(path)
        except self._load_errors() as exc:
            raise ArtifactError(f"onnxruntime cannot load {path}: {first_line(exc)}") from None
        active = self._sess.get_providers()
        if self.on_cuda and not set(active) & set(_GPU_PROVIDERS):
            raise RuntimeUnavailableError(
                "onnxruntime fell back to the CPU (CUDA/cuDNN libraries missing?); "
                f"requested {', '.join(self.providers)}"
            )
        inp, out = self._sess.get_inputs()[0], self._sess.get_outputs()[0]
        self.input_name, self.output_name = inp.name, out.name
        self._outs = [out.name]
        self._in_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        self._out_dtype = np.float16 if out.type == "tensor(float16)" else np.float32
        self._cast = self._in_dtype != np.float32
        self._run = self._sess.run
        self._file_bytes = path.stat().st_size
        self._layers = None

    @staticmethod
    def _load_errors() -> tuple[type[Exception], ...]:
        return (RuntimeError, ValueError, *_ort_errors())

    def _session(self, path: Path, profile_prefix: str | None = None) -> Any:
        """A session on ``path`` with this engine's options (and the profiler, when asked)."""
        import onnxruntime as ort

        assert self.artifact is not None and self.batches is not None
        so = session_options(
            self._threads, self.options.extra.get("graph_optimization_level", "all")
        )
        if profile_prefix is not None:
            so.enable_profiling = True
            so.profile_file_prefix = profile_prefix
        providers = [
            (p, self._provider_options(p, self.artifact, self.batches)) for p in self.providers
        ]
        return ort.InferenceSession(str(path), sess_options=so, providers=providers)

    def executed_layers(self) -> list[ExecutedLayer] | None:
        """The kernel each node ran, from ONNX Runtime's profiler: a second session, same file
        and options, profiled over two batch-1 runs (the timed session is never profiled)."""
        if self._sess is None or self.artifact is None or self.artifact.onnx_path is None:
            return None
        if self._layers is None:
            assert self.batches is not None
            x = np.zeros((self.batches.min, *self.artifact.input_shape), dtype=self._in_dtype)
            errors: tuple[type[Exception], ...] = (*self._load_errors(), OSError, ValueError)
            with tempfile.TemporaryDirectory(prefix="cnnbench-ortprof-") as tmp:
                try:
                    sess = self._session(Path(self.artifact.onnx_path), f"{tmp}/profile")
                    for _ in range(2):
                        sess.run(self._outs, {self.input_name: x})
                    events = json.loads(Path(sess.end_profiling()).read_text())
                except errors as exc:
                    raise ArtifactError(
                        f"onnxruntime could not profile {self.artifact.onnx_path}: "
                        f"{first_line(exc)}"
                    ) from None
            self._layers = ort_profile_layers(events)
        return self._layers

    def profile_layers(self, batch: np.ndarray, queries: int) -> LayerTimes | None:
        """Kernel time per node from ONNX Runtime's profiler: a second session of the same
        file and options, warmed up, then ``queries`` runs of ``batch``."""
        if self._sess is None or self.artifact is None or self.artifact.onnx_path is None:
            return None
        x = batch.astype(self._in_dtype) if self._cast else batch
        errors: tuple[type[Exception], ...] = (*self._load_errors(), OSError, ValueError)
        with tempfile.TemporaryDirectory(prefix="cnnbench-ortprof-") as tmp:
            try:
                sess = self._session(Path(self.artifact.onnx_path), f"{tmp}/profile")
                for _ in range(_PROFILE_WARMUP + queries):
                    sess.run(self._outs, {self.input_name: x})
                events = json.loads(Path(sess.end_profiling()).read_text())
            except errors as exc:
                raise ArtifactError(
                    f"onnxruntime could not profile {self.artifact.onnx_path}: {first_line(exc)}"
                ) from None
        return ort_layer_times(events, queries)

    def _provider_options(self, provider: str, art: Artifact, b: BatchRange) -> dict[str, Any]:
        if provider == "CUDAExecutionProvider":
            # the provider computes FP32 convolutions and matmuls in TF32 unless told not to
            # (use_tf32 defaults to 1): a row that says fp32 must have computed in FP32
            return {"device_id": device_index(self.device), "use_tf32": 0}
        if provider != "TensorrtExecutionProvider":
            return {}

        # ONNX Runtime's engine-cache id hashes the model's file name (every artifact is a
        # model.onnx) and not its weights: one folder per file content, or a re-export with
        # other weights would silently run the old engine.
        assert art.onnx_path is not None
        content = art.sha256 or sha256_file(art.onnx_path)
        dims = "x".join(str(d) for d in art.input_shape)
        shapes = {
            k: f"{art.input_name}:{n}x{dims}"
            for k, n in (("min", b.min), ("opt", b.opt), ("max", b.max))
        }
        return {
            "device_id": device_index(self.device),
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(ensure_dir(cache_dir() / "ort_trt" / content[:32])),
            "trt_fp16_enable": art.precision == Precision.FP16,
            "trt_int8_enable": art.precision == Precision.INT8,
            "trt_profile_min_shapes": shapes["min"],
            "trt_profile_opt_shapes": shapes["opt"],
            "trt_profile_max_shapes": shapes["max"],
        }

    # ---- the hot path: one sess.run call, in run(), the one place every timing mode runs the
    # session (a plain loop's cost plus one method call) ---------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.io_binding:
            return self.to_host(self.run(self.stage(batch)))
        if self._cast:
            batch = batch.astype(self._in_dtype)
        return self.run(batch)  # type: ignore[no-any-return]

    def stage(self, batch: np.ndarray) -> Any:
        if self._cast:
            batch = batch.astype(self._in_dtype)
        if not self.io_binding:
            return batch
        n = batch.shape[0]
        bufs = self._buffers.get(n) or self._bind(n)
        bufs[0].update_inplace(np.ascontiguousarray(batch))
        return bufs

    def run(self, staged: Any) -> Any:
        if not self.io_binding:
            return self._run(self._outs, {self.input_name: staged})[0]
        in_val, out_val, binding = staged
        self._sess.run_with_iobinding(binding)
        return out_val

    def to_host(self, out: Any) -> np.ndarray:
        return out if isinstance(out, np.ndarray) else out.numpy()

    def _bind(self, n: int) -> tuple[Any, Any, Any]:
        """Preallocated device input/output for batch ``n``, bound once and reused."""
        import onnxruntime as ort

        assert self.artifact is not None
        dev = device_index(self.device)
        in_val = ort.OrtValue.ortvalue_from_shape_and_type(
            (n, *self.artifact.input_shape), self._in_dtype, "cuda", dev
        )
        out_val = ort.OrtValue.ortvalue_from_shape_and_type(
            (n, self.artifact.num_classes), self._out_dtype, "cuda", dev
        )
        binding = self._sess.io_binding()
        binding.bind_ortvalue_input(self.input_name, in_val)
        binding.bind_ortvalue_output(self.output_name, out_val)
        self._buffers[n] = (in_val, out_val, binding)
        return self._buffers[n]

    def synchronize(self) -> None:
        for _, _, binding in self._buffers.values():
            binding.synchronize_outputs()

    def memory(self) -> dict[str, float]:
        return {"model_file_mb": mib(getattr(self, "_file_bytes", 0))}

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update(
            providers=self._sess.get_providers() if self._sess else self.providers,
            graph_optimization_level=OPT_LEVELS[
                self.options.extra.get("graph_optimization_level", "all")
            ],
            intra_op_threads=self._threads,
            inter_op_threads=1,
            io_binding=self.io_binding,
            input_dtype=np.dtype(self._in_dtype).name if self._sess else None,
        )
        if "CUDAExecutionProvider" in info["providers"]:
            info["tf32"] = False  # use_tf32=0, see _provider_options
        if (
            self._sess
            and self.artifact
            and self.artifact.precision == Precision.FP16
            and not self.on_cuda
        ):
            # ORT's CPU provider inserts casts around FP16 nodes that lack FP16 kernels.
            info["note"] = "CPU provider computes FP16 nodes without FP16 kernels in FP32"
        return info

    def close(self) -> None:
        self._buffers.clear()
        self._sess = None
        self._run = None
