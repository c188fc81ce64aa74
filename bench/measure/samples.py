"""Raw latency samples, stored beside a results file so any statistic can be recomputed.

``results.csv`` gets ``results.csv.samples``: one gzip member per row, each an ``.npy`` array of
the row's per-query latencies in nanoseconds (int64). The row points to its array with
``samples_file`` (the sidecar's name, relative to the results file), ``samples_offset`` (the
member's byte offset) and ``samples_count``. Members are appended with one write and an fsync
before the row itself is appended, so a row never points to a torn array: a short write is
detected and cut back, a row that cannot be appended after its member has the member removed
(:func:`write_row`), and a torn member at the end (a killed writer) is never referenced.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.artifacts import append_whole, folder_lock
from cnnbench.errors import ArtifactError

#: the key under which a cell's row carries its samples until they are stored
SAMPLES_KEY = "_samples_ns"
SUFFIX = ".samples"


def sidecar(results: Path | str) -> Path:
    """The samples file of a results file."""
    p = Path(results)
    return p.with_name(p.name + SUFFIX)


def encode(samples: Any) -> tuple[bytes, int]:
    """Samples (ns) as one gzip member of an ``.npy`` int64 array, and their count."""
    arr = np.ascontiguousarray(samples, dtype=np.int64)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return gzip.compress(buf.getvalue(), compresslevel=1, mtime=0), int(arr.size)


def decode(data: bytes) -> np.ndarray:
    """The array :func:`encode` made."""
    return np.asarray(np.load(io.BytesIO(gzip.decompress(data)), allow_pickle=False), np.int64)


def store(results: Path | str, row: dict[str, Any]) -> int:
    """Move ``row``'s samples (``SAMPLES_KEY``) into the sidecar and point the row to them;
    the bytes appended (0 when the row has no samples)."""
    samples = row.pop(SAMPLES_KEY, None)
    if samples is None:
        return 0
    data, count = encode(samples)
    path = sidecar(results)
    # The folder lock creates the results' folder if needed (--out new/dir/r.csv) and makes the
    # offset exact when another run appends to the same file at the same time. The member is
    # appended whole or not at all (a short write is cut back), and only then does the row
    # point to it.
    with folder_lock(path):
        offset = append_whole(path, data)
    row.update(samples_file=path.name, samples_offset=offset, samples_count=count)
    return len(data)


def unstore(results: Path | str, row: dict[str, Any], size: int) -> None:
    """Undo :func:`store` (``size`` bytes) for a row that could not be appended after all: its
    member is cut from the sidecar (when it is still the last one) and the row no longer
    points to it."""
    offset = row.pop("samples_offset", None)
    row.pop("samples_file", None)
    row.pop("samples_count", None)
    if not size or offset is None:
        return
    path = sidecar(results)
    with folder_lock(path), contextlib.suppress(OSError):
        if path.stat().st_size == int(offset) + size:  # nobody appended after it
            if int(offset) == 0:
                path.unlink()
            else:
                os.truncate(path, int(offset))


def write_row(
    results: Path | str, row: dict[str, Any], append: Callable[[Path, dict[str, Any]], None]
) -> None:
    """The row's samples, then the row pointing to them (``append``): both, or neither."""
    size = store(results, row)
    try:
        append(Path(results), row)
    except BaseException:
        unstore(results, row, size)  # a failed write removes what it added
        raise


def load(results: Path | str, row: Mapping[str, Any]) -> np.ndarray | None:
    """The samples a row of ``results`` points to (ns, int64), or None when it has none."""
    name, offset = row.get("samples_file"), row.get("samples_offset")
    if not name or offset is None or offset == "":
        return None
    path = Path(results).with_name(str(name))
    try:
        with open(path, "rb") as fh:
            fh.seek(int(offset))
            arr = np.load(gzip.GzipFile(fileobj=fh), allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError) as exc:
        raise ArtifactError(
            f"samples of a row in {results} are unreadable ({exc}); rerun the cell"
        ) from None
    count = row.get("samples_count")
    if count not in (None, "") and int(count) != arr.size:
        raise ArtifactError(f"{path} at {offset}: {arr.size} samples, the row says {count}")
    return np.asarray(arr, dtype=np.int64)
