"""External data of an ONNX file, checked by us before any library reads it.

An ONNX tensor may keep its bytes in another file (``location``, ``offset``, ``length``). A
file given to cnnbench may only point to regular files inside its own folder: no absolute
location, no ``..``, no link that leads out, and every byte range inside its file. Whatever the
installed onnx or onnxruntime would do with such a location (their checks have changed between
versions), a file that breaks this rule is refused here, in one line, before it is loaded.

Every path that reads a user's ONNX file goes through this check: a user model is named
(:func:`cnnbench.models.user.from_onnx`, for ``run``, ``sweep``, ``export``, ``eval``,
``build``, ``layers MODEL`` and the service), and every load of a file
(:func:`cnnbench.export.graph.load`, for ``verify`` and ``layers FILE``); an upload to the
service may have no external data at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnbench.errors import InvalidInputError

#: TensorProto.EXTERNAL (onnx.TensorProto.DataLocation)
EXTERNAL = 1


def tensors(model: Any) -> Iterator[Any]:
    """Every tensor of a ModelProto: initializers (dense and sparse), node attributes, in every
    subgraph and function."""
    yield from _graph_tensors(model.graph)
    for fn in model.functions:
        for node in fn.node:
            yield from _node_tensors(node)


def _graph_tensors(g: Any) -> Iterator[Any]:
    yield from g.initializer
    for sp in g.sparse_initializer:
        yield sp.values
        yield sp.indices
    for node in g.node:
        yield from _node_tensors(node)


def _node_tensors(node: Any) -> Iterator[Any]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        for sp in attr.sparse_tensors:
            yield sp.values
            yield sp.indices
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for sub in attr.graphs:
            yield from _graph_tensors(sub)


def is_external(t: Any) -> bool:
    return bool(t.data_location == EXTERNAL or len(t.external_data))


def external_files(model: Any, path: Path | str) -> tuple[str, ...]:
    """The files (relative to ``path``'s folder) the external tensors of ``model`` (loaded
    from ``path`` without its external data) read, each checked; one-line InvalidInputError
    for a location that leaves the folder, a missing file or a range past a file's end."""
    p = Path(path)
    folder = Path(os.path.realpath(p.parent))
    found: dict[str, None] = {}
    for t in tensors(model):
        if not is_external(t):
            continue
        entries = {e.key: e.value for e in t.external_data}
        loc = entries.get("location", "")
        where = f"{p}: tensor {t.name!r}"
        _check_location(where, loc)
        target = Path(os.path.realpath(folder / loc))
        if target != folder and folder not in target.parents:
            raise _outside(where, loc)
        if not target.is_file():
            raise InvalidInputError(
                f"{where}: its external data file {loc!r} is missing or not a regular file; "
                "keep the data files beside the model"
            )
        _check_range(where, loc, entries, target.stat().st_size)
        found[loc] = None
    return tuple(found)


def _outside(where: str, loc: str) -> InvalidInputError:
    return InvalidInputError(
        f"{where} points to external data outside the model's folder ({loc[:80]!r}); cnnbench "
        "reads external data only from files beside the model"
    )


def _check_location(where: str, loc: str) -> None:
    if not loc or "\x00" in loc:
        raise InvalidInputError(f"{where}: external data without a usable location")
    norm = loc.replace("\\", "/")
    if (
        os.path.isabs(loc)
        or norm.startswith("/")
        or (len(norm) > 1 and norm[1] == ":")
        or ".." in norm.split("/")
    ):
        raise _outside(where, loc)


def _check_range(where: str, loc: str, entries: dict[str, str], size: int) -> None:
    try:
        offset = int(entries.get("offset") or 0)
        length = int(entries["length"]) if entries.get("length") else size - offset
    except ValueError:
        raise InvalidInputError(f"{where}: external data offset/length are not integers") from None
    if offset < 0 or length < 0 or offset + length > size:
        raise InvalidInputError(
            f"{where}: external data range {offset}+{length} lies past the end of {loc!r} "
            f"({size} bytes)"
        )
