"""Energy per image: RAPL on a powercap tree the test writes, NVML through a fake (our logic
only; `pytest -m gpu` reads a real GPU's counter)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnbench.bench.measure import energy
from cnnbench.bench.measure.scenarios import run_fixed
from cnnbench.bench.measure.timing import StopRule
from cnnbench.engines.base import BatchRange
from cnnbench.engines.null_engine import NullEngine
from tests.engines.conftest import artifact


def _zone(root: Path, name: str, uj: int, max_uj: int = 1 << 32, label: str = "package-0") -> Path:
    z = root / name
    z.mkdir(parents=True)
    (z / "name").write_text(label + "\n")
    (z / "energy_uj").write_text(f"{uj}\n")
    (z / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return z


def test_rapl_energy_over_the_window_sums_packages_and_handles_a_wrap(tmp_path: Path) -> None:
    p0 = _zone(tmp_path, "intel-rapl:0", 1_000_000)
    p1 = _zone(tmp_path, "intel-rapl:1", 999_000, max_uj=1_000_000, label="package-1")
    _zone(tmp_path, "intel-rapl:0:0", 5, label="core")  # part of package 0: not counted again
    m = energy.EnergyMeter("cpu", powercap=tmp_path)
    m.start()
    (p0 / "energy_uj").write_text("3000000\n")  # +2 J
    (p1 / "energy_uj").write_text("499000\n")  # wrapped: +0.5 J
    m.stop()
    f = m.fields(images=100)
    assert f["energy_j"] == pytest.approx(2.5)
    assert f["energy_mj_per_image"] == pytest.approx(25.0)
    assert f["energy_source"] == energy.SOURCE_RAPL and f["energy_note"] is None


def test_no_rapl_leaves_the_columns_empty_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = _run_meter(energy.EnergyMeter("cpu", powercap=tmp_path / "absent"))
    assert f["energy_j"] is None and f["energy_mj_per_image"] is None
    assert "absent" in f["energy_note"]
    _zone(tmp_path, "intel-rapl:0", 1)

    def denied(self: Any) -> int:
        raise PermissionError("root only")

    monkeypatch.setattr(energy.RaplZone, "read_uj", denied)
    f = _run_meter(energy.EnergyMeter("cpu", powercap=tmp_path))
    assert f["energy_j"] is None and "not readable" in f["energy_note"]


def _run_meter(m: energy.EnergyMeter, images: int = 10) -> dict[str, Any]:
    m.start()
    m.stop()
    return m.fields(images)


class _Nvml:
    def __init__(self, counter: bool) -> None:
        self.counter, self.mj, self.closed = counter, 10_000, 0

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        pass

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.closed += 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:  # noqa: N802
        return i

    def nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:  # noqa: N802
        if not self.counter:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        self.mj += 1500
        return self.mj

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:  # noqa: N802
        return 200_000  # mW


def test_gpu_energy_from_the_nvml_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _Nvml(counter=True)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    f = _run_meter(energy.EnergyMeter("cuda"), images=3)
    assert f["energy_j"] == pytest.approx(1.5)  # one counter step between start and stop
    assert f["energy_mj_per_image"] == pytest.approx(500.0)
    assert f["energy_source"] == energy.SOURCE_NVML_ENERGY and fake.closed == 1


def test_gpu_energy_falls_back_to_power_samples_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", _Nvml(counter=False))
    m = energy.EnergyMeter("cuda", interval_s=0.005)
    m.start()
    t0 = time.perf_counter()
    time.sleep(0.1)
    m.stop()
    f = m.fields(images=10)
    assert f["energy_source"] == energy.SOURCE_NVML_POWER
    assert f["energy_j"] == pytest.approx(200.0 * (time.perf_counter() - t0), rel=0.25)


def test_the_meter_spans_the_measured_window_only() -> None:
    events: list[str] = []

    class Meter(energy.EnergyMeter):
        def start(self) -> None:
            events.append("start")

        def stop(self) -> None:
            events.append("stop")

    eng = NullEngine()
    eng.load(artifact("lenet5"), BatchRange.fixed(2))
    calls = []
    real = eng.infer
    eng.infer = lambda b: calls.append(len(events)) or real(b)  # type: ignore[method-assign]
    rule = StopRule(warmup_count=4, warmup_time=0, min_count=5, min_time=0, max_time=1)
    fields = run_fixed(eng, np.zeros((2, 1, 32, 32), np.float32), "offline", rule, Meter("cpu"))
    assert events == ["start", "stop"]
    warm = fields["warmup_count"]
    assert calls[:warm] == [0] * warm  # warm-up before the meter started
    assert set(calls[warm:]) == {1}  # every measured call inside it
    assert fields["energy_j"] is None
