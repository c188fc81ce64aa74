"""The deployment decision: constraints kept, the objective ranked, the frontier, why every
other cell is out, the nearest miss; the CLI's exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cnnbench.bench.report.recommend import Constraints, candidates, recommend
from cnnbench.bench.results.files import append_row
from cnnbench.cli import cli
from cnnbench.errors import InvalidInputError


def _row(model: str, engine: str, precision: str, batch: int, p99: float, thr: float,
         rss: float, **kw: Any) -> dict[str, Any]:  # fmt: skip
    return {"model": model, "engine": engine, "precision": precision, "device": "cpu",
            "batch": batch, "scenario": "offline", "latency_ms_p50": p99 / 2,
            "latency_ms_p99": p99, "throughput_ips": thr, "host_peak_rss_mb": rss,
            "error": None, "valid": True, "invalid_reason": "", "weights": "seeded-init:0",
            **kw}  # fmt: skip


GRID = [
    _row("resnet18", "onnxruntime", "fp32", 1, 20.0, 60.0, 300.0),
    _row("resnet18", "onnxruntime", "fp32", 8, 90.0, 110.0, 420.0),
    _row("resnet18", "openvino", "int8", 1, 9.0, 130.0, 350.0),
    _row("resnet18", "openvino", "int8", 8, 40.0, 260.0, 500.0),
    _row(
        "lenet5",
        "onnxruntime",
        "fp32",
        8,
        0.3,
        40000.0,
        80.0,
        valid=False,
        invalid_reason="foreign CPU load: 1.2 cores",
    ),  # fmt: skip
    _row("lenet5", "openvino", "int8", 8, 0.4, 30000.0, 110.0, error="boom"),
]


def _decide(rows: list[dict[str, Any]], **kw: Any) -> Any:
    return recommend(candidates(rows, {}), Constraints(**kw))


def test_the_fastest_cell_within_the_latency_bound_is_chosen_and_the_rest_say_why() -> None:
    d = _decide(GRID, p99_ms=50)
    assert d.choice is not None and d.choice.label.startswith("resnet18 openvino int8 cpu batch 8")
    assert d.runner_up is not None and d.runner_up.label.startswith(
        "resnet18 openvino int8 cpu batch 1"
    )
    why = {c.label.split(" offline")[0]: reason for c, reason in d.excluded}
    assert why["resnet18 onnxruntime fp32 cpu batch 8"] == "p99 90 ms > 50 ms"
    assert why["lenet5 onnxruntime fp32 cpu batch 8"].startswith("invalid: foreign CPU load")
    assert why["lenet5 openvino int8 cpu batch 8"] == "failed: boom"
    # the frontier over throughput, p99 and memory: each kept cell no other beats on all
    assert sorted((c.engine, c.batch) for c in d.frontier) == [
        ("onnxruntime", 1), ("openvino", 1), ("openvino", 8)
    ]  # fmt: skip


def test_the_frontier_holds_the_lowest_p99_whatever_the_objective() -> None:
    """The README's main job: the highest throughput (batch 8) was chosen; the batch-1 cell
    with the lowest p99 belongs on the frontier although another has more throughput and
    less memory (by throughput alone it was left off)."""
    rows = [_row("googlenet", "onnxruntime", "fp32", 8, 137.0, 64.3, 193.0),
            _row("resnet18", "onnxruntime", "fp32", 1, 24.4, 52.3, 208.0),
            _row("googlenet", "onnxruntime", "fp32", 1, 31.0, 41.3, 143.0),
            _row("resnet18", "onnxruntime", "fp32", 8, 150.0, 50.0, 260.0)]  # fmt: skip
    for objective in ("throughput", "latency", "memory"):
        d = _decide(rows, objective=objective)
        assert sorted((c.model, c.batch) for c in d.frontier) == [
            ("googlenet", 1), ("googlenet", 8), ("resnet18", 1)
        ], objective  # fmt: skip


def test_other_objectives_and_an_invalid_cell_allowed_and_marked() -> None:
    assert _decide(GRID, p99_ms=50, objective="latency").choice.batch == 1  # type: ignore[union-attr]
    assert _decide(GRID, objective="memory").choice.precision == "fp32"  # type: ignore[union-attr]
    d = _decide(GRID, allow_invalid=True)
    assert d.choice is not None and d.choice.model == "lenet5" and not d.choice.valid


def test_nothing_meets_the_constraints_names_the_nearest_miss() -> None:
    d = _decide(GRID, p99_ms=5)
    assert d.choice is None and d.nearest_miss is not None
    cell, why = d.nearest_miss
    assert cell.label.startswith("resnet18 openvino int8 cpu batch 1") and why == "p99 9 ms > 5 ms"


def test_repeats_are_pooled_as_medians() -> None:
    rows = [_row("m", "ort", "fp32", 1, p99, thr, 10.0, repeat=i)
            for i, (p99, thr) in enumerate([(1.0, 100.0), (3.0, 90.0), (2.0, 200.0)])]  # fmt: skip
    (c,) = candidates(rows, {})
    assert c.repeats == 3 and c.p99_ms == 2.0 and c.throughput == 100.0


def test_accuracy_constraints_need_accuracy_that_belongs_to_the_cell() -> None:
    pre = "torchvision:resnet18"
    rows = [
        _row("resnet18", "onnxruntime", "fp32", 1, 20.0, 60.0, 300.0, weights=pre,
             artifact_sha256="aa"),
        _row("resnet18", "onnxruntime", "int8", 1, 10.0, 120.0, 300.0, weights=pre,
             artifact_sha256="bb"),
        # measured on the INT8 file: 68.1 %
        {"model": "resnet18", "engine": "onnxruntime", "precision": "int8", "scenario": "accuracy",
         "top1": 68.1, "accuracy_source": "measured", "artifact_sha256": "bb", "weights": pre},
        _row("vgg11", "onnxruntime", "fp32", 1, 30.0, 40.0, 600.0),  # random weights
    ]  # fmt: skip
    cands = candidates(rows, {"resnet18": (69.76, "torchvision")})
    fp32 = next(c for c in cands if c.precision == "fp32" and c.model == "resnet18")
    int8 = next(c for c in cands if c.precision == "int8")
    assert fp32.top1.source == "published" and fp32.top1.top1 == 69.76
    assert int8.top1.source == "measured" and int8.top1.top1 == 68.1
    assert int8.top1_drop == pytest.approx(69.76 - 68.1)
    d = recommend(cands, Constraints(max_top1_drop=1.0))
    assert d.choice is not None and d.choice.precision == "fp32"
    why = {c.model + c.precision: reason for c, reason in d.excluded}
    assert why["resnet18int8"] == "top-1 drop 1.66 > 1 points"
    assert why["vgg11fp32"].startswith("accuracy unknown (random weights")


def test_bad_constraints_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="objective"):
        Constraints(objective="speed")
    with pytest.raises(InvalidInputError, match="not both"):
        Constraints(min_top1=70, max_top1_drop=1)


def test_the_command_exits_0_with_a_choice_1_without_and_2_on_bad_input(tmp_path: Path) -> None:
    results = tmp_path / "r.csv"
    for r in GRID:
        append_row(results, r)
    res = CliRunner().invoke(cli, ["recommend", str(results), "--p99-ms", "50"])
    assert res.exit_code == 0, res.output
    assert "choice: resnet18 openvino int8 cpu batch 8 offline" in res.output
    assert "Pareto frontier" in res.output and "left out" in res.output
    res = CliRunner().invoke(cli, ["recommend", str(results), "--p99-ms", "0.001"])
    assert res.exit_code == 1
    assert "nearest miss: lenet5" not in res.stderr  # invalid and failed cells are not misses
    assert "nearest miss: resnet18 openvino int8 cpu batch 1 offline" in res.stderr
    res = CliRunner().invoke(cli, ["recommend", str(results), "--format", "json", "--engine", "ov"])
    assert res.exit_code == 0 and json.loads(res.stdout)["choice"]["engine"] == "openvino"
    for bad in (["--objective", "speed"], ["--p99-ms", "-1"], ["--engine", "nope"]):
        res = CliRunner().invoke(cli, ["recommend", str(results), *bad])
        assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output
    res = CliRunner().invoke(cli, ["recommend", str(tmp_path / "missing.csv")])
    assert res.exit_code == 2 and "not found" in res.stderr


def test_speed_and_memory_within_five_percent_are_a_tie_on_the_frontier() -> None:
    """A cell 0.3 MB lighter than one three times as fast is no tradeoff: it is off the
    frontier; one a fifth lighter stays on it."""
    rows = [_row("lenet5", "onnxruntime", "fp32", 8, 0.28, 45000.0, 79.24),
            _row("lenet5", "onnxruntime", "int8", 8, 0.79, 14000.0, 79.0),
            _row("lenet5", "openvino", "int8", 8, 0.9, 12000.0, 63.0)]  # fmt: skip
    d = _decide(rows)
    assert sorted((c.engine, c.precision) for c in d.frontier) == [
        ("onnxruntime", "fp32"), ("openvino", "int8")
    ]  # fmt: skip
