"""Samples are never torn: a short write is detected, a failed write removes what it added, and
a row never points at bytes that are not there."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnbench import artifacts
from cnnbench.bench.measure import samples
from cnnbench.bench.results.files import append_row, read_rows


def _row(n: int = 500) -> dict[str, Any]:
    return {"model": "lenet5", "engine": "null", "precision": "fp32", "device": "cpu",
            "batch": 1, "scenario": "offline", samples.SAMPLES_KEY: np.arange(n, dtype=np.int64)}  # fmt: skip


def _short_writes(monkeypatch: pytest.MonkeyPatch, *, then: str) -> None:
    """os.write writes half of what it is given, then fails (``then='error'``: ENOSPC) or
    writes nothing (``then='zero'``), as on a full disk."""
    real = os.write
    calls = {"n": 0}

    def write(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real(fd, bytes(data)[: max(1, len(data) // 2)])
        if then == "zero":
            return 0
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(artifacts.os, "write", write)


@pytest.mark.parametrize("then", ["error", "zero"])
def test_a_short_write_is_cut_back_and_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, then: str
) -> None:
    out = tmp_path / "r.csv"
    first = _row()
    samples.write_row(out, first, append_row)  # one whole member and its row
    size = samples.sidecar(out).stat().st_size
    _short_writes(monkeypatch, then=then)
    second = _row(800)
    with pytest.raises(OSError):
        samples.write_row(out, second, append_row)
    assert samples.sidecar(out).stat().st_size == size  # what it added is gone
    assert "samples_offset" not in second
    [row] = read_rows(out)
    assert samples.load(out, row).size == 500


def test_a_failed_first_write_leaves_no_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "r.csv"
    _short_writes(monkeypatch, then="error")
    with pytest.raises(OSError):
        samples.write_row(out, _row(), append_row)
    assert not samples.sidecar(out).exists() and not out.exists()


def test_a_row_that_cannot_be_written_takes_its_member_back(tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    samples.write_row(out, _row(), append_row)
    size = samples.sidecar(out).stat().st_size

    def disk_full(path: Path, row: dict[str, Any]) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    row = _row(700)
    with pytest.raises(OSError):
        samples.write_row(out, row, disk_full)
    assert samples.sidecar(out).stat().st_size == size
    assert not {"samples_file", "samples_offset", "samples_count"} & set(row)
