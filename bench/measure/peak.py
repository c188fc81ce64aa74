"""The machine's measured matrix-multiply peak, the denominator of ``efficiency``.

``torch.mm`` of square matrices (several sizes, best rate kept) on the run's device and dtype:
GMAC/s = n^3 / time. INT8 uses ``torch._int_mm`` (int8 x int8 -> int32). Measured once per
(device model, core count, torch version, dtype, threads) and cached as JSON under
``cnnbench.artifacts.cache_dir() / "peak"``; a cache entry that does not parse or does not
match its key is measured again. ``python -m cnnbench.bench.measure.peak --device cpu --precision fp32 --force``
re-measures (e.g. after measuring on a busy machine: the load average is stored with it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from cnnbench.artifacts import atomic_write_json, cache_dir, sha256_bytes
from cnnbench.bench.measure.environment import cpu_model
from cnnbench.engines.cuda import restore_tf32, strict_fp32
from cnnbench.host import usable_cpus
from cnnbench.precision import Precision, parse_precision

_VERSION = 2  # 2: the FP32 peak with TF32 off explicitly


@dataclass(frozen=True)
class Peak:
    gmacs_per_s: float
    source: str
    cached: bool


def _torch_version() -> str:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "none"


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return str(torch.cuda.get_device_name(_index(device)))

    return f"{cpu_model()} x{usable_cpus()}"


def _index(device: str) -> int:
    _, _, idx = device.partition(":")
    return int(idx) if idx else 0


def cache_key(device: str, precision: Precision) -> dict[str, Any]:
    """What a cached peak depends on."""
    return {
        "version": _VERSION,
        "device": "cuda" if device.startswith("cuda") else "cpu",
        "device_name": _device_name(device),
        "torch": _torch_version(),
        "dtype": precision.torch_dtype_name,
    }


def _path(key: dict[str, Any]) -> Any:
    digest = sha256_bytes(json.dumps(key, sort_keys=True).encode())[:16]
    return cache_dir() / "peak" / f"{key['device']}-{key['dtype']}-{digest}.json"


def _read(path: Any, key: dict[str, Any]) -> float | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        value = float(obj["gmacs_per_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if obj.get("key") != key or not math.isfinite(value) or value <= 0:
        return None
    return value


def measure_peak(device: str, precision: Precision, seconds: float = 1.0) -> float:
    """Best GMAC/s of ``torch.mm`` over a few sizes on ``device`` in ``precision``'s dtype."""
    import torch

    cuda = device.startswith("cuda")
    dev = torch.device("cuda", _index(device)) if cuda else torch.device("cpu")
    sizes = (2048, 4096, 8192) if cuda else (256, 512, 1024)
    best = 0.0
    # the FP32 peak is FP32's: no TF32 (the torch engine turns it off for FP32 too)
    before = strict_fp32(torch) if cuda and precision == Precision.FP32 else None
    try:
        best = _best_rate(torch, precision, dev, sizes, cuda, seconds)
    finally:
        if before is not None:
            restore_tf32(torch, before)
    return best


def _best_rate(
    torch: Any, precision: Precision, dev: Any, sizes: tuple[int, ...], cuda: bool, seconds: float
) -> float:
    best = 0.0
    for n in sizes:
        if precision == Precision.INT8:
            a = torch.randint(-64, 64, (n, n), dtype=torch.int8, device=dev)
            b = torch.randint(-64, 64, (n, n), dtype=torch.int8, device=dev)

            def mm(a: Any = a, b: Any = b) -> Any:
                return torch._int_mm(a, b)
        else:
            dtype = getattr(torch, precision.torch_dtype_name)
            a = torch.randn(n, n, device=dev).to(dtype)
            b = torch.randn(n, n, device=dev).to(dtype)

            def mm(a: Any = a, b: Any = b) -> Any:
                return torch.mm(a, b)

        best = max(best, _rate(mm, n, _sync(torch, dev) if cuda else None, seconds / len(sizes)))
    return best


def _sync(torch: Any, dev: Any) -> Any:
    """Waits for the measured device: ``torch.cuda.synchronize()`` without one waits for the
    current device, which is not the measured one on cuda:N."""
    return lambda: torch.cuda.synchronize(dev)


def _rate(mm: Any, n: int, sync: Any, seconds: float) -> float:
    mm()  # first call: allocation, kernel selection
    if sync is not None:
        sync()
    reps, deadline, best = 1, time.perf_counter() + seconds, math.inf
    while True:
        if sync is not None:
            sync()
        t0 = time.perf_counter_ns()
        for _ in range(reps):
            mm()
        if sync is not None:
            sync()
        dt = (time.perf_counter_ns() - t0) / reps
        best = min(best, dt)
        if time.perf_counter() >= deadline:
            break
        if dt * reps < 5e6:
            reps *= 2
    return n**3 / best  # MAC/ns == GMAC/s


def get_peak(
    device: str, precision: Precision, *, measure: bool = True, force: bool = False
) -> Peak | None:
    """The cached (or freshly measured) peak; None when not cached and ``measure`` is False.

    Returns None as well when torch cannot run the microbenchmark on this device/dtype.
    """
    try:
        key = cache_key(device, precision)
    except Exception:  # no torch CUDA for a cuda device name: no peak
        return None
    path = _path(key)
    label = f"torch matmul {key['dtype']} on {key['device_name']}"
    if not force:
        value = _read(path, key)
        if value is not None:
            return Peak(value, label, True)
    if not measure:
        return None
    try:
        value = measure_peak(device, precision)
    except (ImportError, RuntimeError, AttributeError, TypeError):
        return None
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    atomic_write_json(
        path,
        {
            "key": key,
            "gmacs_per_s": value,
            "loadavg_1m": load1,
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    return Peak(value, label, False)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Measure and cache the matmul peak (GMAC/s).")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", type=parse_precision)
    p.add_argument("--force", action="store_true", help="re-measure even if cached")
    args = p.parse_args(argv)
    peak = get_peak(args.device, args.precision, force=args.force)
    if peak is None:
        raise SystemExit(f"no peak measurable for {args.device} {args.precision}")
    print(
        f"{peak.source}: {peak.gmacs_per_s:.2f} GMAC/s ({'cached' if peak.cached else 'measured'})"
    )


if __name__ == "__main__":
    main()
