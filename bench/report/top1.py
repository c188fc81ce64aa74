"""Which top-1 a result row may show: accuracy that belongs to the row.

* **measured**: an ``eval`` row measured on the same artifact, that is the same ONNX file
  (``artifact_sha256``), or for the torch engine, which runs no file, the same weights and
  precision;
* **published**: the model's published top-1, labelled so, only when the row's weights are
  the published ones (``torchvision:NAME``, ``timm:NAME``);
* **none**, with the reason: a row on a seeded random initialisation shows
  "random weights: accuracy not meaningful", never a published figure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cnnbench.bench.report.rows import is_accuracy_row, num

RANDOM = "random weights: accuracy not meaningful"
PRETRAINED = ("torchvision:", "timm:")


@dataclass(frozen=True)
class Top1:
    """A row's top-1 (percent) and top-5, where they come from, and a line saying how."""

    top1: float | None
    top5: float | None
    source: str  # "measured" | "published" | "random" | "" (unknown)
    detail: str

    def to_fields(self) -> dict[str, Any]:
        return {"top1": self.top1, "top5": self.top5, "top1_source": self.source,
                "top1_detail": self.detail}  # fmt: skip


NONE = Top1(None, None, "", "not measured on this artifact")


def is_random(weights: Any) -> bool:
    return str(weights or "").startswith("seeded-init:") or not weights


def _identity(row: Mapping[str, Any]) -> tuple[str, ...]:
    """What an accuracy was measured on: the ONNX file (its sha256); for the torch engine,
    which runs no file, the weights and precision; for a row that names no file (older
    results), its engine, precision and weights."""
    model, engine = str(row.get("model")), str(row.get("engine"))
    sha = row.get("artifact_sha256")
    if sha and engine != "torch":
        return ("file", model, str(sha))
    key = (model, str(row.get("weights")), str(row.get("precision")))
    return ("torch", *key) if engine == "torch" else ("engine", engine, *key)


class Accuracy:
    """The measured accuracy of a set of rows (their ``eval`` rows), to look up per row."""

    def __init__(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self._measured: dict[tuple[str, ...], Mapping[str, Any]] = {}
        for r in rows:
            if is_accuracy_row(r) and num(r.get("top1")) is not None and not r.get("error"):
                self._measured[_identity(r)] = r  # the latest evaluation wins

    def of(self, row: Mapping[str, Any], published: float | None, source: str | None) -> Top1:
        """The top-1 that ``row`` may show (``published``: its model's published figure)."""
        if str(row.get("engine")) == "null":
            return Top1(None, None, "", "null engine: no model")
        acc = self._measured.get(_identity(row))
        if acc is not None:
            n = num(acc.get("images")) or num(acc.get("samples"))
            where = f"{acc.get('dataset') or 'dataset'}" + (f" ({int(n)} images)" if n else "")
            return Top1(
                num(acc.get("top1")), num(acc.get("top5")), "measured",
                f"measured on {where} with {acc.get('engine')} {acc.get('precision')}",
            )  # fmt: skip
        weights = row.get("weights")
        if is_random(weights):
            return Top1(None, None, "random", RANDOM)
        if str(weights).startswith(PRETRAINED) and published is not None:
            return Top1(published, None, "published", f"published: {source or 'model spec'}")
        return NONE
