"""Every precision ``cnnbench engines`` lists for an engine available here gives a row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnbench.cli import cli

QUICK = ["--warmup-count", "1", "--warmup-time", "0", "--min-count", "3", "--min-time", "0.05",
         "--max-time", "1"]  # fmt: skip


def _listed() -> list[tuple[str, str]]:
    res = CliRunner().invoke(cli, ["engines", "--format", "json"])
    assert res.exit_code == 0, res.output
    return [
        (r["name"], p) for r in json.loads(res.stdout) if r["available"] for p in r["precisions"]
    ]


@pytest.fixture(scope="module")
def art(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.mark.parametrize(("engine", "precision"), _listed())
def test_every_listed_precision_runs(
    engine: str, precision: str, art: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.jsonl"
    args = ["run", "-m", "lenet5", "-e", engine, "-p", precision, "-b", "1", "--artifacts",
            str(art), "--out", str(out), "--format", "json", *QUICK]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["error"] is None and row["samples"] >= 3
    # requested, artifact and effective precision: three named fields
    assert row["precision"] == row["artifact_precision"] == precision
    assert row["effective_precision"] in ("fp32", "fp16", "bf16", "int8", "fp8")
