"""The TensorRT engine cache: content-keyed, atomically written, integrity-checked on load.

An entry is ``<key>.engine`` plus ``<key>.json`` (its sha256, size and what it was built from).
The key hashes everything a plan depends on: the ONNX file's sha256, the TensorRT version, the
GPU's name and compute capability, the optimisation profile and the build options. An entry whose
bytes do not match its sidecar (truncated, corrupt, missing sidecar) is removed with a warning
and rebuilt, never trusted. Nothing here imports TensorRT.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cnnbench.artifacts import atomic_write_bytes, atomic_write_json, cache_dir, sha256_bytes
from cnnbench.batch import BatchRange
from cnnbench.precision import ONNX_PRECISIONS, Precision
from cnnbench.progress import warn

#: bump when the key's recipe or the sidecar's layout changes
#: (2: plans are built with detailed profiling verbosity, for the engine inspector)
CACHE_FORMAT = 2
MAX_OPT_LEVEL = 5


@dataclass(frozen=True)
class BuildOptions:
    """How a TensorRT engine is built. The precision comes from the ONNX file (strong typing)."""

    precision: Precision  # the ONNX file's: networks are strongly typed
    batches: BatchRange
    workspace_mb: int | None = None
    opt_level: int | None = None

    def __post_init__(self) -> None:
        if self.precision not in ONNX_PRECISIONS:  # a Precision, checked where it entered
            raise ValueError(f"precision {self.precision}: TensorRT builds ONNX files' precisions")
        if not isinstance(self.batches, BatchRange):
            raise ValueError(f"batches must be a BatchRange, got {self.batches!r}")
        if self.workspace_mb is not None and self.workspace_mb < 1:
            raise ValueError(f"workspace_mb must be >= 1, got {self.workspace_mb}")
        if self.opt_level is not None and not 0 <= self.opt_level <= MAX_OPT_LEVEL:
            raise ValueError(f"opt_level must be in 0..{MAX_OPT_LEVEL}, got {self.opt_level}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batches"] = str(self.batches)
        return d


@dataclass(frozen=True)
class BuildTarget:
    """Everything outside the build options that a serialized plan depends on."""

    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    input_name: str
    input_shape: tuple[int, ...]  # (C, H, W): the profile's non-batch dims


def cache_key(target: BuildTarget, options: BuildOptions) -> str:
    """Hex sha256 over the target and the options, in a canonical JSON form."""
    payload = {
        "format": CACHE_FORMAT,
        "onnx_sha256": target.onnx_sha256,
        "trt_version": target.trt_version,
        "gpu_name": target.gpu_name,
        "compute_capability": target.compute_capability,
        "input_name": target.input_name,
        "input_shape": list(target.input_shape),
        "profile": [options.batches.min, options.batches.opt, options.batches.max],
        "options": options.to_dict(),
    }
    return sha256_bytes(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode())


class EngineCache:
    """Serialized engines under ``root`` (default ``<cache>/tensorrt``), one pair of files a key."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "tensorrt"

    def engine_path(self, key: str) -> Path:
        return self.root / f"{key}.engine"

    def meta_path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def timing_cache_path(self, trt_version: str, gpu_name: str, compute_capability: str) -> Path:
        """One timing cache per TensorRT version and GPU, kept beside the engines."""
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower() or "gpu"
        return self.root / f"timing-trt{trt_version}-sm{compute_capability}-{gpu}.cache"

    def load(self, key: str) -> bytes | None:
        """The cached plan for ``key`` if present and intact; None (after a warning) otherwise."""
        engine, meta = self.engine_path(key), self.meta_path(key)
        if not engine.exists() and not meta.exists():
            return None
        problem = self._check(key, engine, meta)
        if isinstance(problem, bytes):
            return problem
        warn(f"TensorRT engine cache entry {engine.name}: {problem}; rebuilding")
        self.remove(key)
        return None

    def _check(self, key: str, engine: Path, meta: Path) -> bytes | str:
        try:
            info = json.loads(meta.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return "its sidecar is missing"
        except (OSError, ValueError):
            return "its sidecar is unreadable"
        if not isinstance(info, dict) or info.get("key") != key:
            return "its sidecar belongs to another entry"
        try:
            data = engine.read_bytes()
        except OSError:
            return "the engine file is missing"
        if len(data) != info.get("size"):
            return f"size {len(data)} != recorded {info.get('size')} (truncated?)"
        if sha256_bytes(data) != info.get("sha256"):
            return "sha256 mismatch (corrupt)"
        return data

    def store(self, key: str, plan: bytes, info: dict[str, Any] | None = None) -> Path:
        """Write ``plan`` then its sidecar, both atomically; return the engine's path.

        The sidecar goes last, so a crash in between leaves an entry that ``load`` rejects.
        """
        path = atomic_write_bytes(self.engine_path(key), plan)
        meta = {**(info or {}), "key": key, "size": len(plan), "sha256": sha256_bytes(plan)}
        atomic_write_json(self.meta_path(key), meta)
        return path

    def info(self, key: str) -> dict[str, Any] | None:
        """The sidecar of ``key`` (unchecked), or None."""
        try:
            data = json.loads(self.meta_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def remove(self, key: str) -> None:
        for p in (self.meta_path(key), self.engine_path(key)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
