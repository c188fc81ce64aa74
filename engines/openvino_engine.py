"""OpenVINO engine (CPU), compiling the artifact's ONNX file.

OpenVINO may run an FP32 model in BF16 (or FP16) on CPUs that support it: ``describe()`` reports
the precision the compiled model actually uses, never just the file's.

``options.extra`` (``--engine-opt KEY=VALUE``; see ``OPTIONS``):
    inference_precision: f32 | bf16 | f16, the INFERENCE_PRECISION_HINT (default: OpenVINO's
        choice, bf16 on CPUs with AMX or AVX512-BF16, else f32).
    hint: latency | throughput | cumulative_throughput, the PERFORMANCE_HINT (default latency).
    num_streams: N or auto, NUM_STREAMS (default 1 under the latency hint, else OpenVINO's).
        The engine keeps one infer request in flight, so more streams split the threads and
        do not overlap requests.
    snippets: enable | disable, the CPU plugin's SNIPPETS_MODE (an internal property; default
        OpenVINO's, enable). With static shapes, Snippets take a residual block's Add+ReLU(+Q)
        into a kernel of their own when the conv branch leaves the conv unquantized (the
        TensorRT placement of INT8 files); ``disable`` lets that convolution absorb them as a
        sum post-op instead, as it does when the conv output is quantized.
    config: a JSON object of further CPU properties, passed to ``compile_model`` as given.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cnnbench.engines.base import Artifact, BatchRange, Engine, EngineOptions
from cnnbench.engines.executed import ExecutedLayer, precision_word
from cnnbench.engines.layer_times import LayerTimes, ov_info, ov_layer_times
from cnnbench.engines.options import Option
from cnnbench.errors import ArtifactError, InvalidInputError, RuntimeUnavailableError, first_line
from cnnbench.host import physical_cores
from cnnbench.precision import ONNX_PRECISIONS, Precision
from cnnbench.values import mib

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT",
         "cumulative_throughput": "CUMULATIVE_THROUGHPUT"}  # fmt: skip
SNIPPETS = {"enable": "ENABLE", "disable": "DISABLE"}
OPTIONS = (
    Option("inference_precision", "choice", "INFERENCE_PRECISION_HINT (default: OpenVINO's)",
           choices=("f32", "bf16", "f16")),
    Option("hint", "choice", "PERFORMANCE_HINT (default latency)", choices=tuple(HINTS)),
    Option("num_streams", "int", "NUM_STREAMS (default 1 under the latency hint)", minimum=1,
           words=("auto",)),
    Option("snippets", "choice", "SNIPPETS_MODE (default enable); disable lets a conv absorb "
           "the residual Add of TensorRT-style INT8", choices=tuple(SNIPPETS)),
    Option("config", "json", "further CPU properties for compile_model, as a JSON object"),
)  # fmt: skip
# OpenVINO element type name -> our precision names
OV_PRECISION = {
    "f32": Precision.FP32, "bf16": Precision.BF16, "f16": Precision.FP16,
    "i8": Precision.INT8, "u8": Precision.INT8,
}  # fmt: skip


def compile_config(
    threads: int,
    inference_precision: str | None = None,
    hint: str = "latency",
    num_streams: int | str | None = None,
    snippets: str | None = None,
) -> dict[str, Any]:
    """The CPU properties this engine compiles with (shared with bench/scripts)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": HINTS[hint], "INFERENCE_NUM_THREADS": threads}
    if num_streams is None and hint == "latency":
        num_streams = 1
    if num_streams is not None:
        config["NUM_STREAMS"] = "AUTO" if num_streams == "auto" else num_streams
    if inference_precision is not None:
        config["INFERENCE_PRECISION_HINT"] = inference_precision
    if snippets is not None:
        config["SNIPPETS_MODE"] = SNIPPETS[snippets]
    return config


#: infers of a profiled compiled model before the profiled queries
_PROFILE_WARMUP = 3
#: runtime-model layer types that compute nothing (constants, the graph's ends)
_NOT_LAYERS = ("Const", "Input", "Output", "Parameter", "Result")


def _dims(port: Any) -> list[int | None]:
    return [d.get_length() if d.is_static else None for d in port.get_partial_shape()]


