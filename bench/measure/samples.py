"""Raw latency samples, stored beside a results file so any statistic can be recomputed.

``results.csv`` gets ``results.csv.samples``: one gzip member per row, each an ``.npy`` array of
the row's per-query latencies in nanoseconds (int64). The row points to its array with
``samples_file`` (the sidecar's name, relative to the results file), ``samples_offset`` (the
member's byte offset) and ``samples_count``. Members are appended with one write and an fsync
before the row itself is appended, so a row never points to a torn array; a torn member at the
end (a killed writer) is never referenced.
"""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cnnbench.artifacts import folder_lock
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


def store(results: Path | str, row: dict[str, Any]) -> None:
    """Move ``row``'s samples (``SAMPLES_KEY``) into the sidecar and point the row to them."""
    samples = row.pop(SAMPLES_KEY, None)
    if samples is None:
        return
    data, count = encode(samples)
    path = sidecar(results)
    # The folder lock creates the results' folder if needed (--out new/dir/r.csv) and makes the
    # offset exact when another run appends to the same file at the same time.
    with folder_lock(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            offset = os.lseek(fd, 0, os.SEEK_END)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    row.update(samples_file=path.name, samples_offset=offset, samples_count=count)


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
