"""The CPU this process runs on (cores to size thread pools with), and children that die with it."""

from __future__ import annotations

import ctypes
import os
import signal

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


#: set by a process for the children that must not outlive it: its pid
PARENT_ENV = "CNNBENCH_DIE_WITH_PARENT"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Where ``$CNNBENCH_DIE_WITH_PARENT`` names this process's parent: ask Linux to kill this
    process when that parent dies (prctl PR_SET_PDEATHSIG), and exit now if it already has.

    So a cell process never outlives a sweep killed with SIGKILL, nor a sweep the service it
    ran under. Elsewhere (no prctl) this does nothing.
    """
    want = os.environ.pop(PARENT_ENV, None)  # for this process only, not its own children
    if not want or not want.isdigit():
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(want):  # the parent died before the request took effect
        os._exit(1)


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child that must die with this process (see die_with_parent)."""
    return {**os.environ, PARENT_ENV: str(os.getpid()), **extra}
