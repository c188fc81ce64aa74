"""PyTorch eager engine: CPU FP32; CUDA FP32/FP16/BF16 (channels_last), optional compile/graphs.

``options.extra`` (``--engine-opt KEY=VALUE``; see ``OPTIONS``):
    compile: false | true | a ``torch.compile`` mode ("default", "reduce-overhead",
        "max-autotune", "max-autotune-no-cudagraphs").
    cuda_graphs: bool, capture one CUDA graph per batch size on its first use (CUDA only; not
        with ``compile``: use compile mode "reduce-overhead" for that).
    channels_last: bool, default True on CUDA and False on the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from cnnbench.engines.base import Artifact, BatchRange, Engine, EngineOptions
from cnnbench.engines.cuda import (
    Tf32State,
    cuda_available,
    gpu_identity,
    require_cuda,
    restore_tf32,
    strict_fp32,
    tf32_enabled,
)
from cnnbench.engines.layer_times import LayerTimes
from cnnbench.engines.options import Option
from cnnbench.engines.torch_profile import profile_module
from cnnbench.errors import InvalidInputError, RuntimeUnavailableError
from cnnbench.models import get_model
from cnnbench.precision import Precision
from cnnbench.values import mib

if TYPE_CHECKING:
    import torch

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
OPTIONS = (
    Option("compile", "bool", "torch.compile the model (true: mode default)", words=COMPILE_MODES),
    Option("cuda_graphs", "bool", "capture a CUDA graph per batch size (CUDA only)"),
    Option("channels_last", "bool", "NHWC memory format (default: true on CUDA)"),
)


class TorchEngine(Engine):
    """Eager PyTorch under ``torch.inference_mode``, the model built from the zoo."""

    name: ClassVar[str] = "torch"
    option_schema: ClassVar[tuple[Option, ...]] = OPTIONS
    precisions: ClassVar[tuple[Precision, ...]] = (Precision.FP32, Precision.FP16, Precision.BF16)
    loads_onnx: ClassVar[bool] = False
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    allocates_with_torch: ClassVar[bool] = True

    @classmethod
    def check_combination(cls, device: str, options: Mapping[str, Any]) -> None:
        if options.get("cuda_graphs") and not device.startswith("cuda"):
            raise InvalidInputError("torch cuda_graphs needs --device cuda")
        if options.get("cuda_graphs") and options.get("compile"):
            raise InvalidInputError(
                "torch cuda_graphs cannot be combined with compile; "
                "use compile mode reduce-overhead for graphs with compile"
            )

    def __init__(self, options: EngineOptions | None = None) -> None:
        super().__init__(options)
        extra = self.options.extra
        mode = extra.get("compile", False)
        self.compile_mode: str | None = "default" if mode is True else mode or None
        self.cuda_graphs = bool(extra.get("cuda_graphs", False))
        self.on_cuda = self.device.startswith("cuda")
        self.channels_last = bool(extra.get("channels_last", self.on_cuda))
        self._model: Any = None
        self._dtype: torch.dtype | None = None
        self._dev_in: torch.Tensor | None = None
        #: the host batch's way in (CUDA): pinned float32 NCHW, then float32 NCHW on the device
        self._host_in: torch.Tensor | None = None
        self._dev_f32: torch.Tensor | None = None
        self._copied: Any = None  # a CUDA event: the last batch has left the pinned buffer
        self._graphs: dict[int, tuple[Any, torch.Tensor]] = {}
        self._threads_before: int | None = None
        self._tf32_before: Tf32State | None = None
        self._index = 0

    @classmethod
    def runtime_version(cls) -> str:
        try:
            import torch
        except ImportError as exc:
            raise RuntimeUnavailableError(f"torch is not importable: {exc}") from None
        return str(torch.__version__)

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        return ("cpu", "cuda") if cuda_available() else ("cpu",)

    @classmethod
    def precisions_on(cls, device: str) -> tuple[Precision, ...]:
        # Reduced precisions run on CUDA only; on the CPU the engine computes FP32.
        return cls.precisions if device.startswith("cuda") else (Precision.FP32,)

    @property
    def stream(self) -> Any:
        if not self.on_cuda:
            return None
        import torch

        return torch.cuda.current_stream(self._index)  # eager work and graph replays queue here

    @property
    def threads(self) -> int | None:
        if self.on_cuda:
            return None
        import torch

        return int(torch.get_num_threads())

    def load(self, artifact: Artifact, batches: BatchRange) -> None:
        import torch

        self._accept(artifact, batches)
        if self.on_cuda:  # before any work: no GPU is one clear line
            self._index = require_cuda(self.device, "the torch engine on cuda")
        self._dtype = getattr(torch, artifact.precision.torch_dtype_name)
        if self.on_cuda and artifact.precision == Precision.FP32 and self._tf32_before is None:
            self._tf32_before = strict_fp32(torch)
        if self.options.threads and not self.on_cuda:
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(self.options.threads)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        model = get_model(artifact.model, weights=artifact.weights, seed=artifact.seed)
        if self.on_cuda:
            dev = torch.device("cuda", self._index)
            torch.cuda.reset_peak_memory_stats(dev)
            # Module.to accepts memory_format at run time; torch's stubs omit it.
            model = model.to(device=dev, dtype=self._dtype, memory_format=fmt)  # type: ignore[call-overload]
            self._input_buffers(torch, dev, (batches.max, *artifact.input_shape), fmt)
        else:
            model = model.to(memory_format=fmt)  # type: ignore[call-overload]
        self._weights_bytes = sum(
            t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers())
        )
        if self.compile_mode:
            model = torch.compile(model, mode=self.compile_mode)  # type: ignore[assignment]
        self._model = model
        if self.compile_mode:
            self._compile_warmup(torch, artifact, batches, fmt)

    def _input_buffers(self, torch: Any, dev: Any, shape: tuple[int, ...], fmt: Any) -> None:
        """Preallocated inputs, so stage() allocates nothing. A host batch is copied into pinned
        memory and crosses to the device as it is (float32, NCHW): a copy_ from a host tensor
        that changes the dtype or the layout converts on the CPU, from pageable memory, into a
        temporary, and the measured time would be host work. The cast to the run dtype and the
        channels_last layout are then one copy on the GPU."""
        self._dev_in = torch.empty(shape, device=dev, dtype=self._dtype).contiguous(
            memory_format=fmt
        )
        self._host_in = torch.empty(shape, dtype=torch.float32, pin_memory=True)
        same = self._dtype == torch.float32 and not self.channels_last
        self._dev_f32 = (
            self._dev_in if same else torch.empty(shape, device=dev, dtype=torch.float32)
        )
        self._copied = torch.cuda.Event()

    def _compile_warmup(
        self, torch: Any, artifact: Artifact, batches: BatchRange, fmt: Any
    ) -> None:
        """Compile (first call) and, in reduce-overhead mode, record the CUDA graphs (the next
        calls) for the batch sizes served, here in load: never in the measured window."""
        dev = torch.device("cuda", self._index) if self.on_cuda else torch.device("cpu")
        with torch.inference_mode():
            for n in sorted({batches.min, batches.max}):
                x = torch.zeros((n, *artifact.input_shape), dtype=self._dtype, device=dev)
                for _ in range(3):
                    self._model(x.contiguous(memory_format=fmt))
        self.synchronize()

    def stage(self, batch: np.ndarray) -> Any:
        import torch

        host = torch.from_numpy(batch)
        if not self.on_cuda:
            return (
                host.contiguous(memory_format=torch.channels_last) if self.channels_last else host
            )
        assert self._dev_in is not None and self._host_in is not None, "load() first"
        assert self._dev_f32 is not None
        n = host.shape[0]
        if n > self._dev_in.shape[0]:
            raise InvalidInputError(f"batch {n} exceeds the loaded maximum {self._dev_in.shape[0]}")
        if self._copied is not None:
            self._copied.synchronize()  # the previous batch has left the pinned buffer
        pinned, crossed, dst = self._host_in[:n], self._dev_f32[:n], self._dev_in[:n]
        pinned.copy_(host)  # same dtype and layout: a memcpy into pinned memory
        crossed.copy_(pinned, non_blocking=True)  # a DMA, queued on the current stream
        if self._copied is not None:
            self._copied.record()
        if crossed.data_ptr() != dst.data_ptr():
            dst.copy_(crossed)  # the cast and the layout change, on the GPU
        return dst

    def run(self, staged: Any) -> Any:
        import torch

        with torch.inference_mode():
            if self.cuda_graphs:
                graph, out = self._graph(staged)
                graph.replay()
                return out
            return self._model(staged)

    def to_host(self, out: Any) -> np.ndarray:
        import torch

        if out.dtype != torch.float32:
            out = out.float()
        return out.cpu().numpy()  # type: ignore[no-any-return]

    def _graph(self, staged: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """The CUDA graph for this batch size, captured (after a side-stream warm-up) on first use."""
        import torch

        n = staged.shape[0]
        hit = self._graphs.get(n)
        if hit is not None:
            return hit
        side = torch.cuda.Stream(self._index)
        side.wait_stream(torch.cuda.current_stream(self._index))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._model(staged)
        torch.cuda.current_stream(self._index).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # the capture stream is made on the current device: make it ours (cuda:N)
        with torch.cuda.device(self._index), torch.cuda.graph(graph):
            out = self._model(staged)
        self._graphs[n] = (graph, out)
        return graph, out

    def profile_layers(self, batch: np.ndarray, queries: int) -> LayerTimes | None:
        """Per-module times from forward hooks on the loaded model (eager; a compiled or
        graph-captured model is profiled as its eager modules, and says so)."""
        if self._model is None or self.artifact is None:
            return None
        model = getattr(self._model, "_orig_mod", self._model)  # torch.compile's wrapper
        x = self.stage(batch)
        sync = self.synchronize if self.on_cuda else (lambda: None)
        times = profile_module(model, x, queries, str(self.artifact.precision), sync)
        if self.compile_mode or self.cuda_graphs:
            return replace(times, source=times.source + "; eager modules of a compiled model")
        return times

    def synchronize(self) -> None:
        if self.on_cuda:
            import torch

            torch.cuda.synchronize(self._index)

    def memory(self) -> dict[str, float]:
        figures = {"weights_mb": mib(getattr(self, "_weights_bytes", 0))}
        if self.on_cuda and self._model is not None:
            import torch

            figures["torch_max_allocated_mb"] = mib(torch.cuda.max_memory_allocated(self._index))
            figures["torch_max_reserved_mb"] = mib(torch.cuda.max_memory_reserved(self._index))
        return figures

    def describe(self) -> dict[str, Any]:
        import torch

        info = super().describe()
        info.update(
            dtype=str(self._dtype).removeprefix("torch.") if self._dtype else None,
            channels_last=self.channels_last,
            compile=self.compile_mode,
            cuda_graphs=self.cuda_graphs,
            inference_mode=True,
        )
        if self.on_cuda:
            info["tf32"] = tf32_enabled(torch)
            gpu = gpu_identity(self._index)
            info.update(gpu=gpu.name, compute_capability=gpu.compute_capability)
            info["cuda"] = torch.version.cuda
        return info

    def close(self) -> None:
        if self._threads_before is not None:
            import torch

            torch.set_num_threads(self._threads_before)
            self._threads_before = None
        if self._tf32_before is not None:
            import torch

            restore_tf32(torch, self._tf32_before)
            self._tf32_before = None
        self._model = None
        self._dev_in = self._host_in = self._dev_f32 = self._copied = None
        self._graphs.clear()
        if self.on_cuda and cuda_available():
            import torch

            torch.cuda.empty_cache()
