"""Uploaded ONNX files: size-limited, checked before anything runs, stored under their sha256.

The upload is streamed to a temporary file beside the store folder, counting bytes (over the
limit: refused, nothing kept); then parsed as ONNX without loading external data, refused if
any tensor points to external data (a single-file upload has nothing else for it to point
to, and a path in a model must never reach outside it), checked with ``onnx.checker``, and
renamed to ``<sha256>.onnx``. Nothing is unpickled. The caller's file name is never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cnnbench.artifacts import ensure_dir
from cnnbench.errors import InvalidInputError

DEFAULT_LIMIT = 2 * 2**30
_CHUNK = 1 << 20


class TooLarge(InvalidInputError):
    """An upload over the size limit (HTTP 413)."""


def save_upload(chunks: Iterable[bytes], folder: Path, *, limit: int = DEFAULT_LIMIT) -> tuple[Path, str]:  # fmt: skip
    """Check and keep an uploaded ONNX file; its stored path and sha256. One-line errors."""
    ensure_dir(folder)
    digest, size = hashlib.sha256(), 0
    fd, tmp_name = tempfile.mkstemp(prefix=".upload-", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"upload is larger than the limit of {limit} bytes")
                digest.update(chunk)
                fh.write(chunk)
        if size == 0:
            raise InvalidInputError("upload is empty; send an ONNX file")
        check_onnx(tmp)
        sha = digest.hexdigest()
        dest = folder / f"{sha}.onnx"
        os.replace(tmp, dest)
        return dest, sha
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def check_onnx(path: Path) -> None:
    """Refuse what is not a self-contained, valid ONNX model."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as exc:
        raise InvalidInputError(f"upload is not an ONNX model ({type(exc).__name__})") from None
    if not model.graph.node:
        raise InvalidInputError("upload is not an ONNX model (no graph nodes)")
    for t in _tensors(model):
        if t.data_location == onnx.TensorProto.EXTERNAL or t.external_data:
            raise InvalidInputError(
                f"upload: tensor '{t.name}' points to external data; send one self-contained "
                "file (onnx.save(..., save_as_external_data=False))"
            )
    try:
        onnx.checker.check_model(model, full_check=False)
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "invalid"
        raise InvalidInputError(f"upload fails onnx.checker: {first}") from None


def _tensors(model: Any) -> Iterable[Any]:
    g = model.graph
    yield from g.initializer
    for node in g.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
