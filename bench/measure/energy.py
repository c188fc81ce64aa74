"""Energy over the measured window, per image.

GPU: NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, millijoules since
the driver loaded; Volta and later), read when the measured window starts and when it ends.
Where the counter is not supported, a thread samples ``nvmlDeviceGetPowerUsage`` (milliwatts)
and integrates it over the window (trapezoids); ``energy_source`` says which.

CPU: Linux RAPL through ``/sys/class/powercap`` (``energy_uj`` of each package zone, wrap-around
handled with ``max_energy_range_uj``). Since Linux 5.10 ``energy_uj`` is readable by root only;
where no zone is readable, the energy columns stay empty and ``energy_note`` says why.

Both figures are the whole device's (every process on the GPU, the whole CPU package), not this
process's: on a shared machine they are an upper bound for the cell.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnbench.bench.measure.memory import nvml_handle
from cnnbench.engines.cuda import CudaIds

POWERCAP = Path("/sys/class/powercap")

SOURCE_NVML_ENERGY = "NVML total energy counter (whole GPU)"
SOURCE_NVML_POWER = "NVML power samples, integrated (whole GPU)"
SOURCE_RAPL = "RAPL package energy (whole CPU package)"


@dataclass(frozen=True)
class RaplZone:
    """One RAPL package zone: where its counter is and where it wraps."""

    path: Path
    max_uj: int

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


def rapl_zones(root: Path = POWERCAP) -> tuple[list[RaplZone], str | None]:
    """The readable package zones under ``root`` and, when there are none, why."""
    if not root.is_dir():
        return [], f"no RAPL here ({root} absent)"
    zones: list[RaplZone] = []
    denied = 0
    for zone in sorted(root.iterdir()):
        try:
            name = (zone / "name").read_text().strip()
        except OSError:
            continue
        if not name.startswith("package"):  # core/uncore/dram are parts of a package
            continue
        try:
            max_uj = int((zone / "max_energy_range_uj").read_text().strip())
            z = RaplZone(zone, max_uj)
            z.read_uj()
        except PermissionError:
            denied += 1
            continue
        except (OSError, ValueError):
            continue
        zones.append(z)
    if zones:
        return zones, None
    if denied:
        return [], (
            f"RAPL energy_uj is not readable ({denied} package zone(s); root only since Linux 5.10)"
        )
    return [], f"no RAPL package zone under {root}"


class EnergyMeter:
    """``start()`` when the measured window opens, ``stop()`` when it closes, then
    ``fields(images)`` for the row. Never raises: a failure leaves the columns empty with the
    reason in ``energy_note``."""

    def __init__(
        self,
        device: str,
        *,
        cuda_index: int = 0,
        ids: CudaIds | None = None,
        powercap: Path = POWERCAP,
        interval_s: float = 0.02,
    ) -> None:
        self.cuda = device.startswith("cuda")
        self.index, self.ids, self.powercap, self.interval = cuda_index, ids, powercap, interval_s
        self.source: str | None = None
        self.note: str | None = None
        self.joules: float | None = None
        self._nv: Any = None
        self._handle: Any = None
        self._zones: list[RaplZone] = []
        self._start: Any = None
        self._power: list[tuple[float, float]] = []  # (perf_counter s, watts)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- GPU ---------------------------------------------------------------------------------
    def _open_nvml(self) -> bool:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nv = pynvml
            self._handle, _ = nvml_handle(pynvml, self.index, self.ids)
        except Exception as exc:  # ImportError, NVMLError_*
            self.note = f"no GPU energy: NVML unavailable ({type(exc).__name__}: {exc})"
            self._nv = None
            return False
        return True

    def _power_loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample_power()

    def _sample_power(self) -> None:
        try:
            watts = self._nv.nvmlDeviceGetPowerUsage(self._handle) / 1000.0
        except Exception as exc:
            self.note = f"NVML power sampling failed: {exc}"
            return
        self._power.append((time.perf_counter(), watts))

    # -- the window --------------------------------------------------------------------------
    def start(self) -> None:
        if self.cuda:
            if not self._open_nvml():
                return
            try:
                self._start = int(self._nv.nvmlDeviceGetTotalEnergyConsumption(self._handle))
                self.source = SOURCE_NVML_ENERGY
                return
            except Exception:  # NotSupported before Volta, and on some virtual GPUs
                pass
            self.source = SOURCE_NVML_POWER
            self._sample_power()
            self._thread = threading.Thread(target=self._power_loop, name="nvml-power", daemon=True)
            self._thread.start()
            return
        self._zones, why = rapl_zones(self.powercap)
        if not self._zones:
            self.note = f"no CPU energy: {why}"
            return
        try:
            self._start = [z.read_uj() for z in self._zones]
            self.source = SOURCE_RAPL
        except OSError as exc:
            self.note = f"no CPU energy: RAPL read failed ({exc})"

    def stop(self) -> None:
        try:
            if self.source == SOURCE_NVML_ENERGY:
                end = int(self._nv.nvmlDeviceGetTotalEnergyConsumption(self._handle))
                self.joules = (end - self._start) / 1000.0  # mJ -> J
            elif self.source == SOURCE_NVML_POWER:
                self._stop.set()
                if self._thread is not None:
                    self._thread.join()
                self._sample_power()
                self.joules = _integrate(self._power)
                if self.joules is None:
                    self.note = "too few NVML power samples in the window"
            elif self.source == SOURCE_RAPL:
                total = 0
                for zone, before in zip(self._zones, self._start, strict=True):
                    delta = zone.read_uj() - before
                    if delta < 0:  # the counter wrapped once (a window is seconds long)
                        delta += zone.max_uj
                    total += delta
                self.joules = total / 1e6
        except Exception as exc:
            self.joules = None
            self.note = f"energy read failed at the end of the window: {exc}"
        finally:
            if self._nv is not None:
                with contextlib.suppress(Exception):
                    self._nv.nvmlShutdown()
                self._nv = None

    def fields(self, images: int | None) -> dict[str, Any]:
        per_image = None
        if self.joules is not None and images:
            per_image = round(self.joules * 1000.0 / images, 6)
        return {
            "energy_j": round(self.joules, 6) if self.joules is not None else None,
            "energy_mj_per_image": per_image,
            "energy_source": self.source if self.joules is not None else None,
            "energy_note": self.note,
        }


def _integrate(samples: list[tuple[float, float]]) -> float | None:
    """Joules from (seconds, watts) samples, by trapezoids; None with fewer than two."""
    if len(samples) < 2:
        return None
    return sum(
        (t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(samples, samples[1:], strict=False)
    )