def _shape_macs(kind: str, op: Any) -> int | None:
    """Per-image MACs from a runtime node's shapes (Convolution, FullyConnected, MatMul)."""
    try:
        out = _dims(op.output(0))[1:]
        if kind in ("Convolution", "Deconvolution") and op.get_input_size() > 1:
            w = _dims(op.input(1))
            k = w[2:] if len(w) == len(out) + 2 else w[1:]  # grouped weights: [G, O/G, I/G, ...]
        elif kind in ("FullyConnected", "MatMul") and op.get_input_size() > 1:
            k = [_dims(op.input(0))[-1]]
        else:
            return None
    except (IndexError, RuntimeError):
        return None
    dims = [d for d in (*out, *k) if d is not None]
    return math.prod(dims) if len(dims) == len(out) + len(k) else None


def runtime_layers(compiled: Any) -> list[ExecutedLayer]:
    """The compiled model's runtime graph: per node its layer type, primitive (exec type),
    runtime precision and the original (ONNX) layers it was made from."""
    layers = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()

        def info(key: str, rt: Any = rt) -> str:
            return str(rt[key].astype(str)) if key in rt else ""

        kind = info("layerType")
        if kind in _NOT_LAYERS:
            continue
        layers.append(
            ExecutedLayer(
                name=op.get_friendly_name(),
                kind=kind,
                precision=precision_word(info("runtimePrecision")),
                kernel=info("primitiveType"),
                nodes=tuple(n for n in info("originalLayersNames").split(",") if n),
                shape_macs=_shape_macs(kind, op),
                extra={"output_precisions": info("outputPrecisions")},
            )
        )
    return layers


