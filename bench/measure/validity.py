"""Whether a measured row can be trusted: a VALID/INVALID verdict with the reasons, per row.

After MLPerf LoadGen's verdict, trtexec's stability warnings and perf_analyzer's stability
window, each row gets ``valid`` and ``invalid_reason`` (short reasons joined by ``"; "``):

* **noisy median**: the median's 95 % CI half-width is above the target (``ci_target``,
  default 2 %) although the run was extended up to ``max_time`` to reach it;
* **foreign CPU load**: other processes used more than ``MAX_FOREIGN_CPU_CORES`` cores on
  average during the measured window (system-wide busy CPU time from ``/proc/stat`` minus this
  process's own, over the wall time);
* **hypervisor steal**: the host took more than ``MAX_STEAL_CORES`` cores of CPU time from this
  machine during the window (``/proc/stat`` steal);
* **few samples**: fewer samples than the percentiles reported need (p99: 100, p90: 10);
* **unstable clock**: the CPU frequency moved by more than ``MAX_FREQ_SPREAD_PCT`` during the
  window, where ``/sys/devices/system/cpu/*/cpufreq`` shows it (``cpu_freq_source`` says
  whether it could be seen).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from cnnbench.values import num

#: other processes' average CPU use (in cores) above which the window was shared
MAX_FOREIGN_CPU_CORES = 0.25
#: CPU time taken by the hypervisor (in cores) above which the window was shared
MAX_STEAL_CORES = 0.05
#: CPU frequency spread (max - min) / max above which the clock was unstable
MAX_FREQ_SPREAD_PCT = 10.0
#: samples a percentile needs before it is reported as measured
MIN_SAMPLES = {"latency_ms_p99": 100, "latency_ms_p90": 10}
THRESHOLDS = (
    f"foreign CPU > {MAX_FOREIGN_CPU_CORES} cores; steal > {MAX_STEAL_CORES} cores; "
    f"CPU frequency spread > {MAX_FREQ_SPREAD_PCT:g}%; p99 needs >= 100 samples, p90 >= 10"
)

_FREQ = sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_cur_freq"))


def _proc_stat() -> tuple[float, float] | None:
    """(busy, steal) CPU seconds of the whole machine since boot, or None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    ticks = os.sysconf("SC_CLK_TCK")
    busy = sum(fields[:8]) - fields[3] - fields[4] - fields[7]
    steal = fields[7] if len(fields) > 7 else 0
    return busy / ticks, steal / ticks


def _own_cpu() -> float:
    t = psutil.Process().cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def _freqs_mhz() -> list[float]:
    out = []
    for p in _FREQ:
        try:
            out.append(float(p.read_text()) / 1000.0)
        except (OSError, ValueError):
            continue
    return out


class CpuWindow:
    """Watches the machine while a measurement runs: ``with CpuWindow() as w: ...; w.fields()``."""

    def __init__(self, freq_interval_s: float = 0.1) -> None:
        self._interval = freq_interval_s
        self._freqs: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start: tuple[float, float, float, float] | None = None
        self._result: dict[str, Any] = {}

    def __enter__(self) -> CpuWindow:
        if _FREQ:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        stat = _proc_stat()
        if stat is not None:
            self._start = (time.perf_counter(), stat[0] - _own_cpu(), stat[1], stat[0])
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._freqs.extend(_freqs_mhz())
            self._stop.wait(self._interval)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stat = _proc_stat()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        out: dict[str, Any] = {"foreign_cpu_cores": None, "cpu_steal_cores": None}
        if stat is not None and self._start is not None:
            wall = max(time.perf_counter() - self._start[0], 1e-9)
            foreign = (stat[0] - _own_cpu()) - self._start[1]
            out["foreign_cpu_cores"] = round(max(foreign, 0.0) / wall, 3)
            # the whole machine's busy CPU over the window, ours included
            out["busy_cpu_cores"] = round(max(stat[0] - self._start[3], 0.0) / wall, 3)
            out["cpu_steal_cores"] = round(max(stat[1] - self._start[2], 0.0) / wall, 3)
        if self._freqs:
            lo, hi = min(self._freqs), max(self._freqs)
            out.update(
                cpu_freq_mhz_min=round(lo, 1),
                cpu_freq_mhz_max=round(hi, 1),
                cpu_freq_spread_pct=round((hi - lo) / hi * 100.0, 2) if hi else None,
                cpu_freq_source="scaling_cur_freq",
            )
        else:
            out["cpu_freq_source"] = "not visible on this machine"
        self._result = out

    def guard(self) -> str | None:
        """During the window: ``foreign-load`` when other processes have used more than
        ``MAX_FOREIGN_CPU_CORES`` on average so far (the row would be invalid for it),
        ``steal`` likewise for hypervisor steal, else None (a measurement's early stop)."""
        stat = _proc_stat()
        if stat is None or self._start is None:
            return None
        wall = max(time.perf_counter() - self._start[0], 1e-9)
        if ((stat[0] - _own_cpu()) - self._start[1]) / wall > MAX_FOREIGN_CPU_CORES:
            return "foreign-load"
        if (stat[1] - self._start[2]) / wall > MAX_STEAL_CORES:
            return "steal"
        return None

    def fields(self) -> dict[str, Any]:
        """Row fields of the finished window."""
        return dict(self._result)


def row_valid(row: Mapping[str, Any]) -> bool | None:
    """A row's verdict as read back from a file: True, False, or None (a row from before
    verdicts, not known to be invalid)."""
    v = row.get("valid")
    if v is None or v == "":
        return None
    return v is True or str(v).strip().lower() in ("true", "1", "yes")


def verdict(row: Mapping[str, Any]) -> dict[str, Any]:
    """``valid`` and ``invalid_reason`` for a measured row (see the module docstring)."""
    reasons: list[str] = []
    ci, target = num(row.get("ci_half_width_pct")), num(row.get("stop_ci_target"))
    if ci is not None and target is not None and ci > target:
        reasons.append(
            f"noisy median: CI ±{ci:.1f}% > {target:g}% target after {row.get('stop_reason')}"
        )
    foreign = num(row.get("foreign_cpu_cores"))
    if foreign is not None and foreign > MAX_FOREIGN_CPU_CORES:
        reasons.append(
            f"foreign CPU load: other processes used {foreign:.2f} cores "
            f"(> {MAX_FOREIGN_CPU_CORES})"
        )
    steal = num(row.get("cpu_steal_cores"))
    if steal is not None and steal > MAX_STEAL_CORES:
        reasons.append(f"hypervisor steal: {steal:.2f} cores (> {MAX_STEAL_CORES})")
    spread = num(row.get("cpu_freq_spread_pct"))
    if spread is not None and spread > MAX_FREQ_SPREAD_PCT:
        reasons.append(f"unstable clock: CPU frequency moved {spread:.0f}%")
    n = num(row.get("samples"))
    if n is not None:
        for metric, need in MIN_SAMPLES.items():
            if num(row.get(metric)) is not None and n < need:
                reasons.append(f"few samples: {metric.split('_')[-1]} from {int(n)} (< {need})")
                break
    return {"valid": not reasons, "invalid_reason": "; ".join(reasons)}
