"""The machine and software a row was measured on, flattened into ``env_*`` row fields.

Nothing heavy is imported: library versions come from package metadata, the GPU from NVML
(``nvidia-ml-py``) or ``nvidia-smi`` when present, the git commit from ``git`` (or
``$CNNBENCH_GIT_COMMIT`` in images built without ``.git``).
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from cnnbench.host import usable_cpus

LIBRARIES = (
    "cnnbench", "numpy", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "openvino",
    "tensorrt", "nvidia-ml-py",
)  # fmt: skip
_REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git() -> dict[str, Any]:
    env = os.environ.get("CNNBENCH_GIT_COMMIT")
    if env:
        return {"git_commit": env, "git_dirty": None}
    if not (_REPO / ".git").exists():
        return {"git_commit": None, "git_dirty": None}
    return git_state(_REPO)


def git_state(folder: Path | str) -> dict[str, Any]:
    """``git_commit`` (HEAD) and ``git_dirty`` of the work tree holding ``folder``; both None
    where it is not in one (or there is no git)."""
    if not shutil.which("git"):
        return {"git_commit": None, "git_dirty": None}
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": head, "git_dirty": bool(dirty)}


def _gpus() -> dict[str, Any]:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            n = pynvml.nvmlDeviceGetCount()
            names = [
                _text(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
                for i in range(n)
            ]
            driver = _text(pynvml.nvmlSystemGetDriverVersion())
        finally:
            pynvml.nvmlShutdown()
        return {"gpu": "; ".join(names) or None, "gpu_count": n, "gpu_driver": driver}
    except Exception:  # no NVML library, no driver, no GPU: fall through
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout.strip().splitlines()  # fmt: skip
            if out:
                names = [line.split(",")[0].strip() for line in out]
                driver = out[0].split(",")[-1].strip()
                return {"gpu": "; ".join(names), "gpu_count": len(out), "gpu_driver": driver}
        except (OSError, subprocess.SubprocessError):
            pass
    return {"gpu": None, "gpu_count": 0, "gpu_driver": None}


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@functools.lru_cache(maxsize=1)
def capture() -> dict[str, Any]:
    """The environment block (cached per process)."""
    env: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_physical_cores": psutil.cpu_count(logical=False),
        "cpu_logical_cores": psutil.cpu_count(logical=True),
        "cpu_usable_cores": usable_cpus(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 2),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
    env.update(_gpus())
    for lib in LIBRARIES:
        v = _version(lib)
        if v is not None:
            env[f"{lib.replace('-', '_')}_version"] = v
    env.update(_git())
    return env


def env_fields() -> dict[str, Any]:
    """``capture()`` as row fields, each prefixed ``env_``."""
    return {f"env_{k}": v for k, v in capture().items()}
