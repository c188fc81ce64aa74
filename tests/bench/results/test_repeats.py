"""Repeats: each cell measured in several processes, and compare deciding on the repeats."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnbench.bench.results.compare import compare_files
from cnnbench.bench.results.files import append_row, cell_key
from cnnbench.bench.results.repeats import exact_mann_whitney
from cnnbench.bench.run.sweep_config import SweepConfig, config_from_mapping
from cnnbench.errors import InvalidInputError
from cnnbench.precision import Precision


def _file(path: Path, p50s: list[float], **extra: object) -> Path:
    for i, v in enumerate(p50s):
        append_row(path, {
            "model": "lenet5", "engine": "onnxruntime", "precision": "fp32", "device": "cpu",
            "batch": 1, "scenario": "offline", "error": None, "repeat": i,
            "latency_ms_p50": v, "throughput_ips": 1000.0 / v, "valid": True, **extra,
        })  # fmt: skip
    return path


def test_repeats_that_overlap_are_never_a_regression(tmp_path: Path) -> None:
    base = _file(tmp_path / "b.csv", [1.00, 1.25, 0.98])
    new = _file(tmp_path / "n.csv", [1.20, 0.99, 1.02])  # median +2%, spread 25%
    cmp = compare_files(base, new, threshold_pct=1)
    assert not cmp.regressions
    assert {r["status"] for r in cmp.rows} == {"inconclusive"}
    assert cmp.rows[0]["repeats"] == "3/3" and "overlap" in cmp.rows[0]["note"]


def test_repeats_all_worse_beyond_the_threshold_are_a_regression(tmp_path: Path) -> None:
    base = _file(tmp_path / "b.csv", [1.00, 1.02, 0.98])
    new = _file(tmp_path / "n.csv", [1.50, 1.45, 1.55])
    cmp = compare_files(base, new, threshold_pct=10)
    assert [r["status"] for r in cmp.rows] == ["regression", "regression"]
    assert cmp.rows[0]["ratio_ci_low"] > 1.1 and cmp.rows[0]["p_value"] == pytest.approx(0.1)


def test_invalid_repeats_are_left_out(tmp_path: Path) -> None:
    base = _file(tmp_path / "b.csv", [1.00, 1.02, 0.98])
    new = _file(tmp_path / "n.csv", [1.50, 1.45], valid=False)
    cmp = compare_files(base, new, threshold_pct=10)
    assert {r["status"] for r in cmp.rows} == {"inconclusive"} and not cmp.regressions


def test_exact_mann_whitney() -> None:
    assert exact_mann_whitney([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    assert exact_mann_whitney([1, 4, 5], [2, 3, 6]) == pytest.approx(1.0)


def test_a_grid_with_repeats_runs_every_cell_again_with_its_own_key() -> None:
    cfg = SweepConfig(("lenet5",), ("null",), (Precision.FP32,), (1, 2), ("offline",), repeats=3)
    specs, _ = cfg.cells()
    assert [s.repeat for s in specs] == [0, 0, 1, 1, 2, 2]
    keys = [s.key() for s in specs]
    assert len(set(keys)) == 6 and keys[2].endswith("#r1")
    assert cell_key({"model": "m", "repeat": 2}, repeat=False) == cell_key({"model": "m"})
    grid = {"models": ["lenet5"], "engines": ["null"], "precisions": ["fp32"], "batches": [1],
            "scenarios": ["offline"], "repeats": 0}  # fmt: skip
    with pytest.raises(InvalidInputError, match="repeats"):  # checked where a grid is read
        config_from_mapping(grid, src="grid", base=Path("."))
