"""Numerical parity between a reference output (PyTorch eager FP32) and a candidate (ONNX, FP16, ...).

A comparison is an object that is truthy when it passes and can explain why it failed (after
Polygraphy's comparator results)::

    report = compare(torch_logits, ort_logits, FP32_GATE)
    if not report:
        print(report.explain())

Metrics, per output (samples are the first axis; each sample is flattened):

- ``max_abs_err``: max |candidate - reference| over all elements.
- ``max_rel_err``: ``max_abs_err / max |reference|`` (a scale-free bound that does not blow up
  on logits near zero).
- ``cosine_min`` / ``cosine_mean``: cosine similarity of each sample's flattened output.
- ``top1_agreement``: fraction of samples whose argmax is the same.
- ``top5_agreement``: mean overlap ``|top5(ref) ∩ top5(cand)| / 5`` (k = min(5, classes)).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.table import Table

from cnnbench.precision import Precision, Tolerances

__all__ = [
    "FP16_GATE",
    "FP32_GATE",
    "INT8_REPORT",
    "ParityAccumulator",
    "ParityReport",
    "Tolerances",
    "compare",
    "render_reports",
    "report_from_dict",
]


# The presets are the precision table's gates (cnnbench.precision), under their old names.
FP32_GATE = Precision.FP32.gate
FP16_GATE = Precision.FP16.gate
INT8_REPORT = Precision.INT8.gate

# metric name in the report -> (tolerance field, direction, label)
_CRITERIA: tuple[tuple[str, str, str, str], ...] = (
    ("max_abs_err", "", "", "max abs error"),
    ("max_rel_err", "max_rel_err", "<=", "max rel error"),
    ("cosine_min", "min_cosine", ">=", "cosine (min)"),
    ("cosine_mean", "", "", "cosine (mean)"),
    ("top1_agreement", "min_top1_agreement", ">=", "top-1 agreement"),
    ("top5_agreement", "min_top5_agreement", ">=", "top-5 agreement"),
)


@dataclass
class ParityReport:
    """The outcome of one comparison: metrics, the bounds used, and which bounds failed."""

    name: str
    samples: int
    metrics: dict[str, float]
    tolerances: Tolerances
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def __bool__(self) -> bool:
        return self.passed

    def explain(self) -> str:
        """One line per failed criterion ('' when the comparison passed)."""
        return "\n".join(f"{self.name}: {f}" for f in self.failures)

    def rows(self) -> list[dict[str, Any]]:
        """Table rows: output, metric, value, bound, ok ('-' where no bound applies)."""
        out: list[dict[str, Any]] = []
        tol = self.tolerances.to_dict()
        for key, tol_key, op, label in _CRITERIA:
            value = self.metrics.get(key, float("nan"))
            bound = tol.get(tol_key) if tol_key else None
            ok = "-" if bound is None else ("yes" if _meets(value, op, bound) else "NO")
            out.append(
                {
                    "output": self.name,
                    "metric": label,
                    "value": value,
                    "bound": "-" if bound is None else f"{op} {bound:g}",
                    "ok": ok,
                }
            )
        return out

    def text(self) -> str:
        """A plain-text table (for logs and non-rich consumers)."""
        lines = [f"{'output':<10} {'metric':<16} {'value':>14} {'bound':>14}  ok"]
        for r in self.rows():
            lines.append(
                f"{r['output']:<10} {r['metric']:<16} {_fmt(r['value']):>14} "
                f"{r['bound']:>14}  {r['ok']}"
            )
        for extra in self.failures:
            if extra.startswith(("shape", "candidate has")):
                lines.append(f"{self.name}: {extra}")
        return "\n".join(lines)

    def table(self, title: str | None = None) -> Any:
        """A rich Table of the metrics and bounds."""
        return render_reports([self], title=title)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "samples": self.samples,
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "tolerances": self.tolerances.to_dict(),
            "failures": list(self.failures),
        }


def report_from_dict(d: dict[str, Any]) -> ParityReport:
    """Rebuild a report from ``to_dict()`` output (e.g. a manifest's ``parity``; extra keys ignored)."""
    tol = Tolerances(**{k: d.get("tolerances", {}).get(k) for k in Tolerances().to_dict()})
    metrics = {k: float(v) for k, v in d.get("metrics", {}).items()}
    return ParityReport(
        str(d.get("name", "logits")),
        int(d.get("samples", 0)),
        metrics,
        tol,
        list(d.get("failures", [])),
    )


def render_reports(reports: Iterable[ParityReport], title: str | None = None) -> Any:
    """One rich Table for several reports (e.g. one per output)."""
    table = Table(title=title)
    for col, justify in (("output", "left"), ("metric", "left"), ("value", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    table.add_column("bound", justify="right")
    table.add_column("ok", justify="center")
    for rep in reports:
        for r in rep.rows():
            ok = {"yes": "[green]yes[/]", "NO": "[bold red]NO[/]"}.get(r["ok"], "-")
            table.add_row(r["output"], r["metric"], _fmt(r["value"]), r["bound"], ok)
    return table


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    tol: Tolerances,
    *,
    name: str = "logits",
) -> ParityReport:
    """Compare ``candidate`` against ``reference`` (first axis = samples) under ``tol``.

    Shape mismatches and non-finite candidate values are failures, not exceptions.
    """
    ref = np.asarray(reference)
    cand = np.asarray(candidate)
    if ref.ndim <= 1 and cand.ndim <= 1:
        ref, cand = ref.reshape(1, -1), cand.reshape(1, -1)
    n = int(ref.shape[0]) if ref.ndim else 1
    if ref.shape != cand.shape:
        metrics = {k: float("nan") for k, *_ in _CRITERIA}
        msg = f"shape mismatch: reference {tuple(ref.shape)} vs candidate {tuple(cand.shape)}"
        return ParityReport(name, n, metrics, tol, [msg])

    r = ref.reshape(n, -1).astype(np.float64)
    c = cand.reshape(n, -1).astype(np.float64)
    failures: list[str] = []
    finite = bool(np.isfinite(c).all())
    if not finite:
        bad = int((~np.isfinite(c)).sum())
        failures.append(f"candidate has {bad} non-finite value(s) (NaN/Inf)")

    metrics = _metrics(r, c)
    tol_d = tol.to_dict()
    for key, tol_key, op, label in _CRITERIA:
        bound = tol_d.get(tol_key) if tol_key else None
        if bound is not None and not _meets(metrics[key], op, bound):
            failures.append(f"{label} {_fmt(metrics[key])} violates {op} {bound:g}")
    return ParityReport(name, n, metrics, tol, failures)


def _metrics(r: np.ndarray, c: np.ndarray) -> dict[str, float]:
    diff = np.abs(c - r)
    max_abs = float(np.nanmax(diff)) if diff.size else 0.0
    if not np.isfinite(c).all():
        max_abs = float("inf")
    scale = float(np.abs(r).max()) if r.size else 0.0
    # an all-zero reference: any error is infinitely large relative to it
    fallback = 0.0 if max_abs == 0 else float("inf")
    max_rel = max_abs / scale if scale > 0 else fallback

    with np.errstate(invalid="ignore", over="ignore"):
        nr = np.linalg.norm(r, axis=1)
        nc = np.linalg.norm(c, axis=1)
        dot = (r * c).sum(axis=1)
        denom = nr * nc
        cos = np.where(denom > 0, dot / np.where(denom > 0, denom, 1.0), 0.0)
        # two all-zero samples are identical, not orthogonal
        cos = np.where((nr == 0) & (nc == 0), 1.0, cos)
        cos = np.where(np.isfinite(cos), np.clip(cos, -1.0, 1.0), -1.0)

    width = r.shape[1]
    top1 = float((r.argmax(axis=1) == np.nan_to_num(c, nan=-np.inf).argmax(axis=1)).mean())
    k = min(5, width)
    if k > 0:
        tr = np.argsort(-r, axis=1, kind="stable")[:, :k]
        tc = np.argsort(-np.nan_to_num(c, nan=-np.inf), axis=1, kind="stable")[:, :k]
        overlap = [len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(tr, tc, strict=True)]
        top5 = float(np.mean(overlap))
    else:
        top5 = 1.0
    return {
        "max_abs_err": max_abs,
        "max_rel_err": max_rel,
        "cosine_min": float(cos.min()) if cos.size else 1.0,
        "cosine_mean": float(cos.mean()) if cos.size else 1.0,
        "top1_agreement": top1,
        "top5_agreement": top5,
    }


class ParityAccumulator:
    """Collect outputs over several batches, then compare them all at once.

    ``acc.add(ref_batch, cand_batch)`` per batch; ``acc.report(tol)`` compares the concatenation
    (so top-1 agreement and min cosine are over every sample seen).
    """

    def __init__(self, name: str = "logits") -> None:
        self.name = name
        self._ref: list[np.ndarray] = []
        self._cand: list[np.ndarray] = []

    def add(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        self._ref.append(np.asarray(reference))
        self._cand.append(np.asarray(candidate))

    @property
    def batches(self) -> int:
        return len(self._ref)

    def report(self, tol: Tolerances) -> ParityReport:
        if not self._ref:
            raise ValueError("ParityAccumulator.report() called before any add()")
        shapes = {a.shape[1:] for a in self._ref} | {a.shape[1:] for a in self._cand}
        if len(shapes) != 1:
            # mismatched per-sample shapes cannot be concatenated; report the first mismatch
            for r, c in zip(self._ref, self._cand, strict=True):
                if r.shape != c.shape:
                    return compare(r, c, tol, name=self.name)
        return compare(np.concatenate(self._ref), np.concatenate(self._cand), tol, name=self.name)


def _meets(value: float, op: str, bound: float) -> bool:
    if value != value:  # NaN never meets a bound
        return False
    return value <= bound if op == "<=" else value >= bound


def _fmt(v: Any) -> str:
    if not isinstance(v, float):
        return str(v)
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e5:
        return f"{v:.8g}"
    return f"{v:.3e}"


def _json_float(v: float) -> float | str:
    # JSON has no NaN/Inf; keep them readable as strings
    return v if math.isfinite(v) else str(v)
