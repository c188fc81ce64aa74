"""The CPU this process runs on: cores to size thread pools with."""

from __future__ import annotations

import os

import psutil


def physical_cores() -> int:
    """Physical CPU cores (psutil), at least 1: the default thread count of CPU engines."""
    return psutil.cpu_count(logical=False) or psutil.cpu_count() or 1


def usable_cpus() -> int:
    """Logical CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
