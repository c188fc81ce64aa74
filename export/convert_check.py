"""Verifying a converted (FP16/INT8) file against its FP32 source, both on ONNX Runtime (CPU).

Inputs: the digits TEST split (labelled, so top-1 of both files and the drop are measured) for
1×32×32 digit models; the first calibration inputs for an image folder or .npy; otherwise
seeded random images (seed + 1, so they differ from random calibration data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnnbench.data import digits, images
from cnnbench.errors import ArtifactError, CheckFailedError, first_line
from cnnbench.export.calibration import default_source
from cnnbench.export.gate import ParityGateError, fixed_batch, ort_session, print_report
from cnnbench.export.parity import ParityAccumulator, ParityReport, Tolerances

if TYPE_CHECKING:
    from cnnbench.export.calibration import CalibrationSet
    from cnnbench.models.spec import ModelSpec

RANDOM_SAMPLES = 16
UNLABELLED_SAMPLES = 64
BATCH = 16
REFERENCE = "onnxruntime-fp32"
RUNTIME = "onnxruntime-cpu"


@dataclass(frozen=True)
class VerificationSet:
    """Inputs (N, C, H, W) float32, optional labels (N,), and where they came from."""

    source: str
    images: np.ndarray = field(repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)

    @property
    def samples(self) -> int:
        return int(self.images.shape[0])


def verification_set(
    spec: ModelSpec, calib: CalibrationSet | None, *, seed: int = 0
) -> VerificationSet:
    """The inputs a converted file of ``spec`` is verified on (see module doc)."""
    kind = calib.kind if calib is not None else default_source(spec)
    if kind == "digits":
        test = digits.load_split("test", spec)
        return VerificationSet("digits:test", test.images, test.labels)
    if calib is not None and kind in ("images", "npy"):
        x = np.concatenate(calib.batches)[:UNLABELLED_SAMPLES]
        return VerificationSet(f"{calib.source}[:{len(x)}]", x)

    count = -(-RANDOM_SAMPLES // 8)
    x = np.concatenate(images.random_batches(spec, count=count, batch=8, seed=seed + 1))
    return VerificationSet(f"random-seeded:{seed + 1}", x[:RANDOM_SAMPLES])


def run_all(session: Any, x: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """Run ``x`` through an ORT session in batches (padding the last one for a fixed-batch file)."""
    inp = session.get_inputs()[0]
    b = fixed_batch(session) or batch
    outs = []
    for i in range(0, len(x), b):
        chunk = x[i : i + b]
        n = len(chunk)
        if n < b and fixed_batch(session):
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], b - n, axis=0)])
        out = session.run(None, {inp.name: np.ascontiguousarray(chunk, dtype=np.float32)})[0]
        outs.append(np.asarray(out, dtype=np.float32)[:n])
    return np.concatenate(outs)


def _topk(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def verify(
    fp32_path: Path, candidate: Path, vset: VerificationSet, tol: Tolerances, *, basic: bool = False
) -> tuple[ParityReport, dict[str, Any] | None]:
    """Compare ``candidate`` with ``fp32_path`` on ``vset``; with labels, measure top-1/top-5.
    ``basic``: the candidate runs with basic graph optimisations only (FP8: see
    :func:`export.gate.ort_session`).

    Raises:
        ArtifactError: ONNX Runtime cannot load or run either file.
    """
    ref_sess = ort_session(fp32_path)
    cand_sess = ort_session(candidate, basic=basic)
    try:
        ref = run_all(ref_sess, vset.images)
        cand = run_all(cand_sess, vset.images)
    except Exception as exc:  # ORT's own error types
        raise ArtifactError(f"onnxruntime failed to run {candidate}: {first_line(exc)}") from None
    acc = ParityAccumulator("logits")
    acc.add(ref, cand)
    report = acc.report(tol)
    if vset.labels is None:
        return report, None
    fp32_top1 = _topk(ref, vset.labels, 1)
    top1 = _topk(cand, vset.labels, 1)
    return report, {
        "dataset": vset.source,
        "samples": vset.samples,
        "fp32_top1": fp32_top1,
        "top1": top1,
        "fp32_top5": _topk(ref, vset.labels, 5),
        "top5": _topk(cand, vset.labels, 5),
        "drop_points": round((fp32_top1 - top1) * 100.0, 4),
        "engine": RUNTIME,
    }


def parity_record(
    report: ParityReport, vset: VerificationSet, *, basic: bool = False
) -> dict[str, Any]:
    """The manifest's ``parity`` entry for a converted file."""
    return {
        **report.to_dict(),
        "reference": REFERENCE,
        "runtime": RUNTIME + (" (basic graph optimisations)" if basic else ""),
        "inputs": vset.source,
        "batches": -(-vset.samples // BATCH),
        "batch": BATCH,
    }


def enforce(
    report: ParityReport, acc: dict[str, Any] | None, max_drop: float | None, *, what: str
) -> None:
    """Raise (after printing the table) if the parity gate or the accuracy gate failed."""
    if not report:
        print_report(report, title=f"parity vs fp32: {what}", stream="stderr")
        raise ParityGateError(
            f"parity gate failed for {what}: {'; '.join(report.failures)}", report
        )
    if max_drop is None:
        return
    if acc is None:
        raise CheckFailedError(
            f"an accuracy gate for {what} needs labelled data (digits); none was used"
        )
    if acc["drop_points"] > max_drop:
        raise CheckFailedError(
            f"accuracy gate failed for {what}: top-1 {acc['top1']:.4f} vs fp32 "
            f"{acc['fp32_top1']:.4f} drops {acc['drop_points']:.2f} points > {max_drop:g}"
        )
