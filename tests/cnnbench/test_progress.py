"""Progress with an ETA for long preparation: step history, estimates, heartbeat lines."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cnnbench.progress import StepHistory, Steps


def _steps(tmp_path: Path, subject: str = "m", size: float | None = None) -> Steps:
    hist = StepHistory("export", subject, size=size, path=tmp_path / "h.jsonl")
    return Steps("export m", plan=["a", "b"], history=hist)


def test_first_run_says_there_is_no_estimate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Steps, "SLOW_S", 0.01)
    steps = _steps(tmp_path)
    with steps.step("a"):
        time.sleep(0.1)
    err = capsys.readouterr().err
    assert "[export m 1/2] a ..., no ETA yet" in err and "[export m 1/2] a done in" in err
    recs = [json.loads(line) for line in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert recs[0]["work"] == "export" and recs[0]["step"] == "a" and recs[0]["seconds"] > 0.05


def test_second_run_gives_an_eta_for_the_step_and_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(
        "".join(
            json.dumps({"work": "export", "step": s, "subject": "m", "seconds": t}) + "\n"
            for s, t in (("a", 30.0), ("b", 12.0), ("a", 50.0), ("a", 40.0))
        )
    )
    steps = _steps(tmp_path)
    assert steps.eta("a", 0.0) == pytest.approx(40.0 + 12.0)  # median of a, then b
    assert steps.eta("a", 35.0) == pytest.approx(5.0 + 12.0)
    assert steps.eta("a", 99.0) == pytest.approx(12.0)  # never negative
    assert steps.eta("b", 2.0) == pytest.approx(10.0)
    monkeypatch.setattr(Steps, "SLOW_S", 0.01)
    monkeypatch.setattr(Steps, "HEARTBEAT_S", 0.05)
    with steps.step("a"):
        time.sleep(0.2)
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("[export m 1/2] a ..., eta 52s")
    assert any("elapsed, eta" in line for line in err[1:-1]), err  # the heartbeat
    assert err[-1].startswith("[export m 1/2] a done in") and err[-1].endswith(
        "eta 12s for the rest"
    )


def test_a_new_model_is_estimated_from_the_others_by_size(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(
        json.dumps({"work": "export", "step": "a", "subject": "small", "seconds": 2.0, "size": 1e6})
        + "\n"
        + json.dumps({"work": "fp16", "step": "a", "subject": "x", "seconds": 99.0, "size": 1e6})
        + "\n"
    )
    big = StepHistory("export", "big", size=25e6, path=path)
    assert big.estimate("a") == pytest.approx(
        50.0
    )  # 2 s per million parameters; other work ignored
    assert StepHistory("export", "big", path=path).estimate("a") is None  # no size: no guess
    assert big.estimate("b") is None


def test_a_step_that_overruns_its_estimate_says_so(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(
        json.dumps({"work": "export", "step": "a", "subject": "m", "seconds": 4.0}) + "\n"
    )
    steps = _steps(tmp_path)
    assert "eta 1.0s" in steps._eta_text("a", 3.0)
    assert "longer than the 4.0s it took before" in steps._eta_text("a", 7.0)


def test_an_unreadable_or_unwritable_history_costs_only_the_estimate(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(b'\xff\xfe not json\n{"work": "export"\n')
    hist = StepHistory("export", "m", path=path)
    assert hist.estimate("a") is None
    blocked = tmp_path / "file"
    blocked.write_text("")
    hist = StepHistory("export", "m", path=blocked / "h.jsonl")  # a folder under a regular file
    hist.record("a", 1.0)  # no error
    assert hist.estimate("a") == 1.0  # kept in memory for this run


def test_a_quick_failure_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    steps = _steps(tmp_path)
    with pytest.raises(ValueError), steps.step("a"):
        raise ValueError("bad")
    assert "..." not in capsys.readouterr().err
