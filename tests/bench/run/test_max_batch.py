"""--find-max-batch: the search's logic on fake trials, and the command on the null engine
(which touches no GPU: this checks the wiring, `pytest -m gpu` checks a real GPU's memory)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cnnbench.bench.run.max_batch import find_max_batch, is_oom
from cnnbench.cli import cli
from cnnbench.errors import CheckFailedError

OOM = "out of memory (the engine could not allocate a buffer): OutOfMemoryError: CUDA out of memory"


def _fits_up_to(n: int, tried: list[int]) -> Any:
    def trial(b: int) -> dict[str, Any]:
        tried.append(b)
        return {"error": None if b <= n else OOM, "batch": b}

    return trial


def test_doubling_then_binary_search_finds_the_largest_batch() -> None:
    tried: list[int] = []
    found = find_max_batch(_fits_up_to(300, tried), limit=4096)
    assert found.best == 300 and found.first_failing == 301
    assert found.best_row == {"error": None, "batch": 300}
    assert tried[:10] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert len(tried) <= 10 + 8  # log2(512 - 256) more at most
    assert (512, "oom") in found.trials and (300, "ok") in found.trials
    assert json.loads(found.fields()["max_batch_trials"])[-1][0] in tried


def test_the_limit_caps_the_search_and_is_reported() -> None:
    found = find_max_batch(_fits_up_to(10**6, []), start=3, limit=20)
    assert found.best == 20 and found.hit_limit and found.first_failing is None
    assert [b for b, _ in found.trials] == [3, 6, 12, 20]


def test_a_failure_that_is_not_memory_stops_the_search() -> None:
    def trial(b: int) -> dict[str, Any]:
        return {"error": None if b < 4 else "ArtifactError: TensorRT failed to build"}

    with pytest.raises(CheckFailedError, match="not for memory"):
        find_max_batch(trial)
    with pytest.raises(CheckFailedError, match="even batch 1"):
        find_max_batch(_fits_up_to(0, []))


def test_oom_words_of_each_runtime() -> None:
    assert is_oom({"error": OOM})
    assert is_oom({"error": "RuntimeError: CUDA error: cudaErrorMemoryAllocation"})
    assert not is_oom({"error": "InvalidInputError: batch 9 is outside the profile"})
    assert not is_oom({"error": None})


def test_cli_find_max_batch_needs_a_gpu_device() -> None:
    res = CliRunner().invoke(cli, ["run", "-m", "lenet5", "-e", "ort", "--find-max-batch"])
    assert res.exit_code == 2 and "--device cuda" in res.stderr


def test_cli_find_max_batch_writes_the_search_into_the_row(tmp_path: Path) -> None:
    out = tmp_path / "mb.csv"
    args = ["run", "-m", "lenet5", "-e", "null", "--device", "cuda", "--find-max-batch",
            "--max-batch-limit", "4", "--in-process", "--min-time", "0.1", "--max-time", "1",
            "--artifacts", str(tmp_path / "a"), "-o", str(out)]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    (row,) = list(csv.DictReader(out.open()))
    assert row["batch"] == "4" and row["max_batch"] == "4" and row["max_batch_limit"] == "4"
    assert json.loads(row["max_batch_trials"]) == [[1, "ok"], [2, "ok"], [4, "ok"]]
