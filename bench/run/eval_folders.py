"""Accuracy on a labelled image folder (``cnnbench eval MODEL --data DIR``), as a results row.

The folder is opened and checked first (cheap, one-line errors: layout, labels, class range),
then :func:`bench.run.accuracy.evaluate` runs it through the engine at the precision, exactly as for
the built-in datasets: ONNX export / conversion from the cache, fixed-batch engines with the
last batch padded.

:func:`accuracy_row` turns any ``evaluate`` result into one results row: the benchmark
contract's columns plus ``top1`` / ``top5`` in percent, ``accuracy_source = "measured"``,
``dataset`` and ``images``, with ``scenario = "accuracy"``. Appended to a run's results file
(``--out``), ``cnnbench report`` shows it as the measured top-1 of that model, engine and
precision, instead of the published figure.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cnnbench.bench.measure.environment import env_fields
from cnnbench.bench.run.accuracy import evaluate
from cnnbench.bench.run.prepare import model_facts
from cnnbench.data.folders import open_dataset
from cnnbench.models import get_spec
from cnnbench.progress import note, warn

ACCURACY_SCENARIO = "accuracy"


def eval_folder(
    model: str,
    data: str | Path,
    *,
    labels: str | Path | None = None,
    workers: int = 4,
    max_bad: int | float = 0.01,
    progress: bool = True,
    **evaluate_kwargs: Any,
) -> dict[str, Any]:
    """Evaluate ``model`` on the image folder ``data`` (see ``cnnbench.data.folders``).

    Args:
        model: zoo name.
        data: ImageFolder root, or a flat folder with ``labels``.
        labels: labels file (flat layout) or class-index JSON (ImageFolder).
        workers: decoding threads.
        max_bad: unreadable images tolerated (count, or fraction < 1).
        progress: show a progress bar.
        **evaluate_kwargs: passed to :func:`bench.run.accuracy.evaluate` (weights, precision,
            engine, batch, artifacts, calib_data, seed, threads, ...).

    Returns:
        ``evaluate``'s result (top1/top5 as fractions) plus ``dataset_path``, ``layout``,
        ``images`` (evaluated) and ``unreadable`` (skipped).
    """
    ds = open_dataset(data, get_spec(model), labels_file=labels)
    ds.workers, ds.max_bad, ds.progress = workers, max_bad, progress
    if evaluate_kwargs.get("weights") is None:
        warn(f"no --weights: {model} has seeded random weights, so its accuracy is near chance")
    note(f"eval {model}: {len(ds)} images in {ds.root} ({ds.layout})")
    result = evaluate(model, dataset=ds, **evaluate_kwargs)
    if ds.bad:
        shown = ", ".join(f"{p.name} ({why})" for p, why in ds.bad[:3])
        warn(f"{len(ds.bad)} unreadable image(s) skipped: {shown}")
    result.update(
        dataset_path=str(ds.root),
        layout=ds.layout,
        images=result["samples"],
        unreadable=len(ds.bad),
    )
    return result


def accuracy_row(result: dict[str, Any], *, device: str = "cpu") -> dict[str, Any]:
    """One results row (see the module docstring) from an ``evaluate`` result."""

    def pct(v: Any) -> float | None:
        return None if v is None else round(100.0 * float(v), 4)

    row: dict[str, Any] = {
        "model": result["model"],
        "engine": result["engine"],
        "precision": result["precision"],
        "device": device,
        "batch": result.get("batch"),
        "scenario": ACCURACY_SCENARIO,
        "samples": result.get("samples"),
        "error": None,
        "top1": pct(result.get("top1")),
        "top5": pct(result.get("top5")),
        "accuracy_source": result.get("source", "measured"),
        "dataset": result.get("dataset"),
        "dataset_path": result.get("dataset_path"),
        "dataset_layout": result.get("layout"),
        "images": result.get("images", result.get("samples")),
        "unreadable": result.get("unreadable", 0),
        "eval_s": result.get("seconds"),
        "weights": result.get("weights"),
        "artifact": result.get("onnx"),
        "artifact_sha256": result.get("onnx_sha256"),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    row.update(model_facts(result["model"]))
    row.update(env_fields())
    return row
