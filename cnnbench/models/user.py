"""Your own model: an ONNX file (``--model path.onnx``) or a PyTorch ``nn.Module`` factory
(``--model package.module:callable``), benchmarked and exported like a zoo model.

A user model gets a :class:`ModelSpec` (name, input shape, classes, preprocessing) and a place
in the registry, so every path that takes a zoo name takes it too. It is read once, where it
is named (a flag, a sweep file, a request); cells and preparation run in child processes, and
the cell spec carries the :class:`UserModel` there (:meth:`UserModel.to_dict`), where
:func:`adopt` registers it again without reading the file.

Identity: an ONNX model is its name (the file stem, or ``--name``) plus its file's sha256; the
sha256 is part of its weights id, so an edited file under the same name is imported again. A
module is its ``module:callable`` text, its name the callable's (or ``--name``).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnbench.artifacts import require_file, sha256_file
from cnnbench.errors import InvalidInputError, first_line
from cnnbench.limits import BATCH
from cnnbench.models.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, Preprocessing
from cnnbench.onnx_external import external_files

if TYPE_CHECKING:
    from torch import nn

FAMILY = "user"
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")
#: the largest C, H or W a model may declare (its memory is checked before any work, too)
MAX_DIM = 1 << 20


def is_user_model(text: str) -> bool:
    """Whether ``text`` names a user model (an ``.onnx`` path or ``module:callable``)."""
    return text.lower().endswith(".onnx") or bool(_FACTORY.match(text))


@dataclass(frozen=True)
class UserModel:
    """What cnnbench knows of a user's model."""

    name: str
    kind: str  # "onnx" | "module"
    source: str  # absolute path of the ONNX file, or "module:callable"
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sha256: str | None = None  # the ONNX file's
    input_name: str = "input"
    #: an ONNX file's fixed batch size (None: a dynamic batch axis)
    fixed_batch: int | None = None
    #: an ONNX file's external data files, relative to its folder (checked to stay inside it)
    external_files: tuple[str, ...] = ()

    @property
    def dynamic_batch(self) -> bool:
        return self.fixed_batch is None

    def spec(self) -> ModelSpec:
        c, h, _ = self.input_shape
        what = "ONNX file" if self.kind == "onnx" else "PyTorch module factory"
        return ModelSpec(
            name=self.name,
            family=FAMILY,
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            preprocessing=Preprocessing(resize=h, crop=h, mean=self.mean, std=self.std),
            paper=f"user {what}: {self.source}",
            imagenet=False,
            notes=f"{what} {self.source}"
            + (f" (sha256 {self.sha256[:12]})" if self.sha256 else ""),
        )

    def to_dict(self) -> dict[str, Any]:
        """The record a cell spec carries to child processes (JSON-safe)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UserModel:
        """The record of :meth:`to_dict`, decoded (nothing is read again)."""
        return cls(
            **{
                **d,
                "input_shape": tuple(d["input_shape"]),
                "mean": tuple(d["mean"]),
                "std": tuple(d["std"]),
                "external_files": tuple(d.get("external_files") or ()),
            }
        )

    @property
    def weights_id(self) -> str:
        """The identity the artifact cache keys on (its manifest's ``weights``)."""
        return f"onnx-sha256:{self.sha256}" if self.kind == "onnx" else f"module:{self.source}"


def _parts(text: str | tuple[Any, ...]) -> tuple[Any, ...]:
    """A tuple as given, or the items of a comma-separated text ("3,64,64")."""
    return text if isinstance(text, tuple) else tuple(p for p in str(text).split(",") if p)


def _shape(text: str | tuple[int, ...] | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    parts = _parts(text)
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise InvalidInputError(
            f"--input-shape takes C,H,W or N,C,H,W integers, got {text!r}"
        ) from None
    if len(dims) == 4:
        dims = dims[1:]
    if len(dims) != 3 or min(dims) <= 0 or max(dims) > MAX_DIM:
        raise InvalidInputError(
            f"--input-shape takes C,H,W or N,C,H,W positive integers, got {text!r}"
        )
    return dims


def _norm(
    values: str | tuple[float, ...] | None, c: int, default: tuple[float, ...], what: str
) -> tuple[float, ...]:
    if values is None:
        return default if len(default) == c else (0.5,) * c
    parts = _parts(values)
    try:
        out = tuple(float(p) for p in parts)
    except ValueError:
        raise InvalidInputError(
            f"--{what} takes {c} comma-separated numbers, got {values!r}"
        ) from None
    if len(out) == 1:
        out = out * c
    if len(out) != c or (what == "std" and min(out) <= 0):
        raise InvalidInputError(f"--{what} takes {c} numbers (one per channel), got {values!r}")
    return out


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidInputError(f"--name must be letters, digits, '.', '_' or '-', got {name!r}")
    return name


def from_onnx(
    path: str | Path,
    *,
    input_shape: str | tuple[int, ...] | None = None,
    name: str | None = None,
    mean: str | tuple[float, ...] | None = None,
    std: str | tuple[float, ...] | None = None,
) -> UserModel:
    """A user model from an ONNX file: input name, shape and dynamic batch read from the file
    (``input_shape`` sets what the file leaves open, or overrides it), classes from the output."""
    import onnx

    p = require_file(path, "ONNX file").resolve()
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as exc:
        raise InvalidInputError(f"cannot read ONNX file {p}: {first_line(exc)}") from None
    weights = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in weights]
    if len(inputs) != 1 or len(proto.graph.output) != 1:
        raise InvalidInputError(
            f"{p} has {len(inputs)} input(s) and {len(proto.graph.output)} output(s); "
            "cnnbench benchmarks image classifiers: one input (N,C,H,W), one output (N,classes)"
        )
    dims = [
        d.dim_value if d.HasField("dim_value") else None
        for d in inputs[0].type.tensor_type.shape.dim
    ]
    out_dims = [
        d.dim_value if d.HasField("dim_value") else None
        for d in proto.graph.output[0].type.tensor_type.shape.dim
    ]
    if len(dims) != 4:
        raise InvalidInputError(f"{p}: input {inputs[0].name!r} has {len(dims)} dims; need N,C,H,W")
    _check_dims(p, dims)
    files = external_files(proto, p)
    given = _shape(input_shape)
    if given is None and not all(dims[1:]):
        raise InvalidInputError(
            f"{p}: input {inputs[0].name!r} leaves C,H,W open ({dims}); give --input-shape C,H,W"
        )
    chw = given or tuple(int(d) for d in dims[1:])  # type: ignore[arg-type]
    classes = out_dims[-1] if out_dims and len(out_dims) == 2 else None
    if not classes:
        raise InvalidInputError(
            f"{p}: the output must be (N, classes) with a fixed class count, got {out_dims}"
        )
    c = chw[0]
    return UserModel(
        name=_check_name(name or p.stem),
        kind="onnx",
        source=str(p),
        input_shape=chw,  # type: ignore[arg-type]
        num_classes=int(classes),
        mean=_norm(mean, c, IMAGENET_MEAN, "mean"),
        std=_norm(std, c, IMAGENET_STD, "std"),
        sha256=sha256_file(p),
        input_name=inputs[0].name,
        fixed_batch=dims[0] or None,
        external_files=files,
    )


def _check_dims(p: Path, dims: list[int | None]) -> None:
    """A declared batch within :data:`cnnbench.limits.BATCH` and C, H, W within
    :data:`MAX_DIM` (what they cost in memory is :mod:`cnnbench.footprint`'s to check)."""
    if dims[0] and dims[0] > BATCH.hi:
        raise InvalidInputError(
            f"{p}: its fixed batch {dims[0]} is beyond the largest batch, {int(BATCH.hi)}"
        )
    if any(d is not None and d > MAX_DIM for d in dims[1:]):
        raise InvalidInputError(
            f"{p}: its input declares {dims[1:]}; C, H and W must each be at most {MAX_DIM}"
        )


def factory(source: str) -> Callable[[], nn.Module]:
    """The callable named by ``module:callable``, imported from the working directory or the
    environment; one line naming what is missing otherwise."""
    mod_name, _, attr = source.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise InvalidInputError(
            f"cannot import {mod_name!r} for --model {source}: {first_line(exc)}"
        ) from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise InvalidInputError(f"--model {source}: {mod_name} has no callable {attr!r}")
    return fn  # type: ignore[no-any-return]


def build_module(source: str) -> nn.Module:
    import torch

    model = factory(source)()
    if not isinstance(model, torch.nn.Module):
        raise InvalidInputError(
            f"--model {source} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def from_module(
    source: str,
    *,
    input_shape: str | tuple[int, ...] | None = None,
    name: str | None = None,
    mean: str | tuple[float, ...] | None = None,
    std: str | tuple[float, ...] | None = None,
) -> UserModel:
    """A user model from a factory: built once here, on a zero input, for its class count."""
    import torch

    chw = _shape(input_shape)
    if chw is None:
        raise InvalidInputError(f"--model {source} needs --input-shape C,H,W")
    model = build_module(source).eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros((1, *chw)))
    except Exception as exc:
        raise InvalidInputError(
            f"--model {source} fails on a {chw} input: {first_line(exc)}"
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise InvalidInputError(
            f"--model {source} must return (N, classes) logits, got {getattr(out, 'shape', type(out))}"
        )
    return UserModel(
        name=_check_name(name or source.rpartition(":")[2]),
        kind="module",
        source=source,
        input_shape=chw,  # type: ignore[arg-type]
        num_classes=int(out.shape[1]),
        mean=_norm(mean, chw[0], IMAGENET_MEAN, "mean"),
        std=_norm(std, chw[0], IMAGENET_STD, "std"),
    )


def resolve(text: str, **options: Any) -> UserModel:
    """The user model ``text`` names (see :func:`is_user_model`)."""
    if text.lower().endswith(".onnx"):
        return from_onnx(text, **options)
    return from_module(text, **options)


#: the user models named in this process (by a flag, a sweep file, or a cell spec)
_KNOWN: dict[str, UserModel] = {}


def known() -> dict[str, UserModel]:
    """The user models named in this process, by name."""
    return dict(_KNOWN)


def remember(um: UserModel) -> None:
    """Know ``um`` in this process; two different models may not share a name."""
    old = _KNOWN.get(um.name)
    if old is not None and old != um:
        raise InvalidInputError(
            f"two different models are both named {um.name!r} ({old.source}, {um.source}); "
            "give one of them --name"
        )
    _KNOWN[um.name] = um


def forget_all() -> None:
    """Forget every user model named in this process (tests, a service between requests)."""
    _KNOWN.clear()


def user_model(name: str) -> UserModel | None:
    return _KNOWN.get(name)