class OpenVinoEngine(Engine):
    """An OpenVINO compiled model with one reused infer request."""

    name: ClassVar[str] = "openvino"
    option_schema: ClassVar[tuple[Option, ...]] = OPTIONS
    # no FP8: OpenVINO's CPU plugin computes no E4M3 convolution
    precisions: ClassVar[tuple[Precision, ...]] = tuple(
        p for p in ONNX_PRECISIONS if p != Precision.FP8
    )
    devices: ClassVar[tuple[str, ...]] = ("cpu",)
    extra: ClassVar[str | None] = "openvino"

    def __init__(self, options: EngineOptions | None = None) -> None:
        super().__init__(options)
        extra = self.options.extra
        self.config = compile_config(
            self.options.threads or physical_cores(),
            extra.get("inference_precision"),
            extra.get("hint", "latency"),
            extra.get("num_streams"),
            extra.get("snippets"),
        )
        self.config.update(extra.get("config", {}))
        self._threads = self.options.threads or physical_cores()
        self._compiled: Any = None
        self._req: Any = None

    @classmethod
    def runtime_version(cls) -> str:
        try:
            import openvino as ov
        except ImportError:
            raise RuntimeUnavailableError(
                "openvino is not installed; pip install 'cnnbench[openvino]'"
            ) from None
        return str(ov.__version__).split("-")[0]

    def load(self, artifact: Artifact, batches: BatchRange) -> None:
        import openvino as ov

        self._accept(artifact, batches)
        if artifact.onnx_path is None or not Path(artifact.onnx_path).is_file():
            raise InvalidInputError(
                f"openvino needs the ONNX file of {artifact.model}; "
                f"run: cnnbench export {artifact.model}"
            )
        core = ov.Core()
        batch = (
            ov.Dimension(batches.min)
            if batches.min == batches.max
            else ov.Dimension(batches.min, batches.max)
        )
        try:
            model = core.read_model(str(artifact.onnx_path))
            first = model.inputs[0].get_partial_shape()
            # Bounded (or static) batch: the CPU plugin plans memory for the served range only.
            model.reshape({0: ov.PartialShape([batch, *list(first)[1:]])})
        except RuntimeError as exc:
            raise ArtifactError(
                f"openvino cannot load {artifact.onnx_path}: {first_line(exc)}"
            ) from None
        try:
            self._compiled = core.compile_model(model, "CPU", dict(self.config))
        except RuntimeError as exc:
            if self.options.extra:  # a property OpenVINO refuses: the user's option, not the file
                raise InvalidInputError(
                    f"openvino refused the options {self.option_text(self.options.extra)}: "
                    f"{first_line(exc)}"
                ) from None
            raise ArtifactError(
                f"openvino cannot compile {artifact.onnx_path}: {first_line(exc)}"
            ) from None
        self._layers = runtime_layers(self._compiled)  # read now: close() drops the model
        self._req = self._compiled.create_infer_request()
        self._out_tensor = self._req.get_output_tensor  # bound method, looked up once
        self._file_bytes = Path(artifact.onnx_path).stat().st_size
        self._tensor = ov.Tensor
        self._in_dtype = self._compiled.inputs[0].get_element_type().to_dtype()
        self._cast = self._in_dtype != np.float32
        self._static = batches.min == batches.max
        if self._static:
            # The request computes from and into our own arrays (set once, shared memory), so
            # infer() is a memcpy in, infer(), a copy out: no tensor objects per call.
            self._in_buf = np.empty((batches.min, *artifact.input_shape), self._in_dtype)
            out = self._compiled.outputs[0]
            self._out_buf = np.empty(tuple(out.get_shape()), out.get_element_type().to_dtype())
            self._req.set_input_tensor(ov.Tensor(self._in_buf, shared_memory=True))
            self._req.set_output_tensor(ov.Tensor(self._out_buf, shared_memory=True))

    # ---- the hot path: one infer() on a reused request -----------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self._static:
            buf = self._in_buf
            if batch.shape != buf.shape:
                raise InvalidInputError(f"batch shape {batch.shape} != loaded {buf.shape}")
            buf[...] = batch
            self._req.infer()
            return self._out_buf.copy()  # the caller owns what it gets
        batch = batch.astype(self._in_dtype) if self._cast else np.ascontiguousarray(batch)
        self._req.set_input_tensor(self._tensor(batch, shared_memory=True))
        self._req.infer()
        return self._out_tensor(0).data.copy()  # type: ignore[no-any-return]

    def run(self, staged: Any) -> np.ndarray:
        return self.infer(staged)

    @property
    def threads(self) -> int | None:
        if self._compiled is not None:
            return int(self._compiled.get_property("INFERENCE_NUM_THREADS"))
        return self._threads

    def inference_precision(self) -> Precision | str:
        """The precision the compiled model computes in (``INFERENCE_PRECISION_HINT``)."""
        assert self._compiled is not None, "load() first"
        t = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        name = t.get_type_name() if hasattr(t, "get_type_name") else str(t)
        return OV_PRECISION.get(name, name)

    def effective_precision(self) -> Precision | None:
        if self._compiled is None or self.artifact is None:
            return super().effective_precision()
        # INT8 Q/DQ layers run in int8; everything else computes in the inference precision.
        if self.artifact.precision == Precision.INT8:
            return Precision.INT8
        eff = self.inference_precision()
        return eff if isinstance(eff, Precision) else None

    def memory(self) -> dict[str, float]:
        return {"model_file_mb": mib(getattr(self, "_file_bytes", 0))}

    def executed_layers(self) -> list[ExecutedLayer] | None:
        return getattr(self, "_layers", None)

    def profile_layers(self, batch: np.ndarray, queries: int) -> LayerTimes | None:
        """Real time per node from OpenVINO's performance counters: the same file compiled
        again with ``PERF_COUNT``, the same properties and batch, warmed up, then ``queries``
        infers of ``batch``, each one's profiling info read after it."""
        import openvino as ov

        art = self.artifact
        if self._compiled is None or art is None or art.onnx_path is None:
            return None
        core = ov.Core()
        try:
            model = core.read_model(str(art.onnx_path))
            first = list(model.inputs[0].get_partial_shape())
            model.reshape({0: ov.PartialShape([batch.shape[0], *first[1:]])})
            compiled = core.compile_model(model, "CPU", {**self.config, "PERF_COUNT": True})
        except RuntimeError as exc:
            raise ArtifactError(
                f"openvino could not profile {art.onnx_path}: {first_line(exc)}"
            ) from None
        req = compiled.create_infer_request()
        x = batch.astype(self._in_dtype) if self._cast else np.ascontiguousarray(batch)
        runs = []
        for i in range(_PROFILE_WARMUP + queries):
            req.infer({0: x})
            if i >= _PROFILE_WARMUP:
                runs.append(ov_info(req.get_profiling_info()))
        return ov_layer_times(runs, runtime_layers(compiled))

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["requested_config"] = {
            k: v for k, v in self.config.items() if k != "INFERENCE_NUM_THREADS"
        }
        if self._compiled is not None:
            info["inference_precision"] = self.inference_precision()
            get = self._compiled.get_property
            info.update(
                streams=int(get("NUM_STREAMS")),
                performance_hint=str(get("PERFORMANCE_HINT")),
                execution_devices=list(get("EXECUTION_DEVICES")),
            )
        return info

    def close(self) -> None:
        self._req = None
        self._compiled = None
