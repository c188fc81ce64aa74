"""ONNX graph hygiene: load, check, infer shapes, simplify (onnxslim), make deterministic, save.

Nothing here rewrites the graph by hand: checking is ``onnx.checker``, shape inference is
``onnx.shape_inference`` and simplification is onnxslim. The only edits are removing
provenance that would make two exports of the same model differ (source paths and line numbers
in stack traces, doc strings) and adding cnnbench's own deterministic metadata.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from cnnbench.errors import ArtifactError, ResourceError, first_line
from cnnbench.onnx_external import external_files
from cnnbench.progress import keep_stderr

if TYPE_CHECKING:
    import onnx

#: protobuf cannot serialise a message over 2 GiB; above this, tensors go to external data
EXTERNAL_DATA_THRESHOLD = 2**31 - 1
_NOISY_LOGGERS = (
    "torch.onnx",
    "torch.export",
    "torch._dynamo",
    "onnxscript",
    "onnxslim",
    "onnx_ir",
)


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Silence the exporters' chatter (prints, warnings, log records); yields what was printed.

    Our stdout carries results only, so exporter progress must not leak onto it.
    """
    buf = io.StringIO()
    saved = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    try:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        with (
            keep_stderr(),  # our progress lines still show
            warnings.catch_warnings(),
            contextlib.redirect_stdout(buf),
            contextlib.redirect_stderr(buf),
        ):
            warnings.simplefilter("ignore")
            yield buf
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def real_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph's inputs that are fed at run time (old exporters list initializers too)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def load(path: str | Path, *, load_external_data: bool = True) -> onnx.ModelProto:
    """Load an ONNX file; truncated/corrupt/missing files raise a one-line ArtifactError.

    The file is parsed without its external data first; external data that leaves the file's
    folder is refused (:mod:`cnnbench.onnx_external`) before any of it is read.
    """
    import onnx
    from google.protobuf.message import DecodeError

    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"ONNX file not found: {p}")
    if p.stat().st_size == 0:
        raise ArtifactError(f"{p} is empty; re-export it with cnnbench export")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError) as exc:
        raise ArtifactError(
            f"{p} is not a valid ONNX file (truncated or corrupt: {first_line(exc, 120)}); "
            "re-export it with cnnbench export"
        ) from None
    if not model.graph.node or not model.graph.input:
        raise ArtifactError(
            f"{p} is not a valid ONNX model (no graph); re-export it with cnnbench export"
        )
    if external_files(model, p) and load_external_data:
        try:
            onnx.load_external_data_for_model(model, str(p.parent))
        except (OSError, ValueError, RuntimeError) as exc:
            raise ArtifactError(
                f"{p}: its external data is unreadable ({first_line(exc, 120)})"
            ) from None
    return model


def check(model: onnx.ModelProto | str | Path, *, what: str = "exported model") -> None:
    """``onnx.checker.check_model(full_check=True)``; failures raise a one-line ArtifactError.

    Pass a path for models with external data (the checker then reads the tensors itself).
    """
    import onnx

    target = str(model) if isinstance(model, (str, Path)) else model
    try:
        onnx.checker.check_model(target, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ArtifactError(f"{what} fails onnx.checker: {first_line(exc)}") from None


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Strict shape inference (type errors and unresolvable shapes raise ArtifactError)."""
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(
            model, check_type=True, strict_mode=True, data_prop=True
        )
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise ArtifactError(f"ONNX shape inference failed: {first_line(exc)}") from None


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """Simplify with onnxslim (constant folding, dead-code removal, fusions)."""
    import onnxslim

    with quiet():
        try:
            out = onnxslim.slim(model)
        except Exception as exc:  # onnxslim raises assorted types
            raise ArtifactError(
                f"onnxslim failed to simplify the graph: {first_line(exc)}"
            ) from None
    if out is None:
        raise ArtifactError("onnxslim failed to simplify the graph (it returned no model)")
    return out


def opset_of(model: onnx.ModelProto) -> int:
    """The default-domain (ai.onnx) opset the model imports."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ArtifactError("ONNX model imports no ai.onnx opset")


def make_deterministic(model: onnx.ModelProto, metadata: dict[str, str] | None = None) -> None:
    """Strip doc strings and per-node/value metadata (stack traces hold paths and line numbers).

    Then set ``metadata`` as the model's metadata_props, sorted, so the bytes depend only on
    the graph, the weights and ``metadata``.
    """
    model.doc_string = ""
    del model.metadata_props[:]
    for key in sorted(metadata or {}):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(metadata[key])  # type: ignore[index]
    _clean_graph(model.graph)
    for fn in model.functions:
        fn.doc_string = ""
        del fn.metadata_props[:]
        for node in fn.node:
            _clean_node(node)


def _clean_graph(graph: onnx.GraphProto) -> None:
    graph.doc_string = ""
    del graph.metadata_props[:]
    for coll in (graph.input, graph.output, graph.value_info):
        for v in coll:
            v.doc_string = ""
            del v.metadata_props[:]
    for t in graph.initializer:
        t.doc_string = ""
        del t.metadata_props[:]
    for node in graph.node:
        _clean_node(node)


def _clean_node(node: onnx.NodeProto) -> None:
    node.doc_string = ""
    del node.metadata_props[:]
    for attr in node.attribute:
        attr.doc_string = ""
        if attr.HasField("g"):
            _clean_graph(attr.g)
        for g in attr.graphs:
            _clean_graph(g)


def set_metadata(path: Path, updates: dict[str, str]) -> None:
    """Rewrite ``path`` (a staged file under 2 GiB) with ``updates`` merged into its metadata."""
    import onnx

    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    props.update(updates)
    del model.metadata_props[:]
    for key in sorted(props):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, props[key]
    save(model, path)


def needs_external_data(model: onnx.ModelProto) -> bool:
    return model.ByteSize() > EXTERNAL_DATA_THRESHOLD


def save(model: onnx.ModelProto, path: Path) -> list[str]:
    """Write ``model`` to ``path`` (a fresh path in a staging folder); return external data files.

    Protos over 2 GiB keep their tensors in ``<name>.data`` beside the file.
    """
    import onnx
    from google.protobuf.message import EncodeError

    if not needs_external_data(model):
        try:
            data = model.SerializeToString()
        except (EncodeError, MemoryError):  # protobuf's answer to a failed allocation
            raise ResourceError(
                f"out of memory while serialising the ONNX file ({model.ByteSize() >> 20} MB); "
                "free memory or raise the process's limit (ulimit -v), then export again"
            ) from None
        path.write_bytes(data)
        _fsync(path)
        return []
    data_name = path.name + ".data"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data_name,
        size_threshold=1024,
    )
    _fsync(path)
    _fsync(path.parent / data_name)
    return [data_name]


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def publish(stage: Path, dest_dir: Path, names: list[str]) -> None:
    """Move ``names`` from ``stage`` into ``dest_dir`` by rename, the main file (first) last."""
    for name in [*names[1:], names[0]]:
        os.replace(stage / name, dest_dir / name)


@contextlib.contextmanager
def staging_dir(dest_dir: Path) -> Iterator[Path]:
    """A temp folder inside ``dest_dir`` (same filesystem, so publishing is a rename).

    Removed on exit, including on KeyboardInterrupt, so nothing partial survives.
    """
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest_dir))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)
