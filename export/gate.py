"""The parity gate: an ONNX file on ONNX Runtime (CPU) against PyTorch eager FP32.

Inputs are K seeded batches of preprocessed random images, or real images from a folder. A
dynamic-batch file is also run on a single-sample batch, so a broken batch axis fails the gate.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console

from cnnbench.data import images
from cnnbench.errors import ArtifactError, CheckFailedError, first_line
from cnnbench.export.parity import ParityAccumulator, ParityReport, Tolerances

if TYPE_CHECKING:
    from torch import nn

    from cnnbench.models.spec import ModelSpec

DEFAULT_SAMPLES = 3
DEFAULT_BATCH = 2
REFERENCE = "torch-eager-fp32"
RUNTIME = "onnxruntime-cpu"


class ParityGateError(CheckFailedError):
    """The candidate failed the parity gate; ``report`` holds the metrics."""

    def __init__(self, message: str, report: ParityReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class GateInputs:
    """Where the gate's inputs come from (K seeded random batches, or an image folder)."""

    samples: int = DEFAULT_SAMPLES
    batch: int = DEFAULT_BATCH
    seed: int = 0
    data_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.batch < 1:
            raise ValueError(f"batch must be >= 1, got {self.batch}")

    def batches(self, spec: ModelSpec) -> list[np.ndarray]:
        if self.data_dir is not None:
            return images.load_image_batches(
                self.data_dir, spec, batch=self.batch, limit=self.samples * self.batch
            )
        return images.random_batches(spec, count=self.samples, batch=self.batch, seed=self.seed)

    def describe(self) -> dict[str, Any]:
        src = f"images:{self.data_dir}" if self.data_dir else f"random-seeded:{self.seed}"
        return {"inputs": src, "batches": self.samples, "batch": self.batch}


def ort_session(path: Path, *, basic: bool = False) -> Any:
    """A CPU ONNX Runtime session; a file ORT cannot load raises a one-line ArtifactError.

    ``basic``: basic graph optimisations only. FP8 files need it: the extended level's Q/DQ
    transformations miscompute FP8 (E4M3) Q/DQ graphs on the CPU provider (onnxruntime 1.32
    returns wrong logits; 1.30 refuses the rewritten graph: a MaxPool fed float8)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if basic:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
        raise ArtifactError(f"onnxruntime cannot load {path}: {first_line(exc)}") from None


class OrtReference:
    """The user's own file on ONNX Runtime's CPU provider, called like a torch module."""

    def __init__(self, path: Path) -> None:
        self.session = ort_session(path)
        self.name = self.session.get_inputs()[0].name

    def __call__(self, x: Any) -> Any:
        import torch

        return torch.from_numpy(self.session.run(None, {self.name: x.numpy()})[0])


def fixed_batch(session: Any) -> int | None:
    """The input's batch size if the file fixes it, else None (dynamic)."""
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) and dim > 0 else None


def run_parity(
    module: nn.Module,
    onnx_path: Path,
    batches: list[np.ndarray],
    tol: Tolerances,
    *,
    output_name: str = "logits",
    session: Any = None,
) -> ParityReport:
    """Compare ORT's outputs for ``onnx_path`` with ``module``'s on each batch."""
    import torch

    session = session or ort_session(onnx_path)
    inp = session.get_inputs()[0]
    dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
    fixed = fixed_batch(session)
    acc = ParityAccumulator(output_name)
    runs = list(batches)
    if fixed is None and runs and runs[0].shape[0] > 1:
        runs.append(runs[0][:1])  # exercise the dynamic axis at another size
    for x in runs:
        if fixed is not None and x.shape[0] != fixed:
            raise ArtifactError(
                f"{onnx_path} has a fixed batch of {fixed}; verify with --batch {fixed}"
            )
        with torch.no_grad():
            ref = module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        ref_np = _as_numpy(ref)
        try:
            (out,) = session.run(None, {inp.name: x.astype(dtype)})[:1]
        except Exception as exc:
            raise ArtifactError(
                f"onnxruntime failed to run {onnx_path}: {first_line(exc)}"
            ) from None
        acc.add(ref_np, np.asarray(out, dtype=np.float32))
    return acc.report(tol)


def gate(
    module: nn.Module,
    onnx_path: Path,
    spec: ModelSpec,
    inputs: GateInputs,
    tol: Tolerances,
    *,
    what: str,
) -> ParityReport:
    """Run the gate; on failure print the table on stderr and raise ParityGateError."""
    report = run_parity(module, onnx_path, inputs.batches(spec), tol)
    if not report:
        print_report(report, title=f"parity: {what}", stream="stderr")
        reasons = "; ".join(report.failures)
        raise ParityGateError(f"parity gate failed for {what}: {reasons}", report)
    return report


def parity_record(report: ParityReport, inputs: GateInputs) -> dict[str, Any]:
    """The manifest's ``parity`` entry."""
    return {**report.to_dict(), "reference": REFERENCE, "runtime": RUNTIME, **inputs.describe()}


def print_report(report: ParityReport, *, title: str, stream: str = "stdout") -> None:
    """Print the report's table (rich on a terminal, plain text otherwise)."""
    out = sys.stderr if stream == "stderr" else sys.stdout
    if out.isatty():
        Console(file=out).print(report.table(title=title))
    else:
        print(title, file=out)
        print(report.text(), file=out, flush=True)


def _as_numpy(out: Any) -> np.ndarray:
    # models may return a tuple/namedtuple (e.g. aux logits); the first output is the logits
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out.detach().float().cpu().numpy()
