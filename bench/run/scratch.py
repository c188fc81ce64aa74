"""The launcher's scratch folders for a cell's processes, and what a killed launcher left.

Each step of a cell (prepare, measure) talks to its child through a temporary folder, removed
when the step ends. A launcher killed outright (kill -9, the OOM killer) removes nothing, so
each folder holds a lock (``flock`` on ``.owner``) for as long as its launcher lives: the next
launcher removes every folder of that kind whose lock it can take, since the kernel released
it when the owner died (whatever its PID namespace). A folder without the lock file (another
version's) is removed once it is a day old.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

OWNER = ".owner"
#: a folder without a lock file is left alone until it is this old (seconds)
UNLOCKED_AGE_S = 86_400.0
#: the launcher's kinds of folder: the first one a process makes sweeps them all
PREFIXES = ("cnnbench-cell-", "cnnbench-prepare-")


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder named ``prefix``..., locked while it lives, removed after; the first
    call in a process removes what killed launchers left (see the module)."""
    _remove_orphans_once()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        # locked under another name, then named: a sweeper never sees it unlocked
        fd = os.open(Path(tmp) / (OWNER + ".new"), os.O_CREAT | os.O_RDWR, 0o600)  # not inherited
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.replace(Path(tmp) / (OWNER + ".new"), Path(tmp) / OWNER)
            yield Path(tmp)
        finally:
            os.close(fd)


@functools.cache
def _remove_orphans_once() -> None:
    for kind in PREFIXES:
        remove_orphans(kind)


def remove_orphans(prefix: str, root: Path | None = None) -> list[Path]:
    """Remove the ``prefix``... folders under ``root`` (the temporary folder) whose launcher is
    gone; returns them."""
    if fcntl is None:  # pragma: no cover - not on POSIX
        return []
    removed = []
    with contextlib.suppress(OSError):
        for d in Path(root or tempfile.gettempdir()).glob(f"{prefix}*"):
            with contextlib.suppress(OSError):
                mine = d.is_dir() and not d.is_symlink() and d.stat().st_uid == os.getuid()
                if mine and _orphaned(d):
                    shutil.rmtree(d)
                    removed.append(d)
    return removed


def _orphaned(d: Path) -> bool:
    try:
        fd = os.open(d / OWNER, os.O_RDWR)
    except FileNotFoundError:  # being made right now, or another version's folder
        return time.time() - d.stat().st_mtime > UNLOCKED_AGE_S
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its launcher holds it
    finally:
        os.close(fd)
    return True
