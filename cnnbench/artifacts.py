"""Atomic writes, content hashes and the artifact/cache folders.

Every file cnnbench writes goes through :func:`atomic_path` (write to a temp file in the same
folder, fsync, rename), so an interrupted run never leaves a truncated file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnbench.errors import ArtifactError, InvalidInputError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

DEFAULT_ARTIFACTS = Path("artifacts")


def cache_dir() -> Path:
    """The cache root: $CNNBENCH_CACHE, else $XDG_CACHE_HOME/cnnbench, else ~/.cache/cnnbench."""
    env = os.environ.get("CNNBENCH_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "cnnbench"


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents) or raise a one-line error if that is impossible."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot create directory {path}: {exc.strerror or exc}; choose a writable --out"
        ) from None
    if not os.access(path, os.W_OK):
        raise InvalidInputError(f"directory {path} is not writable; choose a writable --out")
    return path


def probe_writable(folder: Path, what: str = "files") -> None:
    """Raise a one-line error unless a file can be created in ``folder`` (created if missing,
    then removed again, so the probe leaves no folder behind)."""
    made: list[Path] = []
    try:
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        for p in reversed(missing):
            p.mkdir()
            made.append(p)
        fd, probe = tempfile.mkstemp(prefix=".cnnbench-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InvalidInputError(
            f"cannot write {what} under {folder}: {exc.strerror or exc}; choose a writable --out"
        ) from None
    finally:
        for p in reversed(made):
            with contextlib.suppress(OSError):
                p.rmdir()


@contextlib.contextmanager
def new_dir(path: Path) -> Iterator[Path]:
    """Create ``path`` (and missing parents) for a step; if the step fails, remove the folders
    it created that are still empty, so a failure never leaves an empty folder behind."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    ensure_dir(path)
    try:
        yield path
    except BaseException:
        for p in missing:  # deepest first
            with contextlib.suppress(OSError):
                p.rmdir()
        raise


@contextlib.contextmanager
def folder_lock(path: Path | str) -> Iterator[None]:
    """Hold an exclusive advisory lock on the folder that holds ``path`` (created if missing).

    Two processes that add rows to one results file take turns: the header write, a rewrite
    that widens the header and an append are each done under the lock. The lock is on the folder,
    not the file, because a rewrite replaces the file (a new inode), and it leaves no lock file
    behind. Where ``fcntl`` is missing (Windows) this is a no-op.
    """
    folder = ensure_dir(Path(path).parent)
    if fcntl is None:  # pragma: no cover - not on POSIX
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def atomic_path(dest: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside ``dest``; on success rename it over ``dest``, else delete it.

    Deletion also happens on KeyboardInterrupt, so Ctrl-C never leaves a partial file.
    """
    dest = Path(dest)
    ensure_dir(dest.parent)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{dest.name}.", suffix=suffix + ".tmp", dir=dest.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the final file the mode a plain open() would (umask applied).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def append_whole(path: Path | str, data: bytes) -> int:
    """Append ``data`` to ``path`` whole, or not at all; the offset it starts at.

    ``os.write`` may write less than it is given (a full disk, a file-size limit): the rest is
    written in a loop, and a write that fails, or writes nothing, removes what this call added
    (the file is cut back to its old length, or removed if this call created it) before the
    error goes up. So a reader never finds a torn record that someone points to. Callers hold
    the file's folder lock (:func:`folder_lock`), so nobody appends in between.
    """
    p = Path(path)
    created = not p.exists()
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        offset = os.lseek(fd, 0, os.SEEK_END)
        try:
            view, done = memoryview(data), 0
            while done < len(data):
                n = os.write(fd, view[done:])
                if n <= 0:
                    raise OSError(28, f"short write to {p}: {done} of {len(data)} bytes")
                done += n
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, offset)
                if created and offset == 0:
                    p.unlink()
            raise
        return offset
    finally:
        os.close(fd)


def atomic_write_bytes(dest: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically and return ``dest``."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def atomic_write_text(dest: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``dest`` atomically and return ``dest``."""
    return atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_write_json(dest: Path | str, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    return atomic_write_text(dest, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    except FileNotFoundError:
        raise ArtifactError(f"file not found: {path}") from None
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def require_file(path: Path | str, what: str = "file") -> Path:
    """Return ``path`` if it is an existing readable file, else raise a one-line ArtifactError."""
    p = Path(path)
    if not p.is_file():
        if p.exists():
            raise ArtifactError(f"{what} {p} is not a regular file; give the path of a file")
        raise ArtifactError(f"{what} not found: {p}")
    return p
