"""The launcher's scratch folders: a killed launcher's are removed by the next, a live one's
never (bench/run/scratch.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cnnbench.bench.run.scratch import OWNER, UNLOCKED_AGE_S, remove_orphans

HOLDER = """
import sys, time
from cnnbench.bench.run.scratch import scratch
with scratch("cnnbench-cell-") as d:
    print(d, flush=True)
    time.sleep(60)
"""


def _holder(tmp: Path) -> tuple[subprocess.Popen[str], Path]:
    """A process that holds a scratch folder under ``tmp``, and that folder."""
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER], env=env, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_a_killed_launchers_folders_go_and_a_live_ones_stay(tmp_path: Path) -> None:
    live, kept = _holder(tmp_path)
    dead, left = _holder(tmp_path)
    try:
        dead.send_signal(signal.SIGKILL)
        dead.wait(timeout=10)
        assert left.is_dir() and (left / OWNER).is_file()  # kill -9 removes nothing
        assert remove_orphans("cnnbench-cell-", tmp_path) == [left]
        assert not left.exists() and kept.is_dir()
        assert remove_orphans("cnnbench-cell-", tmp_path) == []
    finally:
        live.kill()
        live.wait(timeout=10)
    assert remove_orphans("cnnbench-cell-", tmp_path) == [kept]


def test_a_folder_without_a_lock_is_removed_only_when_a_day_old(tmp_path: Path) -> None:
    young, old = tmp_path / "cnnbench-cell-young", tmp_path / "cnnbench-cell-old"
    other = tmp_path / "cnnbench-cell-file"  # the name, but not a folder: not ours
    for d in (young, old):
        d.mkdir()
        (d / "cell.json").write_text("{}")
    other.write_text("not a folder")
    past = time.time() - UNLOCKED_AGE_S - 60
    os.utime(old, (past, past))
    assert remove_orphans("cnnbench-cell-", tmp_path) == [old]
    assert young.is_dir() and other.is_file()
